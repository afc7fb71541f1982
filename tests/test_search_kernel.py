"""The compiled step of the plain prefix search (asrkit.search.kernel) against the numpy step it
stands in for: the same n-best, scores and timesteps bit for bit, ties included, batched and
chunk by chunk. (tests/test_search.py checks both against the reference search.)"""

import math

import numpy as np
import pytest

from asrkit.search import kernel
from asrkit.search.prefix import PrefixSearch, prefix_beam_search


def _log_probs(rng, batch, frames, vocab, kind):
    x = (rng.normal(size=(batch, frames, vocab)) * rng.choice([1.0, 3.0, 8.0])).astype(np.float32)
    lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
    if kind == "ties":  # log-probs on a 0.5 grid: equal candidates everywhere
        lp = (np.round(lp * 2) / 2).astype(np.float32)
    elif kind == "uniform":
        lp = np.full_like(lp, -math.log(vocab))
    return lp


def _options(rng, vocab):
    beam = int(rng.integers(1, 12))
    options = {"beam": beam, "nbest": min(3, beam)}
    draw = rng.random()
    if draw < 0.3:
        options["token_prune"] = int(rng.integers(1, vocab + 2))
    elif draw < 0.6:
        options["token_min_logp"] = float(rng.choice([-1.0, -3.0, -5.0]))
    if rng.random() < 0.5 and vocab > 2:
        options["space_id"] = int(rng.integers(1, vocab))
    return options


def _found(hyps):
    return [[(h.tokens, h.score, h.ctc_score, h.timesteps) for h in n] for n in hyps]


def _search(monkeypatch, compiled, *args, **kwargs):
    monkeypatch.setenv("ASRKIT_SEARCH_KERNEL", "1" if compiled else "0")
    return prefix_beam_search(*args, **kwargs)


@pytest.mark.parametrize("kind", ["random", "ties", "uniform"])
def test_compiled_step_equals_numpy_step_bit_for_bit(monkeypatch, kind):
    rng = np.random.default_rng({"random": 0, "ties": 1, "uniform": 2}[kind])
    for _ in range(60):
        batch, frames, vocab = int(rng.integers(1, 5)), int(rng.integers(1, 50)), int(rng.integers(2, 30))
        lp = _log_probs(rng, batch, frames, vocab, kind)
        lengths = rng.integers(0, frames + 1, size=batch)
        lengths[0] = frames
        options = _options(rng, vocab)
        numpy_step = _search(monkeypatch, False, lp, lengths, **options)
        compiled = _search(monkeypatch, True, lp, lengths, **options)
        assert _found(compiled) == _found(numpy_step), options


def test_the_plain_search_runs_compiled_and_the_others_do_not(monkeypatch):
    calls = []
    real = kernel.run_frames
    monkeypatch.setattr(kernel, "run_frames", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    lp = _log_probs(np.random.default_rng(3), 2, 20, 6, "random")
    prefix_beam_search(lp, [20, 12], beam=4, space_id=1)
    assert len(calls) == 2  # a row each
    calls.clear()
    prefix_beam_search(lp, [20, 12], beam=4, lm=_NoLM())  # side scores: the numpy step
    assert calls == []
    monkeypatch.setenv("ASRKIT_SEARCH_KERNEL", "0")
    prefix_beam_search(lp, [20, 12], beam=4)
    assert calls == []


class _NoLM:
    """A word scorer that scores nothing (enough to send the search down the numpy step)."""

    space_id, start_state = 1, 0

    def word_scores(self, states, keys):
        return np.zeros(len(states), np.float32), states

    def final_scores(self, states, keys):
        return np.zeros(len(states), np.float32)


def test_without_numba_the_numpy_step_runs(monkeypatch):
    monkeypatch.setattr(kernel, "njit", None)
    assert not kernel.enabled()
    lp = _log_probs(np.random.default_rng(4), 3, 30, 8, "random")
    without = prefix_beam_search(lp, [30, 30, 17], beam=5, nbest=5)
    monkeypatch.undo()
    assert _found(prefix_beam_search(lp, [30, 30, 17], beam=5, nbest=5)) == _found(without)


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_compiled_stream_equals_numpy_search(monkeypatch, kind):
    """Chunk by chunk (0 to 9 frames at a time) the compiled step gives every partial of the numpy
    step's stream and the final n-best of its batched search."""
    rng = np.random.default_rng({"random": 5, "ties": 6}[kind])
    for _ in range(15):
        batch, frames, vocab = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(2, 20))
        lp = _log_probs(rng, batch, frames, vocab, kind)
        options = _options(rng, vocab)
        sizes = []
        while sum(sizes) < frames:
            sizes.append(int(rng.integers(0, 10)))
        expected = _search(monkeypatch, False, lp, np.full(batch, frames), **options)
        streams = {}
        for compiled in (True, False):
            monkeypatch.setenv("ASRKIT_SEARCH_KERNEL", "1" if compiled else "0")
            search, partials, start = PrefixSearch(batch, vocab, **options), [], 0
            for size in sizes:
                search.advance(lp[:, start:start + size])
                partials.append(_found([search.partial()]))
                start += size
            streams[compiled] = (partials, _found(search.finish()))
        assert streams[True] == streams[False], options
        assert streams[True][1] == _found(expected)


def test_compiled_partials_equal_numpy_partials(monkeypatch):
    rng = np.random.default_rng(6)
    lp = _log_probs(rng, 2, 60, 12, "random")
    chunks = [0, 3, 1, 7, 20, 0, 29]
    seen = {}
    for compiled in (True, False):
        monkeypatch.setenv("ASRKIT_SEARCH_KERNEL", "1" if compiled else "0")
        search, partials, start = PrefixSearch(2, 12, beam=6, nbest=4, space_id=2), [], 0
        for size in chunks:
            search.advance(lp[:, start:start + size])
            partials.append(_found([search.partial()]))
            start += size
        seen[compiled] = (partials, _found(search.finish()))
    assert seen[True] == seen[False]


def test_logaddexp_is_numpys_bit_for_bit():
    rng = np.random.default_rng(7)
    x = (rng.normal(size=4000) * 30).astype(np.float32)
    y = (x + rng.normal(size=4000).astype(np.float32) * rng.choice([1e-6, 1.0, 40.0], 4000)).astype(np.float32)
    special = np.array([-np.inf, np.inf, 0.0, -0.0, 88.0, -104.0], np.float32)
    x, y = np.concatenate([x, special, special, x[:6]]), np.concatenate([y, special, special[::-1], x[:6]])
    expected = np.logaddexp(x, y)
    got = np.array([kernel._logaddexp(a, b) for a, b in zip(x, y)], np.float32)
    assert np.array_equal(got.view(np.int32), expected.view(np.int32))
