import random

import jiwer
import pytest

from asrkit.scoring import align, score


def random_sentence(rng, max_len):
    return " ".join(rng.choice(["a", "b", "c", "dd", "e"]) for _ in range(rng.randint(0, max_len)))


@pytest.mark.parametrize("seed", range(5))
def test_matches_jiwer_including_empty_sides(seed):
    rng = random.Random(seed)
    refs = {f"u{i}": random_sentence(rng, 6) for i in range(40)}
    hyps = {f"u{i}": random_sentence(rng, 6) for i in range(40)}
    refs["u0"], hyps["u1"], refs["u2"], hyps["u2"] = "", "", "", ""
    ours = score(refs, hyps)
    keys = sorted(refs)
    words = jiwer.process_words([refs[k] for k in keys], [hyps[k] for k in keys])
    chars = jiwer.process_characters([refs[k] for k in keys], [hyps[k] for k in keys])
    assert ours.wer == pytest.approx(words.wer)
    assert ours.cer == pytest.approx(chars.cer)
    assert (ours.word.substitutions + ours.word.deletions + ours.word.insertions) == (
        words.substitutions + words.deletions + words.insertions)
    for k in keys:  # per utterance too
        one = jiwer.process_words(refs[k], hyps[k])
        counts = ours.alignments[k].counts()
        assert counts.rate == pytest.approx(one.wer)


def test_missing_hypothesis_counts_as_deletions():
    report = score({"u1": "a b c", "u2": "d e"}, {"u1": "a b c", "zz": "x"})
    assert report.missing == ["u2"] and report.extra == ["zz"]
    assert report.word.deletions == 2 and report.wer == pytest.approx(2 / 5)


def test_alignment_ops():
    ops = [op for op, _, _ in align("a b c".split(), "a x c d".split()).ops]
    assert ops == ["C", "S", "C", "I"]


def test_normalization_is_explicit():
    report = score({"u": "Hello,  World"}, {"u": "hello world"}, lowercase=True, remove_punctuation=True)
    assert report.wer == 0.0 and "lowercased" in report.normalization
    assert score({"u": "Hello"}, {"u": "hello"}).wer == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_long_string_alignment_equals_the_small_one(seed, monkeypatch):
    """Long strings take the numpy path (one byte per cell): same ops as the Python table."""
    import asrkit.scoring as scoring

    rng = random.Random(seed)
    for _ in range(30):
        ref = random_sentence(rng, 40).split()
        hyp = random_sentence(rng, 40).split()
        small = scoring.align(ref, hyp).ops
        monkeypatch.setattr(scoring, "_NUMPY_CELLS", 0)
        assert scoring.align(ref, hyp).ops == small
        monkeypatch.undo()


def test_very_long_string_scores_in_little_memory():
    import resource

    rng = random.Random(0)
    ref = " ".join(rng.choice("abcde") for _ in range(6000))
    hyp = " ".join(w if rng.random() > 0.1 else "x" for w in ref.split())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = score({"long": ref}, {"long": hyp})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert report.word.substitutions == sum(w == "x" for w in hyp.split()) and report.word.insertions == 0
    assert grown_mb < 400, grown_mb  # a table of Python ints needs gigabytes here
