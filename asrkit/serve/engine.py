"""The server's engine: the one owner of a recognizer in a server process.

Recognition is CPU-bound and must not run on the event loop, and a model is not
made to be called from several threads at once. So one worker thread does all
of it: requests and streams hand it jobs and await the answer. Work that piles
up while the thread is busy is batched: the files of every waiting request with
the same search options go through the acoustic model as one padded batch
(``Recognizer.decode_segments``), and the next chunk of every waiting stream
goes through the encoder as one step (``recognize.stream.step_streams``), so
that under load one encoder call serves several requests or streams.
Reading uploads and computing their features runs beside it, in the event
loop's default thread pool.

It also counts sessions (requests in flight and open streams) against
``max_sessions``: one more is refused (the app answers 503) rather than queued
without bound.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from asrkit.errors import AsrkitError
from asrkit.recognize.recognizer import Recognizer, Result
from asrkit.recognize.stream import step_streams
from asrkit.search.options import SearchOptions

log = logging.getLogger("asrkit")


@dataclass
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    call: Callable[[], Any] | None = None  # run as it is, or:
    name: str = ""  # a file to decode, batched with others of the same options
    feats: list[np.ndarray] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    search: SearchOptions | None = None
    with_words: bool = True
    session: object = None  # or a stream's new audio, batched with the other streams' chunks
    samples: np.ndarray | None = None
    context: object = None  # a request's own hotword graph

    def settle(self, value=None, error: BaseException | None = None) -> None:
        def done() -> None:
            if self.future.done():  # its client went away
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)
        self.loop.call_soon_threadsafe(done)


class Busy(Exception):
    """More sessions than ``max_sessions``."""


class Engine:
    """A recognizer served to many requests and streams by one worker thread (see the module)."""

    def __init__(self, recognizer: Recognizer, search: SearchOptions, max_sessions: int = 8,
                 batch: bool = True) -> None:
        """``batch=False`` runs every job alone, in order (the comparison ``serve_load.py`` makes)."""
        self.recognizer, self.search, self.max_sessions, self.batch = recognizer, search, max_sessions, batch
        self.sessions = 0
        self.created = time.time()
        self.can_stream, self.why_not_stream = _streams(recognizer)
        self.batches: list[int] = []  # files per acoustic call, for the load benchmark and tests
        self.stream_batches: list[int] = []  # streams per encoder step
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._warm_up()
        self._thread = threading.Thread(target=self._work, name="asrkit-engine", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """One second of noise through features and model before the first request, which
        would otherwise wait for librosa's functions to compile (about 3 s)."""
        rate = self.recognizer.sample_rate
        noise = np.random.default_rng(0).normal(0, 0.05, rate).astype(np.float32)  # loud enough to pass unremarked
        feats, offsets = self.recognizer.segments(noise, rate, "warm-up")
        list(self.recognizer.decode_segments([("warm-up", feats, offsets)], self.search, True))

    def open_session(self) -> None:
        """Count one more session, or raise ``Busy`` (the event loop's thread only: no lock needed)."""
        if self.sessions >= self.max_sessions:
            raise Busy(f"the server is busy: {self.max_sessions} sessions are open (--max-sessions); try again")
        self.sessions += 1

    def close_session(self) -> None:
        self.sessions -= 1

    async def call(self, function: Callable, *args) -> Any:
        """``function(*args)`` on the worker thread (a stream's chunk, a session's start)."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), call=lambda: function(*args))
        self._jobs.put(job)
        return await job.future

    async def stream(self, session, samples: np.ndarray) -> list:
        """A stream's new audio (float32 at the model's rate) through its ``StreamingSession``: the
        results it gives. The encoder steps of all streams waiting at once run as one batch."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), session=session, samples=samples)
        self._jobs.put(job)
        return await job.future

    async def decode(self, name: str, feats: list[np.ndarray], offsets: list[float], search: SearchOptions,
                     with_words: bool = True, context=None) -> Result:
        """One file's result (its features and segment offsets, from ``Recognizer.segments``), batched
        with the other files waiting for the same search."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), name=name, feats=feats, offsets=offsets, search=search,
                   with_words=with_words, context=context)
        self._jobs.put(job)
        return await job.future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            waiting = [job]
            while True:  # whatever piled up while the last batch ran
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                waiting.append(more)
            for group in _groups(waiting) if self.batch else [[job] for job in waiting]:
                self._run(group)

    def _run(self, group: list[_Job]) -> None:
        if group[0].session is not None:
            return self._run_streams(group)
        if group[0].call is not None:
            job = group[0]
            try:
                job.settle(job.call())
            except Exception as exc:  # the caller turns it into its answer
                job.settle(error=exc)
            return
        try:
            files = [(job.name, job.feats, job.offsets) for job in group]
            self.batches.append(len(files))
            contexts = [job.context for job in group]
            results = list(self.recognizer.decode_segments(files, group[0].search, group[0].with_words,
                                                           contexts if any(c is not None for c in contexts) else None))
        except Exception as exc:
            for job in group:
                job.settle(error=exc)
            return
        for job, result in zip(group, results):
            job.settle(result)


    def _run_streams(self, group: list[_Job]) -> None:
        """Each stream's audio into its features, then chunk after chunk the encoder for every stream
        that has one, as one batch (``step_streams``), each result through its own search."""
        results: dict[int, list] = {id(job.session): [] for job in group}
        failed: dict[int, Exception] = {}
        for job in group:
            job.session.feed(job.samples)
        sessions = list({id(job.session): job.session for job in group}.values())
        while True:
            ready = [(s, c) for s in sessions if id(s) not in failed and (c := s.take_chunk()) is not None]
            if not ready:
                break
            self.stream_batches.append(len(ready))
            try:
                steps = step_streams(self.recognizer.backend, [c for _, c in ready], [s.state for s, _ in ready])
            except Exception as exc:
                failed.update({id(s): exc for s, _ in ready})
                continue
            for (session, _), step in zip(ready, steps):
                try:
                    results[id(session)] += session.consume(*step)
                except Exception as exc:
                    failed[id(session)] = exc
        last = {id(job.session): job for job in group}  # a stream's results go to its latest job
        for job in group:
            key = id(job.session)
            if key in failed:
                job.settle(error=failed[key])
            else:
                job.settle(results[key] if last[key] is job else [])


def _streams(recognizer: Recognizer) -> tuple[bool, str]:
    """Whether the model streams, and if not, why (its backend says, as ``transcribe --stream`` does)."""
    try:
        recognizer.backend.stream_start()
    except AsrkitError as exc:
        return False, str(exc)
    return True, ""


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Calls one by one, in order; the files to decode grouped by search options (each group one
    batch); the streams' audio as one group."""
    groups: list[list[_Job]] = []
    files: dict[tuple, list[_Job]] = {}
    for job in jobs:
        if job.session is not None:
            key = ("streams",)
            if key not in files:
                files[key] = []
                groups.append(files[key])
            files[key].append(job)
            continue
        if job.call is not None:
            groups.append([job])
            continue
        key = (job.search, job.with_words)
        if key not in files:
            files[key] = []
            groups.append(files[key])
        files[key].append(job)
    return groups


__all__ = ["Busy", "Engine"]
