"""``WS /v1/stream``: live audio in, partial and final results out, through one ``StreamingSession``.

The protocol (the browser page and ``benchmarks/serve_load.py`` speak it):

client -> server
  text   {"type": "start", "sample_rate": 16000, "mode": "beam", ...}   optional, first: the rate of the
         PCM (any; resampled to the model's) and search fields as /v1/transcribe takes them,
         "endpoint": false to keep the stream one utterance; also as query parameters
  binary PCM16 little-endian mono, any number of samples per message (an even number of bytes)
  text   {"type": "end"}   no more audio: the last final result, then the server closes (1000)

server -> client
  {"type": "ready", "sample_rate": model's, "chunk_ms": 320}
  {"type": "partial", "text": ..., "start": s, "end": s}          after every encoder chunk
  {"type": "final", "text": ..., "start": s, "end": s, "words": [{word, start, end, confidence}]}
  {"type": "error", "message": ...}                                 then a close code:
     1003 a text message that is not one of these; 1007 PCM of an odd number of bytes;
     1008 a model that cannot stream; 1001 nothing for ``idle_timeout`` s; 1013 too many sessions.

Endpointing is on by default (``EndpointRules``): each utterance's final comes at its pause, times
count from the stream's start. The session's chunks run on the engine's worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from asrkit.errors import AsrkitError
from asrkit.recognize.formats import word_dicts
from asrkit.recognize.stream import EndpointRules, StreamingSession, StreamResult
from asrkit.serve.engine import Busy, Engine
from asrkit.serve.fields import HttpError, request_context, search_from

log = logging.getLogger("asrkit")


class StreamClosed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def message_of(result: StreamResult) -> dict:
    out = {"type": "final" if result.final else "partial", "text": result.text,
           "start": round(result.start, 3), "end": round(result.end, 3)}
    if result.final:
        out["words"] = word_dicts(result.words or [])
    return out


async def serve_stream(websocket: WebSocket, engine: Engine, settings) -> None:
    """One client's stream from accept to close; its session is freed however it ends."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    await websocket.accept(subprotocol="asrkit" if "asrkit" in offered else None)  # a browser must hear one back
    try:
        engine.open_session()
    except Busy as exc:
        await _close(websocket, 1013, str(exc))
        return
    try:
        await _run(websocket, engine, settings)
    except StreamClosed as exc:
        await _close(websocket, exc.code, str(exc))
    except WebSocketDisconnect:  # the client went away: nothing to answer
        pass
    finally:
        engine.close_session()


async def _run(websocket: WebSocket, engine: Engine, settings) -> None:
    if not engine.can_stream:
        raise StreamClosed(1008, f"this model cannot stream ({engine.why_not_stream}); POST the audio to "
                                 "/v1/transcribe instead")
    fields = dict(websocket.query_params)
    first = await _receive(websocket, settings)
    if first.get("text") is not None:
        start = _control(first["text"])
        if start.get("type") == "start":
            fields.update({k: str(v) for k, v in start.items() if k != "type"})
            first = None
    recognizer = engine.recognizer
    try:
        search = search_from(fields, engine.search)
        rate = int(fields.get("sample_rate", recognizer.sample_rate))
        if not 1000 <= rate <= 384000:
            raise ValueError(f"sample_rate {rate} is not a rate between 1000 and 384000 Hz")
        endpoint = None if fields.get("endpoint", "true").lower() in ("false", "0", "no") else EndpointRules()
        context = request_context(recognizer, fields, search)
        session = await engine.call(StreamingSession, recognizer, search, settings.chunk_ms, endpoint, True, context,
                                    rate)
    except (HttpError, AsrkitError, ValueError) as exc:
        raise StreamClosed(1008, str(exc)) from None
    await websocket.send_json({"type": "ready", "sample_rate": recognizer.sample_rate, "chunk_ms": settings.chunk_ms})
    message = first
    while True:
        if message is None:
            message = await _receive(websocket, settings)
        if message.get("bytes") is not None:
            data = message["bytes"]
            if len(data) % 2:
                raise StreamClosed(1007, f"PCM16 comes in whole samples: a message of {len(data)} bytes is not")
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0  # resampled by the session
            results = await engine.stream(session, samples)
        else:
            control = _control(message.get("text") or "")
            if control.get("type") != "end":
                raise StreamClosed(1003, f"unexpected message {str(control.get('type'))[:40]!r}: send PCM16 as "
                                         "binary messages and {\"type\": \"end\"} at the end")
            results = await engine.call(session.finish)
            for result in results:
                await websocket.send_json(message_of(result))
            await websocket.close(1000)
            return
        for result in results:
            await websocket.send_json(message_of(result))
        message = None


async def _receive(websocket: WebSocket, settings) -> dict:
    try:
        message = await asyncio.wait_for(websocket.receive(), settings.idle_timeout)
    except asyncio.TimeoutError:
        raise StreamClosed(1001, f"nothing came for {settings.idle_timeout:g} s; closing the stream") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


def _control(text: str) -> dict:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise StreamClosed(1003, "a text message must be a JSON object such as {\"type\": \"end\"}")
    return data


async def _close(websocket: WebSocket, code: int, message: str) -> None:
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.send_json({"type": "error", "message": message})
        await websocket.close(code)
    except (WebSocketDisconnect, RuntimeError):
        pass
