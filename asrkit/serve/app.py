"""The HTTP and WebSocket face of the engine (Starlette on uvicorn): parsing, limits and auth only.

Endpoints:
  GET  /healthz                   liveness (no key needed)
  GET  /v1/models                 the one model served (OpenAI's list shape)
  POST /v1/transcribe             an audio file: text, words with times and confidences
  POST /v1/audio/transcriptions   OpenAI's request and response shapes (json, text, srt, vtt, verbose_json)
  WS   /v1/stream                 PCM16 in, partial and final results out (a streaming model)
  GET  /                          the browser page (static files of this package)

Every error is JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with a
4xx status (5xx only for a fault of the server); a socket gets an error message, then a close
code. A request never names a path on the server, runs a command, or loads a model: audio comes
as bytes and is read as audio only (``read_audio_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from asrkit.data.audio import read_audio_bytes
from asrkit.errors import AsrkitError
from asrkit.recognize.formats import cues, to_srt, to_vtt, word_dicts
from asrkit.serve.engine import Busy, Engine
from asrkit.serve.fields import HttpError, Settings, error_body, request_context, search_from
from asrkit.serve.stream import serve_stream

log = logging.getLogger("asrkit")
STATIC = Path(__file__).with_name("static")
OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


def _error(exc: HttpError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), exc.kind, exc.param), status_code=exc.status)


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Whether ``given`` is one of ``keys``, compared in constant time (every key is compared)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


PROTOCOL = "asrkit"  # the WebSocket subprotocol the server answers a browser with
KEY_PROTOCOL = "asrkit.key."  # a browser's key: "asrkit.key." + base64url(key) among its subprotocols


def socket_key(headers: dict) -> str:
    """A key a browser sent among its WebSocket subprotocols (it cannot set Authorization on one)."""
    import base64

    offered = headers.get(b"sec-websocket-protocol", b"").decode("latin-1")
    for item in offered.split(","):
        item = item.strip()
        if item.startswith(KEY_PROTOCOL):
            encoded = item[len(KEY_PROTOCOL):]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return ""
    return ""


class RequireKey:
    """ASGI middleware: with API keys, every request but /healthz and the page's static files
    carries ``Authorization: Bearer <key>`` (401 without, and a socket is refused before it opens;
    a browser's socket may carry the key as a subprotocol instead, ``socket_key``)."""

    OPEN = ("/healthz", "/", "/static/")

    def __init__(self, app, keys: tuple[str, ...]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys or self._open(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and key_matches(token.strip(), self.keys):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket" and key_matches(socket_key(headers), self.keys):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(error_body("a valid API key is needed: send 'Authorization: Bearer <key>'",
                                           "authentication_error"), status_code=401)
        await response(scope, receive, send)

    def _open(self, path: str) -> bool:
        return path in self.OPEN[:2] or path.startswith(self.OPEN[2])


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request's body, refused at once if it announces more than the limit (413), cut off when it
    grows past it (413), and given up when it stalls for ``request_timeout`` (408)."""
    limit = settings.max_bytes + 64 * 1024  # room for the multipart framing and fields
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise HttpError(413, f"the upload announces {int(declared) / 1e6:.1f} MB; the limit is "
                                 f"{settings.max_upload_mb:g} MB (--max-upload-mb)")
    pieces, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            piece = await asyncio.wait_for(stream.__anext__(), settings.request_timeout)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HttpError(408, f"the upload stalled: nothing came for {settings.request_timeout:g} s") from None
        size += len(piece)
        if size > limit:
            raise HttpError(413, f"the upload is over the limit of {settings.max_upload_mb:g} MB (--max-upload-mb)")
        pieces.append(piece)
    body = b"".join(pieces)
    if declared is not None and len(body) != int(declared):
        raise HttpError(400, f"the upload announced {declared} bytes and sent {len(body)}")
    return body


async def upload(request: Request, settings: Settings) -> tuple[bytes, str, dict[str, str]]:
    """(audio bytes, its name, the other form fields) of a request: multipart/form-data with the audio
    in the field ``file`` (OpenAI's shape), or the audio as the body itself (``curl --data-binary``)."""
    body = await read_body(request, settings)
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        if kind.startswith("application/x-www-form-urlencoded") or kind.startswith("application/json"):
            raise HttpError(400, "send the audio as multipart/form-data in the field 'file', or as the body itself",
                            param="file")
        return body, "upload", dict(request.query_params)
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=32)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise HttpError(400, f"malformed multipart/form-data ({' '.join(str(exc).split()) or type(exc).__name__})")
    audio = form.get("file")
    if audio is None or isinstance(audio, str):
        raise HttpError(400, "the form has no file in the field 'file'", param="file")
    data = await audio.read()
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    fields.update({k: v for k, v in request.query_params.items() if k not in fields})
    return data, Path(audio.filename or "upload").name, fields


class Service:
    """The request handlers, over one engine."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "sessions": self.engine.sessions})

    async def models(self, request: Request) -> Response:
        model = {"id": self.settings.model_id, "object": "model", "created": int(self.engine.created),
                 "owned_by": "asrkit", "streaming": self.engine.can_stream,
                 "sample_rate": self.engine.recognizer.sample_rate}
        return JSONResponse({"object": "list", "data": [model]})

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def transcribe(self, request: Request) -> Response:
        """asrkit's own: JSON with the text, words with start, end and confidence, and the duration."""
        return await self._handle(request, openai=False)

    async def openai_transcriptions(self, request: Request) -> Response:
        return await self._handle(request, openai=True)

    async def _handle(self, request: Request, openai: bool) -> Response:
        try:
            self.engine.open_session()
        except Busy as exc:
            return JSONResponse(error_body(str(exc), "server_busy"), status_code=503)
        try:
            return await self._answer(request, openai)
        except HttpError as exc:
            return _error(exc)
        except ClientDisconnect:  # nobody to answer; the session is freed all the same
            return Response(status_code=499)
        except AsrkitError as exc:  # unreadable audio, a search the model cannot run: the client's
            return _error(HttpError(400, str(exc)))
        finally:
            self.engine.close_session()

    async def _answer(self, request: Request, openai: bool) -> Response:
        data, name, fields = await upload(request, self.settings)
        form = fields.get("response_format", "json") if openai else "json"
        if form not in OPENAI_FORMATS:
            raise HttpError(400, f"response_format must be one of {', '.join(OPENAI_FORMATS)}, not {form!r}",
                            param="response_format")
        search = search_from({} if openai else fields, self.engine.search)
        recognizer = self.engine.recognizer
        context = None if openai else await asyncio.to_thread(request_context, recognizer, fields, search)
        started = time.perf_counter()
        samples, rate = await asyncio.to_thread(read_audio_bytes, data, name)
        feats, offsets = await asyncio.to_thread(recognizer.segments, samples, rate, name, self.settings.max_seconds)
        result = await self.engine.decode(name, feats, offsets, search, context=context)
        duration = len(samples) / rate
        words = result.words or []
        if not openai:
            return JSONResponse({"file": name, "text": result.text, "words": word_dicts(words),
                                 "duration": round(duration, 3), "model": self.settings.model_id,
                                 "seconds": round(time.perf_counter() - started, 3)})
        if form == "text":
            return PlainTextResponse(result.text + "\n")
        if form == "srt":
            return PlainTextResponse(to_srt(words))
        if form == "vtt":
            return PlainTextResponse(to_vtt(words), media_type="text/vtt")
        if form == "json":
            return JSONResponse({"text": result.text})
        segments = [{"id": i, "seek": 0, "start": round(cue[0].start, 3), "end": round(cue[-1].end, 3),
                     "text": " ".join(w.word for w in cue), "tokens": [], "temperature": 0.0,
                     "avg_logprob": round(float(np.mean([np.log(max(w.confidence, 1e-6)) for w in cue])), 4),
                     "compression_ratio": 1.0, "no_speech_prob": 0.0} for i, cue in enumerate(cues(words))]
        return JSONResponse({"task": "transcribe", "language": fields.get("language") or "english",
                             "duration": round(duration, 3), "text": result.text, "segments": segments,
                             "words": [{"word": w["word"], "start": w["start"], "end": w["end"]}
                                       for w in word_dicts(words)]})

    async def stream(self, websocket: WebSocket) -> None:
        await serve_stream(websocket, self.engine, self.settings)


def create_app(engine: Engine, settings: Settings) -> Starlette:
    service = Service(engine, settings)
    routes = [
        Route("/", service.page),
        Route("/healthz", service.healthz),
        Route("/v1/models", service.models),
        Route("/v1/transcribe", service.transcribe, methods=["POST"]),
        Route("/v1/audio/transcriptions", service.openai_transcriptions, methods=["POST"]),
        WebSocketRoute("/v1/stream", service.stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", None) or "internal error"
        return JSONResponse(error_body(str(detail), "invalid_request_error" if status < 500 else "server_error"),
                            status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        engine.close()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
    if settings.api_keys:
        app.add_middleware(RequireKey, keys=settings.api_keys)
    return app


def load_keys(path: str | Path) -> tuple[str, ...]:
    """API keys, one per line (blank lines and # comments left out); an empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise AsrkitError(f"--api-key-file {path} does not exist")
    keys = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise AsrkitError(f"--api-key-file {path} holds no key (one per line)")
    return keys


__all__ = ["Service", "create_app", "key_matches", "load_keys", "read_body", "upload"]
