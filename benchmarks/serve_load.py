"""Load on `asrkit serve`: N concurrent streams at real time, on loopback, bounded in count and time.

The server runs as its own process (`asrkit serve EXP`, as a user starts it). For each N, N
clients stream the test set's utterances over `WS /v1/stream` at real time (PCM16 in 100 ms
messages, each sent when its audio would have been spoken), one utterance per stream after
another, and send "end" after each. Printed per N:
  - time to final: from the end of an utterance's audio (its "end" message) to its final result,
    p50 and p95 over all utterances;
  - lag: how late partial results run behind the audio sent (p95), which grows without bound
    when the server cannot keep up;
  - whether the finals equal offline `transcribe --stream` (the same text, word for word: a
    WER identical to offline);
  - the server's CPU seconds per audio second.
"Held in real time" means a p95 time to final under 1 s and a p95 lag under 1 s. Then one long
stream (``--long-minutes``, default 30; the utterances over and over with pauses between them, sent
as fast as the server takes them) whose server RSS is sampled as it goes: it must stay flat.

    python benchmarks/serve_load.py recipes/an4/exp/unigru_stream recipes/an4/data/test_stream \\
        [--streams 1 4 8 16] [--utts 20] [--long-minutes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 0.1  # seconds of audio per message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(exp: Path, port: int, extra: list[str]) -> subprocess.Popen:
    import httpx

    command = [sys.executable, "-m", "asrkit", "-q", "serve", str(exp), "--port", str(port), *extra]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
    server.kill()
    raise SystemExit("the server did not start in 120 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_utterances(data_dir: Path, rate: int, count: int) -> list[tuple[str, bytes]]:
    from asrkit.data.audio import read_audio, resample
    from asrkit.data.datadir import DataDir

    data = DataDir.load(data_dir)
    found = []
    for utt in data.utt_ids()[:count]:
        samples, file_rate = read_audio(data.wav_scp[utt])
        samples = resample(samples, file_rate, rate)
        found.append((utt, (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()))
    return found


async def one_stream(url: str, utterances: list[tuple[str, bytes]], rate: int, real_time: bool, record: dict,
                     pause: float = 0.0) -> None:
    """Stream ``utterances`` one after another on one socket each, at real time (or as fast as taken)."""
    import websockets

    block = int(rate * BLOCK) * 2
    for utt, pcm in utterances:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": rate, "endpoint": "false"}))
            ready = json.loads(await ws.recv())
            assert ready["type"] == "ready", ready
            start = time.perf_counter()
            sent_audio = 0.0
            lags: list[float] = []

            async def receive() -> list[str]:
                finals = []
                async for message in ws:
                    data = json.loads(message)
                    if data["type"] == "partial" and real_time:  # how far behind the audio sent it runs
                        lags.append(time.perf_counter() - start - data["end"])
                    elif data["type"] == "final":
                        finals.append(data["text"])
                        record["ttf"].append(time.perf_counter() - ended)
                    elif data["type"] == "error":
                        raise RuntimeError(data["message"])
                return finals

            ended = float("inf")
            reader = asyncio.ensure_future(receive())
            for i in range(0, len(pcm), block):
                if real_time:
                    await asyncio.sleep(max(0.0, start + sent_audio - time.perf_counter()))
                await ws.send(pcm[i:i + block])
                sent_audio += len(pcm[i:i + block]) / 2 / rate
            if real_time:
                await asyncio.sleep(max(0.0, start + sent_audio - time.perf_counter()))
            ended = time.perf_counter()
            await ws.send(json.dumps({"type": "end"}))
            finals = await reader
            record["texts"][utt] = " ".join(t for t in finals if t)
            record["lag"].extend(lags)
            record["audio"] += sent_audio
        if pause:
            await asyncio.sleep(pause)


def offline_texts(exp: Path, utterances, rate: int, chunk_ms: float) -> dict[str, str]:
    """What ``transcribe --stream`` gives each utterance (the same session, in this process)."""
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import StreamingSession

    recognizer = Recognizer(exp)
    texts = {}
    for utt, pcm in utterances:
        session = StreamingSession(recognizer, chunk_ms=chunk_ms)
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        piece = int(rate * chunk_ms / 1000)
        results = [r for i in range(0, len(samples), piece) for r in session.accept(samples[i:i + piece])]
        results += session.finish()
        texts[utt] = " ".join(r.text for r in results if r.final and r.text)
    return texts


def run_load(url: str, pid: int, utterances, rate: int, streams: int, want: dict[str, str]) -> dict:
    record = {"ttf": [], "lag": [], "texts": {}, "audio": 0.0}
    per_stream = [utterances[i::streams] or utterances[:1] for i in range(streams)]  # the set split among them
    cpu, wall = cpu_seconds(pid), time.perf_counter()

    async def all_streams() -> None:
        await asyncio.gather(*[one_stream(url, part, rate, True, record) for part in per_stream])

    asyncio.run(all_streams())
    cpu, wall = cpu_seconds(pid) - cpu, time.perf_counter() - wall
    ttf, lag = np.array(record["ttf"]), np.array(record["lag"] or [0.0])
    differ = sum(record["texts"].get(u) != t for u, t in want.items() if u in record["texts"])
    return {"streams": streams, "utts": len(record["texts"]), "ttf50": np.percentile(ttf, 50),
            "ttf95": np.percentile(ttf, 95), "lag95": np.percentile(lag, 95), "differ": differ,
            "cpu_per_audio": cpu / record["audio"], "wall": wall}


def run_long(url: str, pid: int, utterances, rate: int, minutes: float) -> list[tuple[float, float]]:
    """One stream of ``minutes`` of audio (the utterances again and again, 2 s of silence between
    them, so that endpoints cut it), sent as fast as it is taken; the server's RSS as it goes."""
    import websockets

    silence = bytes(2 * rate * 2)
    samples: list[tuple[float, float]] = []

    async def long_stream() -> None:
        block = int(rate * BLOCK) * 2
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
            await ws.recv()

            async def drain() -> None:
                async for _ in ws:
                    pass

            reader = asyncio.ensure_future(drain())
            sent, next_sample, i = 0.0, 0.0, 0
            while sent < minutes * 60:
                pcm = utterances[i % len(utterances)][1] + silence
                i += 1
                for j in range(0, len(pcm), block):
                    await ws.send(pcm[j:j + block])
                    await asyncio.sleep(0)
                sent += len(pcm) / 2 / rate
                if sent >= next_sample:
                    samples.append((sent / 60, rss_mb(pid)))
                    next_sample += 60
            await ws.send(json.dumps({"type": "end"}))
            await reader
            samples.append((sent / 60, rss_mb(pid)))

    asyncio.run(long_stream())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exp", type=Path, help="a streaming model: exp dir, checkpoint or bundle")
    parser.add_argument("data", type=Path, help="a data dir whose utterances the clients speak")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--utts", type=int, default=32, help="utterances of the data dir used (split among streams)")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="the long stream's audio (0: none)")
    parser.add_argument("--chunk-ms", type=float, default=320.0)
    parser.add_argument("--server-args", default="", help="more options for asrkit serve")
    args = parser.parse_args()

    from asrkit.recognize.recognizer import Recognizer

    rate = Recognizer(args.exp).sample_rate
    utterances = load_utterances(args.data, rate, args.utts)
    want = offline_texts(args.exp, utterances, rate, args.chunk_ms)
    port = free_port()
    server = start_server(args.exp, port, ["--max-sessions", str(max(args.streams) + 1), "--chunk-ms",
                                           str(args.chunk_ms), *args.server_args.split()])
    url = f"ws://127.0.0.1:{port}/v1/stream"
    try:
        audio = sum(len(p) / 2 / rate for _, p in utterances)
        print(f"server: asrkit serve {args.exp} {args.server_args} (pid {server.pid}); {len(utterances)} utterances "
              f"of {args.data} ({audio:.0f} s); {platform.machine()}, {os.cpu_count()} cores")
        print(f"{'streams':>7s} {'utts':>5s} {'final p50':>10s} {'final p95':>10s} {'lag p95':>8s} "
              f"{'differ':>7s} {'cpu/audio':>9s}  real time")
        held = 0
        for streams in args.streams:
            row = run_load(url, server.pid, utterances, rate, streams, want)
            ok = row["ttf95"] < 1.0 and row["lag95"] < 1.0
            held = streams if ok else held
            print(f"{streams:7d} {row['utts']:5d} {1000 * row['ttf50']:8.0f}ms {1000 * row['ttf95']:8.0f}ms "
                  f"{1000 * row['lag95']:6.0f}ms {row['differ']:4d}/{row['utts']:<3d}{row['cpu_per_audio']:8.3f}   "
                  f"{'held' if ok else 'NOT held'}")
        print(f"highest N held in real time: {held}")
        if args.long_minutes > 0:
            samples = run_long(url, server.pid, utterances, rate, args.long_minutes)
            print(f"long stream: {args.long_minutes:g} min of audio; server RSS (MB) at each minute: "
                  + " ".join(f"{mb:.0f}" for _, mb in samples))
            first = samples[min(1, len(samples) - 1)][1]
            print(f"RSS growth after the first minute: {samples[-1][1] - first:+.1f} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
