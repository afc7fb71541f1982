"""The incremental prefix search (``PrefixSearch``): advanced chunk by chunk, its n-best at the end
is the batched offline search's on the concatenated log-probs, with lexicon, LM and sentencepiece
word starts too (property-tested on random cases), and its partial result is the best prefix so far."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrkit.errors import DecodeError
from asrkit.search.prefix import PrefixSearch, prefix_beam_search

from conftest import assert_nbest_agree, random_ints
from test_lexicon import _random_case


def chunks(randint, frames: int) -> list[int]:
    """Random chunk sizes covering ``frames`` (0-frame chunks included)."""
    sizes, left = [], frames
    while left > 0:
        size = min(left, randint(0, 6))
        sizes.append(size)
        left -= size
    return sizes


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("with_lexicon", [True, False])
def test_chunk_by_chunk_equals_the_offline_search(with_lm, with_lexicon):
    generator = torch.Generator().manual_seed(500 + 10 * with_lm + with_lexicon)
    randint = random_ints(generator)
    for case in range(40):
        tokenizer, words, lexicon, lp, _, beam, fusion = _random_case(generator, with_lm)
        constraint = dict(lexicon=lexicon) if with_lexicon else {}
        frames = lp.size(1)
        offline = prefix_beam_search(lp, torch.full((3,), frames), beam=beam, nbest=beam, space_id=2, lm=fusion,
                                     **constraint)
        search = PrefixSearch(3, lp.size(2), beam=beam, nbest=beam, space_id=2, lm=fusion, **constraint)
        start = 0
        for size in chunks(randint, frames):
            search.advance(lp[:, start:start + size])
            start += size
            partial = search.partial()
            assert len(partial) == 3 and all(len(h.timesteps) == len(h.tokens) for h in partial)
            assert all(t < start for h in partial for t in h.timesteps)
        got = search.finish()
        assert_nbest_agree(got, offline, with_lm, f"case {case}")
        for g, w in zip(got, offline):
            assert [h.timesteps for h in g] == [h.timesteps for h in w], f"case {case}"


def test_word_start_units_stream_as_they_decode_offline():
    """Sentencepiece-style boundaries (word-start tokens) under LM fusion."""
    generator = torch.Generator().manual_seed(3)
    lp = (torch.randn(2, 30, 8, generator=generator) * 3).log_softmax(-1)
    starts = (False, False, True, False, True, False, True, False)
    offline = prefix_beam_search(lp, torch.tensor([30, 30]), beam=5, nbest=3, word_starts=starts)
    search = PrefixSearch(2, 8, beam=5, nbest=3, word_starts=starts)
    for start in range(0, 30, 7):
        search.advance(lp[:, start:start + 7].numpy())
    assert_nbest_agree(search.finish(), offline, False, "word starts")


def test_partial_result_is_the_best_prefix_so_far():
    lp = np.log(np.full((1, 6, 4), 1e-4, np.float32))
    lp[0, [0, 1], 2] = 0.0  # "2" twice (one token: repeats collapse), then blanks, then "3"
    lp[0, [2, 3], 0] = 0.0
    lp[0, [4, 5], 3] = 0.0
    search = PrefixSearch(1, 4, beam=3)
    search.advance(lp[:, :2])
    assert search.partial()[0].tokens == [2]
    search.advance(lp[:, 2:])
    assert search.partial()[0].tokens == [2, 3]
    (offline,) = prefix_beam_search(lp, np.array([6]), beam=3)
    assert search.finish()[0][0].tokens == offline[0].tokens == [2, 3]
    assert search.partial()[0].timesteps == offline[0].timesteps  # frames on the kept history, as offline


def test_a_chunk_of_the_wrong_shape_is_refused():
    search = PrefixSearch(2, 5, beam=3)
    with pytest.raises(DecodeError, match=r"a chunk must be \(2, frames, 5\)"):
        search.advance(np.zeros((1, 3, 5), np.float32))
    with pytest.raises(DecodeError, match="NaN"):
        search.advance(np.full((2, 3, 5), np.nan, np.float32))


def peaky(lp: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CTC-like posteriors: the blank dominates most frames, so that pruning leaves nothing but the
    blank on them (the quiet frames the search skips through)."""
    boost = torch.zeros_like(lp)
    boost[..., 0] = 8.0 * (torch.rand(lp.shape[:2], generator=generator) < 0.7)
    return (lp * 2 + boost).log_softmax(-1)


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("with_lexicon", [True, False])
def test_quiet_frames_move_scores_as_the_full_step_does(with_lm, with_lexicon, monkeypatch):
    """With ``token_min_logp``, a frame where pruning leaves only the blank skips the extension and
    pruning steps (``_quiet_frames``). On peaky posteriors, where most frames are quiet, the batched
    and the chunked search give bit for bit what they give with every frame run in full, and the
    reference's n-best."""
    import asrkit.search.prefix as prefix

    from reference_search import prefix_beam_search_reference

    generator = torch.Generator().manual_seed(77 + 10 * with_lm + with_lexicon)
    randint = random_ints(generator)
    quiet_seen = 0
    for case in range(30):
        tokenizer, words, lexicon, lp, lengths, beam, fusion = _random_case(generator, with_lm)
        lp = peaky(lp, generator)
        options = dict(beam=beam, nbest=beam, space_id=2, lm=fusion, token_min_logp=-3.0,
                       **(dict(lexicon=lexicon) if with_lexicon else {}))
        quiet = prefix._quiet_frames(lp.numpy().transpose(1, 0, 2), prefix._options(
            lp.size(2), beam, 0, None, -3.0, 2, None, fusion, lexicon if with_lexicon else None))
        quiet_seen += int(quiet.sum())
        skipped = prefix_beam_search(lp, lengths, **options)
        search = PrefixSearch(3, lp.size(2), **options)
        start = 0
        for size in chunks(randint, lp.size(1)):
            search.advance(lp[:, start:start + size])
            start += size
        chunked = search.finish()
        with monkeypatch.context() as patch:
            patch.setattr(prefix, "_quiet_frames", lambda frames, opts: None)
            full = prefix_beam_search(lp, lengths, **options)
            full_chunked = prefix_beam_search(lp, torch.full((3,), lp.size(1)), **options)
        assert skipped == full, f"case {case}"  # Hypothesis dataclasses: tokens, scores, times
        assert chunked == full_chunked, f"case {case}"
        spelt = dict(lexicon=[[tokenizer.index[ch] for ch in w] for w in words]) if with_lexicon else {}
        reference = prefix_beam_search_reference(lp, lengths, **{**options, **spelt})
        assert_nbest_agree(skipped, reference, with_lm, f"case {case}")
    assert quiet_seen > 100  # the skip was exercised
