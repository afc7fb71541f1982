"""CTC forced alignment, word times and transcript formats."""

import json
import math

import numpy as np
import pytest
import torch

from asrkit.errors import DecodeError
from asrkit.recognize.align import TokenSpan, WordSpan, forced_align, word_spans
from asrkit.recognize.formats import to_ctm, to_json, to_srt

from conftest import TONES, ctc_paths, run_cli


def best_path_brute_force(lp: torch.Tensor, tokens: list[int]) -> float:
    return max((score for labels, score in ctc_paths(lp) if list(labels) == tokens), default=-math.inf)


@pytest.mark.parametrize("seed,tokens", [(0, [1, 2]), (1, [1, 1]), (2, [2, 1, 2]), (3, [1]), (4, [])])
def test_viterbi_finds_the_best_alignment(seed, tokens):
    torch.manual_seed(seed)
    lp = torch.randn(6, 3).mul(2).log_softmax(-1)
    spans, score = forced_align(lp, tokens)
    assert score == pytest.approx(best_path_brute_force(lp, tokens), abs=1e-5)
    assert [s.token for s in spans] == tokens
    for a, b in zip(spans, spans[1:]):
        assert a.end <= b.start  # in order, never overlapping
    assert all(0 <= s.start < s.end <= 6 for s in spans)


def test_alignment_by_hand_and_errors():
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
    spans, _ = forced_align(probs.log(), [1, 2])
    assert [(s.token, s.start, s.end) for s in spans] == [(1, 0, 2), (2, 3, 4)]
    assert spans[0].log_prob == pytest.approx(math.log(0.8), abs=1e-6)
    with pytest.raises(DecodeError, match="need 3 frames"):
        forced_align(probs[:2].log(), [1, 1])  # a repeat needs a blank between
    bad = probs.log().clone()
    bad[1, 1] = math.nan
    with pytest.raises(DecodeError, match="NaN"):
        forced_align(bad, [1])


def test_word_spans_and_formats():
    symbols = ["<blank>", "<unk>", "<space>", "a", "b"]
    spans = [TokenSpan(3, 0, 2, math.log(0.9)), TokenSpan(2, 3, 4, 0.0), TokenSpan(4, 5, 6, math.log(0.5)),
             TokenSpan(3, 7, 9, math.log(0.5))]
    from asrkit.tokenizer import CharTokenizer

    words = word_spans(spans, CharTokenizer(symbols), 0.04)
    assert [(w.word, w.start, w.end) for w in words] == [("a", 0.0, 0.08), ("ba", 0.2, 0.36)]
    assert words[0].confidence == pytest.approx(0.9) and words[1].confidence == pytest.approx(0.5)
    assert to_ctm("rec", words) == "rec 1 0.00 0.08 a 0.90\nrec 1 0.20 0.16 ba 0.50\n"
    data = json.loads(to_json("rec.wav", "a ba", words))
    assert data["text"] == "a ba" and data["words"][1] == {"word": "ba", "start": 0.2, "end": 0.36, "confidence": 0.5}
    cues = to_srt([WordSpan("one", 0.5, 1.0, 1.0), WordSpan("two", 1.1, 1.5, 1.0), WordSpan("three", 3.0, 3.4, 1.0)])
    assert cues == ("1\n00:00:00,500 --> 00:00:01,500\none two\n\n"
                    "2\n00:00:03,000 --> 00:00:03,400\nthree\n\n")


def tone_intervals(words, seed, rate=8000):
    """Where conftest.tone_words put each word's tone (seconds)."""
    rng = np.random.default_rng(seed)
    position, intervals = 0.1, []
    for _ in words:
        duration = int(rng.uniform(0.18, 0.25) * rate) / rate
        intervals.append((position, position + duration))
        position += duration + int(rng.uniform(0.08, 0.15) * rate) / rate
    return intervals


def test_transcribe_formats_and_word_times_fall_on_the_tones(trained_exp, tmp_path, capsys):
    import soundfile

    from conftest import tone_words

    words = ["a", "b", "b", "a"]
    path = tmp_path / "abba.wav"
    soundfile.write(path, tone_words(words, seed=5), 8000)
    code, out, err = run_cli(["transcribe", trained_exp, path, "--format", "json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == "a b b a", result  # the tiny model must hear them for this check to mean anything
    for word, (start, end), truth in zip(result["words"], tone_intervals(words, 5), words):
        assert word["word"] == truth and 0 <= word["confidence"] <= 1
        middle = (word["start"] + word["end"]) / 2
        assert start - 0.05 <= middle <= end + 0.05, (word, start, end)  # the word sits on its tone
    code, out, _ = run_cli(["transcribe", trained_exp, path, "--format", "ctm"], capsys)
    assert code == 0 and len(out.splitlines()) == 4 and out.startswith("abba 1 ")
    code, out, _ = run_cli(["transcribe", trained_exp, path, "--format", "srt"], capsys)
    assert code == 0 and out.startswith("1\n00:00:00,")
    code, _, err = run_cli(["transcribe", trained_exp, path, "--format", "xml"], capsys)
    assert code == 1 and "--format must be one of" in err


def test_align_data_dir_writes_a_ctm(trained_exp, tone_corpus, tmp_path, capsys):
    from asrkit.data.datadir import DataDir

    out = tmp_path / "ctm"
    code, stdout, err = run_cli(["-q", "align", trained_exp, tone_corpus["dev"], "--out", out], capsys)
    assert code == 0, err
    data = DataDir.load(tone_corpus["dev"])
    lines = out.read_text().splitlines()
    assert len(lines) == sum(len(t.split()) for t in data.text.values())
    by_utt: dict[str, list[float]] = {}
    for line in lines:
        utt, channel, start, duration, word, confidence = line.split()
        assert word in TONES and float(duration) > 0 and 0 <= float(confidence) <= 1
        by_utt.setdefault(utt, []).append(float(start))
    assert all(starts == sorted(starts) for starts in by_utt.values())
