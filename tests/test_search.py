import math

import numpy as np
import pytest
import torch

from asrkit.errors import DecodeError
from asrkit.search.greedy import greedy_search
from asrkit.search.prefix import prefix_beam_search

from conftest import ctc_brute_force
from reference_search import prefix_beam_search_reference

SEARCHES = [prefix_beam_search, prefix_beam_search_reference]


def log_probs(rows):
    return torch.tensor(rows, dtype=torch.float32).log().unsqueeze(0)


def test_collapse_repeats_and_drop_blanks():
    # frames: a a - b   (vocab: 0 blank, 1 a, 2 b)
    lp = log_probs([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    (hyp,) = greedy_search(lp, torch.tensor([4]))
    assert hyp.tokens == [1, 2] and hyp.timesteps == [0, 3]
    assert math.isclose(hyp.score, math.log(0.8 * 0.7 * 0.6 * 0.8), rel_tol=1e-5)


def test_blank_separates_doubled_token():
    # "好棒棒": the doubled token survives only because a blank sits between the two
    lp = log_probs([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    (hyp,) = greedy_search(lp, torch.tensor([4]))
    assert hyp.tokens == [1, 2, 2]


def test_lengths_respected_in_batch():
    lp = torch.log(torch.tensor([[[0.1, 0.8, 0.1]] * 3 + [[0.1, 0.1, 0.8]]] * 2))
    hyps = greedy_search(lp, torch.tensor([4, 2]))
    assert hyps[0].tokens == [1, 2] and hyps[1].tokens == [1]


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("seed,num_frames,vocab", [(0, 4, 3), (1, 5, 3), (2, 6, 4), (3, 6, 3), (4, 3, 4)])
def test_prefix_beam_search_is_exact_with_a_wide_beam(search, seed, num_frames, vocab):
    torch.manual_seed(seed)
    lp = torch.randn(num_frames, vocab).mul(2).log_softmax(-1)
    expected = ctc_brute_force(lp)
    beam = 10**6 if search is prefix_beam_search_reference else len(expected) + 3  # the batched search holds (B, beam)
    (hyps,) = search(lp.unsqueeze(0), torch.tensor([num_frames]), beam=beam, nbest=beam)
    assert len(hyps) == len(expected)
    for hyp in hyps:
        assert math.isclose(hyp.score, expected[tuple(hyp.tokens)], abs_tol=1e-4)
        assert len(hyp.timesteps) == len(hyp.tokens) and hyp.timesteps == sorted(hyp.timesteps)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert math.isclose(float(torch.logsumexp(torch.tensor([h.score for h in hyps]), 0)), 0.0, abs_tol=1e-4)


@pytest.mark.parametrize("search", SEARCHES)
def test_prefix_beam_search_repeats_and_pruning(search):
    # "a a" (no blank between) is one "a"; "a - a" is two
    lp = log_probs([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    (hyps,) = search(lp, torch.tensor([4]), beam=4, nbest=2)
    assert hyps[0].tokens == [1, 1] and hyps[0].timesteps == [0, 3]
    (pruned,) = search(lp, torch.tensor([4]), beam=1, token_prune=1)
    assert pruned[0].tokens == [1, 1]
    (greedy,) = greedy_search(lp, torch.tensor([4]))
    assert hyps[0].score >= greedy.score  # a prefix sums over alignments, greedy takes one


@pytest.mark.parametrize("search", SEARCHES)
def test_prefix_beam_search_bad_input(search):
    lp = torch.zeros(1, 3, 3)
    with pytest.raises(DecodeError, match="beam and -*nbest must be"):
        search(lp, torch.tensor([3]), beam=0)
    lp[0, 1, 1] = float("nan")
    with pytest.raises(DecodeError, match="NaN"):
        search(lp, torch.tensor([3]))


@pytest.mark.parametrize("token_prune,token_min_logp,space_id", [
    (None, None, None), (1, None, None), (2, None, None), (3, None, None), (None, -2.0, None), (3, -1.0, None),
    (None, None, 1), (3, -2.0, 1)])
def test_batched_search_equals_reference(token_prune, token_min_logp, space_id):
    """Same n-best prefixes and scores as the pure-Python search, utterance lengths mixed in one batch.

    """
    generator = torch.Generator().manual_seed(7)
    for trial in range(25):
        num_frames = int(torch.randint(1, 30, (), generator=generator))
        vocab = int(torch.randint(2, 7, (), generator=generator))
        beam = int(torch.randint(1, 9, (), generator=generator))
        lp = (torch.randn(4, num_frames, vocab, generator=generator) * 3).log_softmax(-1)
        lengths = torch.randint(0, num_frames + 1, (4,), generator=generator)
        lengths[0] = num_frames
        options = dict(beam=beam, nbest=beam, token_prune=token_prune, token_min_logp=token_min_logp,
                       space_id=space_id)
        fast = prefix_beam_search(lp, lengths, **options)
        slow = prefix_beam_search_reference(lp, lengths, **options)
        for got, want in zip(fast, slow):
            assert [h.tokens for h in got] == [h.tokens for h in want]
            for g, w in zip(got, want):
                assert math.isclose(g.score, w.score, abs_tol=1e-4) and g.ctc_score == g.score
                assert g.timesteps == w.timesteps and len(g.timesteps) == len(g.tokens)
                assert g.timesteps == sorted(set(g.timesteps))
                if space_id is not None:
                    text = "".join("_" if t == space_id else str(t) for t in g.tokens)
                    assert not text.startswith("_") and "__" not in text, text
                    # a trailing separator only when the beam holds nothing else at the end
                    assert not text.endswith("_") or all(h.tokens[-1:] == [space_id] for h in got), text


def test_batched_search_runs_on_padded_zero_length_and_beam_wider_than_paths():
    lp = torch.randn(2, 3, 3).log_softmax(-1)
    empty, short = prefix_beam_search(lp, torch.tensor([0, 1]), beam=50, nbest=50)
    assert [h.tokens for h in empty] == [[]] and empty[0].score == 0.0
    assert sorted(h.tokens for h in short) == [[], [1], [2]]


def test_separator_rules_give_exact_text_probabilities():
    """With a separator token, each hypothesis is a distinct, normalised text scored exactly."""
    torch.manual_seed(3)
    lp = torch.randn(6, 4).mul(2).log_softmax(-1)  # 0 blank, 1 separator, 2 and 3 letters
    exact = ctc_brute_force(lp)
    allowed = {k for k in exact if k[:1] != (1,) and k[-1:] != (1,) and all(k[i:i + 2] != (1, 1)
                                                                             for i in range(len(k)))}
    width = len(exact) + 5  # room for every prefix, trailing separators included
    (hyps,) = prefix_beam_search(lp[None], torch.tensor([6]), beam=width, nbest=width, space_id=1)
    assert {tuple(h.tokens) for h in hyps} == allowed
    for hyp in hyps:
        assert math.isclose(hyp.score, exact[tuple(hyp.tokens)], abs_tol=1e-4)


def test_token_prune_below_one_is_refused():
    with pytest.raises(DecodeError, match="token_prune must be >= 1"):
        prefix_beam_search(torch.zeros(1, 2, 3), torch.tensor([2]), token_prune=0)


def test_search_options_are_checked_when_made_and_cannot_change():
    import dataclasses

    from asrkit.search.options import SearchOptions

    with pytest.raises(DecodeError, match="--nbest 5 cannot exceed --beam 4"):
        SearchOptions(mode="beam", beam=4, nbest=5)
    with pytest.raises(DecodeError, match="--lexicon needs --mode beam or rescore"):
        SearchOptions(lexicon="words.txt")
    options = SearchOptions(mode="rescore", beam=6, nbest=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.beam = 0  # a checked object stays checked
    assert options.beam_keeps == 6 and SearchOptions(mode="beam", beam=6, nbest=2).beam_keeps == 2


def test_search_batch_runs_the_search_its_options_name():
    from asrkit.search.ctc import search_batch
    from asrkit.search.options import SearchOptions
    from asrkit.tokenizer import CharTokenizer

    generator = torch.Generator().manual_seed(3)
    lp = torch.randn(3, 9, 6, generator=generator).log_softmax(-1)
    lengths = torch.tensor([9, 4, 7])
    greedy = search_batch(lp, lengths, SearchOptions())
    assert [[h.tokens for h in hyps] for hyps in greedy] == [[h.tokens] for h in greedy_search(lp, lengths)]
    beam = search_batch(lp, lengths, SearchOptions(mode="beam", beam=5, nbest=3))
    expected = prefix_beam_search(lp, lengths, beam=5, nbest=3)
    assert [[h.tokens for h in hyps] for hyps in beam] == [[h.tokens for h in hyps] for hyps in expected]
    # the tokenizer's word boundary travels with it: <space> (id 2) never ends a hypothesis
    boundary = CharTokenizer(["<blank>", "<unk>", "<space>", "a", "b", "c"]).boundary
    spaced = search_batch(lp, lengths, SearchOptions(mode="beam", beam=5, nbest=3), boundary=boundary)
    assert spaced == prefix_beam_search(lp, lengths, beam=5, nbest=3, space_id=2)


def test_top_columns_picks_each_rows_k_largest_with_ties_and_minus_infinity():
    """The beam's pruning selection: exactly k distinct columns per row holding the row's k largest
    values, also where the k-th value ties (integers) and where most entries are -inf."""
    from asrkit.search.candidates import top_columns

    rng = np.random.default_rng(0)
    for _ in range(500):
        rows, size = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        k = int(rng.integers(1, size + 1))
        values = rng.integers(-3, 3, (rows, size)).astype(np.float32)
        values[rng.random((rows, size)) < rng.random()] = -np.inf
        chosen = top_columns(values, k)
        assert chosen.shape == (rows, k)
        for row in range(rows):
            assert len(set(chosen[row].tolist())) == k
            assert np.array_equal(np.sort(values[row, chosen[row]]), np.sort(values[row])[size - k:])
