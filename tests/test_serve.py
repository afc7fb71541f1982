"""``asrkit serve`` on a real socket: uvicorn in a thread, spoken to by httpx, websockets and raw
sockets. Transcripts equal ``transcribe``'s (and a stream's ``transcribe --stream``'s); OpenAI's
request and response shapes; every kind of hostile or broken input gets its 4xx (or close code),
frees its session, and the next request is served; keys guard every endpoint but /healthz."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("uvicorn", reason="the server's packages: pip install 'asrkit[serve]'")
httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

from asrkit.search.options import SearchOptions  # noqa: E402

from conftest import run_cli  # noqa: E402


class Server:
    """``asrkit.serve.main.build``'s app on 127.0.0.1, an ephemeral port, in a thread."""

    def __init__(self, exp: Path, **settings) -> None:
        import uvicorn

        from asrkit.serve.main import build

        self.app, self.engine = build(exp, settings.pop("search", SearchOptions()), **settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                ws_max_size=4 * 1024 * 1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def server(stream_exp):
    running = Server(stream_exp, max_sessions=3, max_upload_mb=0.5, idle_timeout=1.5, request_timeout=2.0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def wavs(stream_exp, tmp_path_factory) -> list[Path]:
    """Tone recordings as 16-bit WAVs (so that PCM16 on the socket is the file's samples exactly)."""
    from conftest import tone_words

    root = tmp_path_factory.mktemp("serve_wavs")
    paths = []
    for i, words in enumerate([["a", "b", "a"], ["b"], ["a", "a", "b", "b"], ["b", "a"]]):
        path = root / f"w{i}.wav"
        soundfile.write(path, tone_words(words, seed=40 + i), 8000, subtype="PCM_16")
        paths.append(path)
    return paths


def post(server: Server, path: str, audio: bytes, name: str = "a.wav", **fields) -> httpx.Response:
    return httpx.post(server.url + path, files={"file": (name, audio, "audio/wav")}, data=fields, timeout=30)


def assert_served(server: Server, wav: Path) -> None:
    """The server answers a good request normally (after a bad one) and holds no session."""
    answer = post(server, "/v1/transcribe", wav.read_bytes())
    assert answer.status_code == 200, answer.text
    assert httpx.get(server.url + "/healthz").json()["sessions"] == 0


def test_health_models_and_the_page(server):
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "exp" and models["data"][0]["streaming"]
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("app.js", "worklet.js", "style.css"):
        assert httpx.get(f"{server.url}/static/{asset}").status_code == 200
    missing = httpx.get(server.url + "/v1/nothing")
    assert missing.status_code == 404 and "message" in missing.json()["error"]


def test_transcribe_gives_what_the_command_line_gives(server, stream_exp, wavs, capsys):
    for mode in ("greedy", "beam"):
        code, out, _ = run_cli(["transcribe", stream_exp, *wavs, "--format", "json", "--mode", mode], capsys)
        assert code == 0
        want = [json.loads(line) for line in out.splitlines()]
        for wav, expected in zip(wavs, want):
            got = post(server, "/v1/transcribe", wav.read_bytes(), wav.name, mode=mode).json()
            assert got["text"] == expected["text"] and got["words"] == expected["words"], (mode, wav)
            assert got["file"] == wav.name and got["duration"] > 0
    raw = httpx.post(server.url + "/v1/transcribe?mode=beam", content=wavs[0].read_bytes(),
                     headers={"content-type": "audio/wav"}).json()  # curl --data-binary
    assert raw["text"] == want[0]["text"]


def test_openai_shapes(server, stream_exp, wavs, capsys):
    want = run_cli(["transcribe", stream_exp, wavs[0], "--format", "srt"], capsys)[1]
    text = run_cli(["transcribe", stream_exp, wavs[0]], capsys)[1].strip()
    audio = wavs[0].read_bytes()
    path = "/v1/audio/transcriptions"
    assert post(server, path, audio, model="whisper-1").json() == {"text": text}
    assert post(server, path, audio, model="whisper-1", response_format="text").text == text + "\n"
    assert post(server, path, audio, model="whisper-1", response_format="srt").text == want
    vtt = post(server, path, audio, model="whisper-1", response_format="vtt").text
    assert vtt.startswith("WEBVTT\n\n") and vtt.count("-->") == want.count("-->")
    verbose = post(server, path, audio, model="whisper-1", response_format="verbose_json").json()
    assert verbose["text"] == text and verbose["duration"] > 0 and verbose["segments"][0]["start"] >= 0
    assert " ".join(w["word"] for w in verbose["words"]) == text
    bad = post(server, path, audio, model="whisper-1", response_format="xml")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}


def raw_request(server: Server, head: str, body: bytes = b"", wait: float = 5.0) -> tuple[int, dict]:
    """An HTTP request written by hand on a socket (for what a polite client would not send)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as conn:
        conn.sendall(head.encode() + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            piece = conn.recv(65536)
            if not piece:
                break
            data += piece
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_hostile_uploads_get_a_4xx_and_the_server_goes_on(server, wavs):
    good = wavs[0].read_bytes()
    cases = {
        "not audio": (post(server, "/v1/transcribe", b"#!/bin/sh\nrm -rf /\n" * 50, "x.wav"), 400, "cannot read"),
        "truncated": (post(server, "/v1/transcribe", good[:len(good) // 2]), 400, "truncated"),
        "empty": (post(server, "/v1/transcribe", b""), 400, "empty"),
        "too big": (post(server, "/v1/transcribe", good + bytes(600 * 1024)), 413, "limit"),
        "no file field": (httpx.post(server.url + "/v1/transcribe", data={"x": "1"}), 400, "file"),
        "a path": (post(server, "/v1/transcribe", b"/etc/passwd", "/etc/passwd"), 400, "cannot read"),
        "bad option": (post(server, "/v1/transcribe", good, mode="sing"), 400, "mode"),
        "bad number": (post(server, "/v1/transcribe", good, beam="wide"), 400, "beam"),
    }
    for name, (answer, status, words) in cases.items():
        assert answer.status_code == status, (name, answer.text)
        assert words in answer.json()["error"]["message"], (name, answer.text)
        assert_served(server, wavs[1])
    boundary = "b0undary"
    head = (f"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {2 * 1024 ** 3}")
    status, body = raw_request(server, head, b"0123456789")  # 2 GB announced, 10 bytes sent
    assert status == 413 and "announces" in body["error"]["message"]
    assert_served(server, wavs[1])
    head = "POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: 5000"
    status, body = raw_request(server, head, good[:100], wait=10)  # then nothing: the upload stalls
    assert status == 408 and "stalled" in body["error"]["message"]
    assert_served(server, wavs[1])


def stream_pcm(wav: Path) -> bytes:
    samples, _ = soundfile.read(wav, dtype="int16")
    return samples.astype("<i2").tobytes()


async def stream_over_socket(server: Server, pcm: bytes, start: dict | None = None, piece: int = 1234,
                             headers=None) -> list[dict]:
    received = []
    async with websockets.connect(server.ws + "/v1/stream", additional_headers=headers) as ws:
        if start is not None:
            await ws.send(json.dumps({"type": "start", **start}))
        for i in range(0, len(pcm), piece):
            await ws.send(pcm[i:i + piece])
        await ws.send(json.dumps({"type": "end"}))
        async for message in ws:
            received.append(json.loads(message))
    return received


def test_a_stream_gives_what_transcribe_stream_prints(server, stream_exp, wavs, capsys):
    for endpoint in (False, True):
        flags = ["--endpoint"] if endpoint else []
        code, out, _ = run_cli(["transcribe", stream_exp, *wavs, "--stream", "--chunk-ms", "320", *flags], capsys)
        assert code == 0
        want = [line.split("\t", 1)[1] for line in out.splitlines()]
        got = []
        for wav in wavs:
            messages = asyncio.run(stream_over_socket(server, stream_pcm(wav), {"sample_rate": 8000,
                                                                                "endpoint": endpoint}))
            assert messages[0]["type"] == "ready" and messages[0]["sample_rate"] == 8000
            assert any(m["type"] == "partial" for m in messages)
            got += [m["text"] for m in messages if m["type"] == "final"]
        assert got == want, endpoint
    assert httpx.get(server.url + "/healthz").json()["sessions"] == 0


def test_a_stream_at_another_rate_is_resampled(server, wavs, capsys, stream_exp):
    import librosa

    samples, _ = soundfile.read(wavs[2], dtype="float32")
    up = librosa.resample(samples, orig_sr=8000, target_sr=16000)
    pcm = (np.clip(up, -1, 1) * 32767).astype("<i2").tobytes()
    messages = asyncio.run(stream_over_socket(server, pcm, {"sample_rate": 16000, "endpoint": False}))
    want = run_cli(["transcribe", stream_exp, wavs[2]], capsys)[1].strip()
    assert [m["text"] for m in messages if m["type"] == "final"] == [want]


async def closed_with(server: Server, send: list, wait: float = 10.0) -> tuple[int, list[dict]]:
    """Send ``send`` (bytes or str messages; a number: sleep that long), then read until the close."""
    messages = []
    async with websockets.connect(server.ws + "/v1/stream") as ws:
        for item in send:
            if isinstance(item, float):
                await asyncio.sleep(item)
            else:
                await ws.send(item)
        try:
            async with asyncio.timeout(wait):
                async for message in ws:
                    messages.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, messages


def test_hostile_streams_are_closed_with_a_reason_and_free_their_session(server, wavs):
    pcm = stream_pcm(wavs[0])
    cases = {
        "text garbage": ([pcm[:4000], "rm -rf /"], 1003, "JSON"),
        "unknown message": ([json.dumps({"type": "dance"})], 1003, "unexpected"),
        "odd-length PCM": ([pcm[:4001]], 1007, "whole samples"),
        "silence for too long": ([pcm[:4000], 3.0], 1001, "nothing came"),
        "a bad option": ([json.dumps({"type": "start", "mode": "sing"})], 1008, "mode"),
        "a bad rate": ([json.dumps({"type": "start", "sample_rate": 7})], 1008, "sample_rate"),
    }
    for name, (send, code, words) in cases.items():
        got, messages = asyncio.run(closed_with(server, send))
        assert got == code, (name, messages)
        assert messages[-1]["type"] == "error" and words in messages[-1]["message"], (name, messages)
        assert_served(server, wavs[1])

    async def vanish() -> None:  # a client that goes away mid-stream, without a close
        ws = await websockets.connect(server.ws + "/v1/stream")
        await ws.send(pcm[:8000])
        ws.transport.abort()

    asyncio.run(vanish())
    deadline = time.time() + 10
    while httpx.get(server.url + "/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    assert_served(server, wavs[1])


def test_more_sessions_than_allowed_are_refused_and_the_rest_served(server, wavs):
    async def scenario() -> tuple[list, int, int]:
        held = [await websockets.connect(server.ws + "/v1/stream") for _ in range(3)]  # --max-sessions 3
        for ws in held:
            await ws.send(stream_pcm(wavs[0])[:4000])
        await asyncio.sleep(0.3)
        code, messages = await closed_with(server, [])
        async with httpx.AsyncClient() as client:
            busy = await client.post(server.url + "/v1/transcribe", files={"file": ("a.wav", wavs[0].read_bytes())})
        for ws in held:
            await ws.close()
        return messages, code, busy.status_code

    messages, code, status = asyncio.run(scenario())
    assert code == 1013 and "busy" in messages[-1]["message"] and status == 503
    time.sleep(0.3)
    assert_served(server, wavs[1])


def test_concurrent_requests_are_batched_into_one_model_call(server, stream_exp, wavs, capsys):
    code, out, _ = run_cli(["transcribe", stream_exp, *wavs], capsys)
    want = dict(line.split("\t", 1) for line in out.splitlines())

    async def scenario() -> list[str]:
        held = asyncio.ensure_future(server.engine.call(time.sleep, 0.8))  # the worker is busy...
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(timeout=30) as client:  # ...while these arrive (--max-sessions 3)
            answers = await asyncio.gather(*[client.post(server.url + "/v1/transcribe",
                                                         files={"file": (w.name, w.read_bytes())}) for w in wavs[:3]])
        await held
        return [a.json()["text"] for a in answers]

    server.engine.batches.clear()
    texts = asyncio.run(scenario())
    assert texts == [want[str(w)] for w in wavs[:3]]
    assert max(server.engine.batches) >= 2, server.engine.batches


def test_api_keys_guard_every_endpoint_but_health(stream_exp, wavs, tmp_path, caplog):
    keys = tmp_path / "keys"
    keys.write_text("# keys\nsecret-one\n\nsecret-two\n")
    guarded = Server(stream_exp, api_key_file=keys)
    try:
        audio = {"file": ("a.wav", wavs[0].read_bytes())}
        assert httpx.get(guarded.url + "/healthz").status_code == 200
        for path in ("/v1/models",):
            assert httpx.get(guarded.url + path).status_code == 401
        denied = httpx.post(guarded.url + "/v1/transcribe", files=audio)
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        wrong = {"authorization": "Bearer secret-three"}
        assert httpx.post(guarded.url + "/v1/audio/transcriptions", files=audio, headers=wrong).status_code == 401
        right = {"authorization": "Bearer secret-two"}
        assert httpx.post(guarded.url + "/v1/transcribe", files=audio, headers=right).status_code == 200
        assert httpx.get(guarded.url + "/v1/models", headers={"authorization": "Bearer secret-one"}).status_code == 200
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(stream_over_socket(guarded, stream_pcm(wavs[0])))
        messages = asyncio.run(stream_over_socket(guarded, stream_pcm(wavs[0]), {"sample_rate": 8000}, headers=right))
        assert messages[-1]["type"] == "final"

        async def as_a_browser(key: str) -> str | None:  # the key as a subprotocol, as the page sends it
            import base64

            encoded = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
            async with websockets.connect(guarded.ws + "/v1/stream",
                                          subprotocols=["asrkit", "asrkit.key." + encoded]) as ws:
                await ws.send(json.dumps({"type": "end"}))
                await ws.recv()
                return ws.subprotocol

        assert asyncio.run(as_a_browser("secret-one")) == "asrkit"
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(as_a_browser("secret-none"))
        assert "secret" not in caplog.text
    finally:
        guarded.stop()


def test_serve_refuses_bad_settings_and_warns_off_loopback_without_a_key(stream_exp, tmp_path, capsys, monkeypatch,
                                                                        caplog):
    import uvicorn

    from asrkit.serve.app import key_matches

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    empty = tmp_path / "empty"
    empty.write_text("\n# nothing\n")
    for args, words in ((["--api-key-file", empty], "holds no key"), (["--api-key-file", tmp_path / "no"],
                                                                      "does not exist"),
                        (["--max-sessions", "0"], "at least 1"), (["--max-upload-mb", "0"], "positive")):
        code, _, err = run_cli(["serve", stream_exp, *args], capsys)
        assert code == 1 and words in err, err
    code, _, err = run_cli(["serve", tmp_path / "no_such_exp"], capsys)
    assert code == 1 and "does not exist" in err
    assert not calls
    code, _, err = run_cli(["serve", stream_exp, "--host", "0.0.0.0", "--port", "9"], capsys)
    assert code == 0 and calls and calls[0]["host"] == "0.0.0.0"
    assert "without --api-key-file" in caplog.text
    caplog.clear()
    assert run_cli(["serve", stream_exp, "--host", "::1"], capsys)[0] == 0 and "without" not in caplog.text
    assert key_matches("k2", ("k1", "k2")) and not key_matches("k", ("k1", "k2")) and not key_matches("k", ())


def test_a_model_that_cannot_stream_says_so_on_the_socket(trained_exp, wavs):
    offline = Server(trained_exp)
    try:
        code, messages = asyncio.run(closed_with(offline, []))
        assert code == 1008 and "cannot stream" in messages[-1]["message"]
        assert post(offline, "/v1/transcribe", wavs[0].read_bytes()).status_code == 200
    finally:
        offline.stop()


def test_the_official_openai_client_gets_transcribes_text(server, stream_exp, wavs, capsys):
    openai = pytest.importorskip("openai", reason="pip install openai (the test extra has it)")

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    want = run_cli(["transcribe", stream_exp, wavs[2]], capsys)[1].strip()
    with open(wavs[2], "rb") as audio:
        assert client.audio.transcriptions.create(model="asrkit", file=audio).text == want
    with open(wavs[2], "rb") as audio:
        verbose = client.audio.transcriptions.create(model="asrkit", file=audio, response_format="verbose_json",
                                                     timestamp_granularities=["word"])
    assert verbose.text == want and " ".join(w.word for w in verbose.words) == want
    with pytest.raises(openai.BadRequestError, match="cannot read audio"):
        client.audio.transcriptions.create(model="asrkit", file=("x.wav", b"not audio at all"))
    assert [m.id for m in client.models.list()] == ["exp"]


def test_the_load_benchmark_streams_to_a_server_process_and_matches_offline(stream_exp, tmp_path):
    """benchmarks/serve_load.py, small: a server process, streams at real time, the long stream's RSS."""
    import subprocess
    import sys

    from conftest import make_tone_data_dir

    data = make_tone_data_dir(tmp_path / "speak", 4, seed=9)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    done = subprocess.run([sys.executable, str(script), str(stream_exp), str(data), "--streams", "1", "2",
                           "--utts", "4", "--long-minutes", "0.3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[5] == "0/4" for row in rows), done.stdout  # the same text as offline, every utterance
    assert "highest N held in real time" in done.stdout and "RSS growth" in done.stdout


def test_concurrent_streams_share_encoder_steps(server, stream_exp, wavs, capsys):
    """Streams whose audio waits together go through the encoder as one batch, and each still gets
    what transcribe --stream gives its file."""
    code, out, _ = run_cli(["transcribe", stream_exp, *wavs[:3], "--stream"], capsys)
    want = [line.split("\t", 1)[1] for line in out.splitlines()]

    async def scenario() -> list[list[dict]]:
        held = asyncio.ensure_future(server.engine.call(time.sleep, 0.8))  # the worker busy while they send
        streams = [stream_over_socket(server, stream_pcm(w), {"sample_rate": 8000, "endpoint": False}, piece=4000)
                   for w in wavs[:3]]
        got = await asyncio.gather(*streams)
        await held
        return got

    server.engine.stream_batches.clear()
    got = asyncio.run(scenario())
    assert [[m["text"] for m in messages if m["type"] == "final"] for messages in got] == [[w] for w in want]
    assert max(server.engine.stream_batches) >= 2, server.engine.stream_batches


def test_a_requests_hotwords_bias_it_as_the_command_lines_do(server, stream_exp, wavs, tmp_path, capsys):
    hot = tmp_path / "hot.txt"
    hot.write_text("b b b\t5\n")
    flags = ["--mode", "beam", "--beam", "4", "--hotwords", hot]
    want = run_cli(["transcribe", stream_exp, *wavs, *flags], capsys)[1].splitlines()
    plain = run_cli(["transcribe", stream_exp, *wavs, "--mode", "beam", "--beam", "4"], capsys)[1].splitlines()
    assert want != plain  # the bonus changes something, so that equality below means something
    for wav, line in zip(wavs, want):
        got = post(server, "/v1/transcribe", wav.read_bytes(), wav.name, mode="beam", beam="4",
                   hotwords="b b b\t5").json()
        assert got["text"] == line.split("\t", 1)[1], wav
    streamed = run_cli(["transcribe", stream_exp, wavs[3], "--stream", *flags], capsys)[1].strip()
    messages = asyncio.run(stream_over_socket(server, stream_pcm(wavs[3]), {
        "sample_rate": 8000, "endpoint": False, "mode": "beam", "beam": 4, "hotwords": "b b b\t5"}))
    assert [m["text"] for m in messages if m["type"] == "final"] == [streamed]
    for fields, words in (({"mode": "beam", "hotwords": "b zz"}, "hotwords:1: 'b zz' has characters"),
                          ({"mode": "beam", "hotwords": "b\tmany"}, "hotwords:1: weight 'many' is not a number"),
                          ({"hotwords": "b"}, "greedy search cannot be biased")):
        answer = post(server, "/v1/transcribe", wavs[0].read_bytes(), **fields)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
        assert answer.json()["error"]["param"] == "hotwords"
    assert_served(server, wavs[1])


def test_without_batching_each_request_runs_alone_with_the_same_result(stream_exp, wavs, capsys):
    want = [line.split("\t", 1)[1] for line in run_cli(["transcribe", stream_exp, *wavs[:3]], capsys)[1].splitlines()]
    alone = Server(stream_exp, batch=False)
    try:
        async def scenario() -> list[str]:
            held = asyncio.ensure_future(alone.engine.call(time.sleep, 0.5))
            await asyncio.sleep(0.1)
            async with httpx.AsyncClient(timeout=30) as client:
                answers = await asyncio.gather(*[client.post(alone.url + "/v1/transcribe",
                                                             files={"file": (w.name, w.read_bytes())})
                                                 for w in wavs[:3]])
            await held
            return [a.json()["text"] for a in answers]

        assert asyncio.run(scenario()) == want and alone.engine.batches == [1, 1, 1]
    finally:
        alone.stop()
