"""Hotwords in the searches: with a context graph the batched prefix beam search's whole n-best
(texts, order, scores and their context part) is the reference's, which adds the graph's definition
(``context_score``) to every prefix; with and without lexicon and LM, with sentencepiece-style word
starts; the incremental search chunk by chunk equals the batched one; and biasing does what it is
for: a phrase the acoustics leave second comes first."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from asrkit.search.context import ContextGraph, Phrase
from asrkit.search.prefix import PrefixSearch, prefix_beam_search

from conftest import assert_nbest_agree, random_ints
from reference_search import prefix_beam_search_reference
from test_incremental_search import chunks
from test_lexicon import _random_case


def random_graph(words: list[str], tokenizer, rng: random.Random) -> ContextGraph:
    """Phrases of one or two of the lexicon's words (and a word of letters it may not hold)."""
    phrases = []
    for _ in range(rng.randint(1, 5)):
        picked = " ".join(rng.choice(words) for _ in range(rng.randint(1, 2)))
        phrases.append(Phrase(tuple(tokenizer.encode(picked)), rng.choice([0.5, 1.0, 2.0, 4.0])))
    return ContextGraph(phrases, len(tokenizer), space_id=2)


def assert_context_agrees(fast, slow, where: str) -> None:
    for got, want in zip(fast, slow):
        for g, w in zip(got, want):
            assert math.isclose(g.context_score, w.context_score, abs_tol=2e-3), where


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("with_lexicon", [True, False])
def test_biased_batched_search_equals_the_reference(with_lm, with_lexicon):
    generator = torch.Generator().manual_seed(300 + 10 * with_lm + with_lexicon)
    rng = random.Random(300 + 10 * with_lm + with_lexicon)
    biased = 0
    for case in range(40):
        tokenizer, words, lexicon, lp, lengths, beam, fusion = _random_case(generator, with_lm)
        graph = random_graph(words, tokenizer, rng)
        constraint = dict(lexicon=lexicon) if with_lexicon else {}
        spelt = dict(lexicon=[[tokenizer.index[ch] for ch in w] for w in words]) if with_lexicon else {}
        options = dict(beam=beam, nbest=beam, space_id=2, lm=fusion, context=graph)
        fast = prefix_beam_search(lp, lengths, **options, **constraint)
        slow = prefix_beam_search_reference(lp, lengths, **options, **spelt)
        where = f"case {case} vocab {len(tokenizer)} beam {beam}"
        assert_nbest_agree(fast, slow, with_lm, where)
        assert_context_agrees(fast, slow, where)
        biased += sum(h.context_score > 0 for hyps in fast for h in hyps)
    assert biased > 20  # phrases were completed, not only attempted


def test_biased_search_with_word_start_units_equals_the_reference():
    generator = torch.Generator().manual_seed(11)
    rng = random.Random(11)
    for case in range(30):
        vocab = rng.randint(5, 9)
        starts = [False, False] + [rng.random() < 0.5 for _ in range(vocab - 2)]
        starts[2], starts[3] = True, False
        phrases = []
        for _ in range(rng.randint(1, 4)):
            tokens = [rng.choice([t for t in range(2, vocab) if starts[t]])]
            tokens += [rng.randint(2, vocab - 1) for _ in range(rng.randint(0, 3))]
            phrases.append(Phrase(tuple(tokens), rng.choice([1.0, 3.0])))
        graph = ContextGraph(phrases, vocab, word_starts=starts)
        lp = (torch.randn(2, rng.randint(1, 16), vocab, generator=generator) * 3).log_softmax(-1)
        lengths = torch.tensor([lp.size(1), rng.randint(0, lp.size(1))])
        beam = rng.randint(1, 8)
        options = dict(beam=beam, nbest=beam, word_starts=starts, context=graph)
        fast = prefix_beam_search(lp, lengths, **options)
        slow = prefix_beam_search_reference(lp, lengths, **options)
        assert_nbest_agree(fast, slow, False, f"case {case}")
        assert_context_agrees(fast, slow, f"case {case}")


