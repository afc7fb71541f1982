import pytest
import torch

from asrkit.errors import LmError
from asrkit.search.lm import LN10, ArpaLM, LmFusion, build_arpa, read_sentences
from asrkit.search.prefix import prefix_beam_search
from asrkit.tokenizer import CharTokenizer

from conftest import ctc_brute_force

# A bigram whose every probability can be checked by hand (log10).
HAND_ARPA = """
\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.5
-0.5\ta\t-0.3
-0.7\tb\t-0.2
-2.0\t<unk>

\\2-grams:
-0.2\t<s> a
-0.4\ta b
-0.1\tb </s>

\\end\\
"""


def hand_lm() -> ArpaLM:
    return ArpaLM.parse(HAND_ARPA.splitlines(), "hand.arpa")


def ids(lm, *words):
    return tuple(lm.index[w] for w in words)


def test_arpa_back_off_by_hand():
    lm = hand_lm()
    assert lm.order == 2
    assert lm.score(ids(lm, "<s>"), lm.index["a"])[0] == pytest.approx(-0.2)  # seen bigram
    assert lm.score(ids(lm, "<s>"), lm.index["b"])[0] == pytest.approx(-0.5 - 0.7)  # bo(<s>) + P(b)
    assert lm.score(ids(lm, "a"), lm.index["a"])[0] == pytest.approx(-0.3 - 0.5)
    assert lm.score(ids(lm, "a"), lm.index["</s>"])[0] == pytest.approx(-0.3 - 1.0)
    assert lm.score(ids(lm, "<s>"), lm.word_id("zzz"))[0] == pytest.approx(-0.5 - 2.0)  # <unk>
    assert lm.sentence_log10(["a", "b"]) == pytest.approx(-0.2 - 0.4 - 0.1)
    assert lm.sentence_log10(["b", "a"]) == pytest.approx(-1.2 + (-0.2 - 0.5) + (-0.3 - 1.0))


@pytest.mark.parametrize("text,message", [
    ("hello world\n", "must start with a \\\\data\\\\"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0 a\n\\end\\\n", "announces 2 1-grams, the file has 1"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0 a\n", "no \\\\end\\\\ line"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\nx a\n\\end\\\n", "line 5: probabilities must be numbers"),
    ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1 a\n\n\\2-grams:\n-1 a b\n\\end\\\n", "'b' of n-gram 'a b'"),
])
def test_not_arpa_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "lm.arpa"
    path.write_text(text)
    with pytest.raises(LmError, match=message) as info:
        ArpaLM.load(path)
    assert "\n" not in str(info.value)


def test_binary_or_missing_lm(tmp_path):
    path = tmp_path / "lm.bin"
    path.write_bytes(b"mmap lm http://kheafield.com/code format version 5\x00\xff\xfe")
    with pytest.raises(LmError, match="not UTF-8"):
        ArpaLM.load(path)
    with pytest.raises(LmError, match="does not exist"):
        ArpaLM.load(tmp_path / "nope.arpa")
    with pytest.raises(LmError, match="directory"):
        ArpaLM.load(tmp_path)


def test_built_kneser_ney_sums_to_one_in_every_context():
    sentences = [s.split() for s in ["a b c", "a b", "b c a", "c c a b", "a", "d a b c"]]
    for order in (1, 2, 3):
        lm = ArpaLM.parse(build_arpa(sentences, order).splitlines())
        assert lm.order == order
        histories = {()} | {ngram[:-1] for ngram in lm.ngrams() if len(ngram) > 1} | {ngram for ngram in lm.ngrams()
                                                                                    if len(ngram) < order}
        for history in histories:
            if lm.eos in history:
                continue
            total = sum(10 ** lm.score(history, w)[0] for w in range(len(lm.words)) if w != lm.bos)
            assert total == pytest.approx(1.0, abs=1e-5), history
    # seen continuations beat unseen ones, and <unk> keeps some mass
    lm = ArpaLM.parse(build_arpa(sentences, 3).splitlines())
    assert lm.sentence_log10(["a", "b", "c"]) > lm.sentence_log10(["c", "b", "a"])
    assert -20 < lm.sentence_log10(["zzz"]) < -1


def test_read_sentences_from_kaldi_text(tmp_path):
    (tmp_path / "text").write_text("u1 A B\nu2 \nu3 C\n")
    assert read_sentences(tmp_path) == [["A", "B"], ["C"]]
    with pytest.raises(LmError):
        build_arpa([], 2)


TOKENS = CharTokenizer(["<blank>", "<unk>", "<space>", "a", "b"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_scores_are_ctc_plus_weighted_lm_plus_bonus(seed):
    torch.manual_seed(seed)
    lp = torch.randn(5, 5).mul(2).log_softmax(-1)
    exact = ctc_brute_force(lp)
    fusion = LmFusion(hand_lm(), TOKENS, weight=0.8, bonus=0.3)
    (hyps,) = prefix_beam_search(lp[None], torch.tensor([5]), beam=len(exact) + 5, nbest=len(exact), lm=fusion)
    space = TOKENS.index["<space>"]
    normalised = [k for k in exact if k[:1] != (space,) and k[-1:] != (space,)
                  and all(k[i:i + 2] != (space, space) for i in range(len(k)))]
    assert len(hyps) == len(normalised)  # each text once: no leading, doubled or trailing separator
    lm = hand_lm()
    for hyp in hyps:
        words = TOKENS.decode(hyp.tokens).split()
        expected_lm = 0.8 * LN10 * lm.sentence_log10(words) + 0.3 * len(words)
        assert hyp.ctc_score == pytest.approx(exact[tuple(hyp.tokens)], abs=1e-4)
        assert hyp.lm_score == pytest.approx(expected_lm, abs=1e-4), TOKENS.decode(hyp.tokens)
        assert hyp.score == pytest.approx(hyp.ctc_score + hyp.lm_score, abs=1e-5)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_lm_changes_the_decision():
    # acoustics say "a" (0.55) over "b" (0.45); the LM says "b" is the likelier sentence
    # (by hand: log10 P(a) = -0.2 - 1.3 = -1.5, log10 P(b) = -1.2 - 0.1 = -1.3)
    frame = torch.tensor([0.0, 0.0, 0.0, 0.55, 0.45]).clamp(min=1e-6).log()
    lp = torch.stack([frame, torch.tensor([1.0, 1e-6, 1e-6, 1e-6, 1e-6]).log()])[None]
    (plain,) = prefix_beam_search(lp, torch.tensor([2]), beam=4)
    assert TOKENS.decode(plain[0].tokens) == "a"
    (fused,) = prefix_beam_search(lp, torch.tensor([2]), beam=4, lm=LmFusion(hand_lm(), TOKENS, weight=1.0))
    assert TOKENS.decode(fused[0].tokens) == "b"
    assert fused[0].lm_score == pytest.approx(LN10 * (-1.2 - 0.1))
    (light,) = prefix_beam_search(lp, torch.tensor([2]), beam=4, lm=LmFusion(hand_lm(), TOKENS, weight=0.1))
    assert TOKENS.decode(light[0].tokens) == "a"  # a light LM leaves the acoustics in charge


def test_words_the_model_cannot_spell_are_ignored():
    lm = ArpaLM.parse(build_arpa([["a", "xyz"], ["b"]], 2).splitlines())
    fusion = LmFusion(lm, TOKENS)
    assert fusion.spellable == 2 and fusion.space_id == 2