@pytest.mark.parametrize("with_lm", [False, True])
def test_biased_search_chunk_by_chunk_equals_the_batched_one(with_lm):
    generator = torch.Generator().manual_seed(800 + with_lm)
    rng = random.Random(800 + with_lm)
    randint = random_ints(generator)
    for case in range(30):
        tokenizer, words, lexicon, lp, _, beam, fusion = _random_case(generator, with_lm)
        graph = random_graph(words, tokenizer, rng)
        frames = lp.size(1)
        options = dict(beam=beam, nbest=beam, space_id=2, lm=fusion, context=graph)
        offline = prefix_beam_search(lp, torch.full((3,), frames), **options)
        search = PrefixSearch(3, lp.size(2), **options)
        start = 0
        for size in chunks(randint, frames):
            search.advance(lp[:, start:start + size])
            start += size
            assert all(h.context_score is not None for h in search.partial())
        got = search.finish()
        assert_nbest_agree(got, offline, with_lm, f"case {case}")
        assert_context_agrees(got, offline, f"case {case}")


def test_a_hotword_the_acoustics_leave_second_comes_first():
    from asrkit.tokenizer import CharTokenizer

    tokenizer = CharTokenizer(["<blank>", "<unk>", "<space>"] + list("abcdo"))
    # frames spelling "cab" a little more than "cob"
    lp = np.full((1, 5, len(tokenizer)), -8.0, np.float32)
    spelt = {0: {"c": -0.05}, 1: {"<blank>": -0.05}, 2: {"a": -0.6, "o": -0.8}, 3: {"<blank>": -0.05},
             4: {"b": -0.05}}
    for t, entries in spelt.items():
        for symbol, value in entries.items():
            lp[0, t, tokenizer.index[symbol]] = value
    lp = np.log(np.exp(lp) / np.exp(lp).sum(-1, keepdims=True))
    plain = prefix_beam_search(lp, np.array([5]), beam=4, space_id=2)[0][0]
    graph = ContextGraph([Phrase(tuple(tokenizer.encode("cob")), 0.5)], len(tokenizer), space_id=2)
    biased = prefix_beam_search(lp, np.array([5]), beam=4, space_id=2, context=graph)[0][0]
    assert tokenizer.decode(plain.tokens) == "cab" and tokenizer.decode(biased.tokens) == "cob"
    assert biased.context_score == pytest.approx(1.5) and biased.score == pytest.approx(biased.ctc_score + 1.5)


def test_transcribe_and_decode_take_hotwords_and_refuse_bad_ones(trained_exp, tone_corpus, tmp_path, capsys):
    from conftest import run_cli

    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:6]
    code, plain, _ = run_cli(["transcribe", trained_exp, *wavs, "--mode", "beam", "--beam", "4"], capsys)
    assert code == 0
    hot = tmp_path / "hot.txt"
    hot.write_text("b\t6.0\n")  # a bonus no acoustics can resist: "b" wherever a word could be one
    code, biased, _ = run_cli(["transcribe", trained_exp, *wavs, "--mode", "beam", "--beam", "4", "--hotwords",
                               hot], capsys)
    assert code == 0
    count = lambda out, word: sum(line.split("\t", 1)[1].split().count(word) for line in out.splitlines())  # noqa: E731
    assert count(biased, "b") > count(plain, "b")  # (too strong a bonus inserts words: icefall #1948's effect)
    code, _, _ = run_cli(["decode", trained_exp, tone_corpus["dev"], "--mode", "beam", "--beam", "4", "--hotwords",
                          hot, "--hotword-score", "2", "--out", tmp_path / "dec"], capsys)
    assert code == 0 and (tmp_path / "dec" / "hyp").exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb z\n")
    for args, words in ((["--hotwords", bad], "bad.txt:2: 'b z' has characters the model has no token for"),
                        (["--hotwords", tmp_path / "none.txt"], "does not exist"),
                        (["--hotwords", hot, "--mode", "greedy"], "greedy search"),
                        (["--hotwords", hot, "--hotword-score", "nan"], "finite")):
        args = (["--mode", "beam"] if "--mode" not in args else []) + [str(a) for a in args]
        code, _, err = run_cli(["transcribe", trained_exp, wavs[0], *args], capsys)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("with_lm", [False, True])
def test_each_utterance_its_own_hotwords_in_one_batch(with_lm):
    """Per-utterance lists (a data dir's ``context``): the batch searched at once over the union of
    their graphs gives each utterance what the reference gives it with its own list (none for some),
    batched and chunk by chunk."""
    generator = torch.Generator().manual_seed(900 + with_lm)
    rng = random.Random(900 + with_lm)
    randint = random_ints(generator)
    for case in range(30):
        tokenizer, words, lexicon, lp, lengths, beam, fusion = _random_case(generator, with_lm)
        graphs = [random_graph(words, tokenizer, rng) if rng.random() < 0.7 else None for _ in range(3)]
        options = dict(beam=beam, nbest=beam, space_id=2, lm=fusion, context=graphs)
        fast = prefix_beam_search(lp, lengths, **options)
        slow = prefix_beam_search_reference(lp, lengths, **options)
        assert_nbest_agree(fast, slow, with_lm, f"case {case}")
        if any(g is not None for g in graphs):
            assert_context_agrees(fast, slow, f"case {case}")
        full = torch.full((3,), lp.size(1))
        search, start = PrefixSearch(3, lp.size(2), **options), 0
        for size in chunks(randint, lp.size(1)):
            search.advance(lp[:, start:start + size])
            start += size
        assert_nbest_agree(search.finish(), prefix_beam_search(lp, full, **options), with_lm, f"case {case}")


def test_a_data_dirs_context_file_biases_each_utterance_towards_its_own(trained_exp, tone_corpus, tmp_path, capsys,
                                                                         caplog):
    import shutil

    from conftest import run_cli

    data = tmp_path / "dev"
    shutil.copytree(tone_corpus["dev"], data, ignore=shutil.ignore_patterns("feats*", "utt2num_frames"))
    ids = sorted(line.split()[0] for line in (data / "text").read_text().splitlines())
    args = ["decode", trained_exp, data, "--mode", "beam", "--beam", "4"]
    assert run_cli([*args, "--out", tmp_path / "plain"], capsys)[0] == 0
    (data / "context").write_text(f"{ids[0]} b b b b b\t6\n{ids[1]} a a a a a\t6\nnobody a\n")
    assert run_cli([*args, "--out", tmp_path / "biased"], capsys)[0] == 0
    plain, biased = ({line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1:] for line in
                      (tmp_path / name / "hyp").read_text().splitlines()} for name in ("plain", "biased"))
    assert biased[ids[0]] != plain[ids[0]] or biased[ids[1]] != plain[ids[1]]  # the lists took effect
    assert all(biased[u] == plain[u] for u in ids[2:])  # and only where they were given
    assert "1 line(s) name utterances" in caplog.text
    (data / "context").write_text(f"{ids[0]} b q\n")
    code, _, err = run_cli([*args, "--out", tmp_path / "bad"], capsys)
    assert code == 1 and "context:1: 'b q' has characters the model has no token for" in err


def test_an_export_bundle_takes_hotwords_without_torch(trained_exp, tone_corpus, tmp_path, capsys):
    """The exported runtime biases as the checkpoint does, in a Python where torch cannot be imported."""
    import subprocess
    import sys

    from asrkit.recognize.export import export_bundle

    from conftest import run_cli, torch_blocked_env

    bundle = export_bundle(trained_exp, tmp_path / "bundle")
    hot = tmp_path / "hot.txt"
    hot.write_text("b b\t3\n")
    wavs = [str(w) for w in sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:4]]
    flags = ["--mode", "beam", "--beam", "4", "--hotwords", str(hot)]
    code, want, _ = run_cli(["transcribe", trained_exp, *wavs, *flags], capsys)
    assert code == 0
    got = subprocess.run([sys.executable, "-m", "asrkit", "transcribe", str(bundle), *wavs, *flags],
                         env=torch_blocked_env(tmp_path / "no_torch"), capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want


def test_hotwords_outside_the_lexicon_are_warned_about(trained_exp, tone_corpus, tmp_path, capsys, caplog):
    from conftest import run_cli

    lexicon, hot = tmp_path / "lexicon.txt", tmp_path / "hot.txt"
    lexicon.write_text("a\nb\n")
    hot.write_text("a b\nab\n")
    wav = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[0]
    code, _, _ = run_cli(["transcribe", trained_exp, wav, "--mode", "beam", "--lexicon", lexicon, "--hotwords", hot],
                         capsys)
    assert code == 0 and "1 hotword(s) are not in --lexicon" in caplog.text and "(e.g. ab)" in caplog.text
