"""Lexicon-constrained (closed-vocabulary) CTC prefix beam search."""

import math

import pytest
import torch

from asrkit.decode import prefix_beam_search, prefix_beam_search_reference
from asrkit.errors import DecodeError
from asrkit.lexicon import Lexicon, read_lexicon
from asrkit.tokenizer import CharTokenizer
from conftest import ctc_brute_force

TOKENS = CharTokenizer(["<blank>", "<unk>", "<space>", "a", "b", "c"])
SPACE = 2


def spell(text: str) -> tuple[int, ...]:
    return tuple(TOKENS.encode(text))


def words_of(tokens) -> list[tuple[int, ...]]:
    words, current = [], []
    for tok in tokens:
        if tok == SPACE:
            words.append(tuple(current))
            current = []
        else:
            current.append(tok)
    return words + [tuple(current)]


@pytest.mark.parametrize("space_id,token_prune", [(SPACE, None), (SPACE, 3), (None, None)])
def test_batched_lexicon_search_equals_reference(space_id, token_prune):
    generator = torch.Generator().manual_seed(11)
    vocab_words = ["a", "ab", "ba", "ccb", "c", "bab", "cab", "abc"]
    for trial in range(25):
        pick = torch.randperm(len(vocab_words), generator=generator)[:int(torch.randint(1, 6, (), generator=generator))]
        chosen = [vocab_words[i] for i in pick.tolist()]
        lexicon = Lexicon(chosen, TOKENS)
        num_frames = int(torch.randint(1, 25, (), generator=generator))
        beam = int(torch.randint(1, 9, (), generator=generator))
        lp = (torch.randn(4, num_frames, len(TOKENS), generator=generator) * 3).log_softmax(-1)
        lengths = torch.randint(0, num_frames + 1, (4,), generator=generator)
        lengths[0] = num_frames
        options = dict(beam=beam, nbest=beam, token_prune=token_prune, space_id=space_id)
        fast = prefix_beam_search(lp, lengths, lexicon=lexicon, **options)
        slow = prefix_beam_search_reference(lp, lengths, lexicon=[list(spell(w)) for w in chosen], **options)
        for got, want in zip(fast, slow):
            assert [h.tokens for h in got] == [h.tokens for h in want]
            for g, w in zip(got, want):
                assert math.isclose(g.score, w.score, abs_tol=1e-4)
                assert g.timesteps == w.timesteps


def test_wide_lexicon_beam_finds_exactly_the_lexicon_texts_with_exact_scores():
    """With a beam wider than every prefix, the hypotheses are all texts made of lexicon
    words (separator rules kept) and each score is that text's exact CTC log-probability."""
    torch.manual_seed(5)
    lp = torch.randn(6, len(TOKENS)).mul(2).log_softmax(-1)
    lexicon_words = ["a", "ab", "ba", "c"]
    allowed_words = {spell(w) for w in lexicon_words}
    exact = ctc_brute_force(lp)
    allowed = {k: v for k, v in exact.items()
               if not k or all(w in allowed_words for w in words_of(k))}
    (hyps,) = prefix_beam_search(lp[None], torch.tensor([6]), beam=2000, nbest=2000, space_id=SPACE,
                                 lexicon=Lexicon(lexicon_words, TOKENS))
    assert {tuple(h.tokens) for h in hyps} == set(allowed)
    for hyp in hyps:
        assert math.isclose(hyp.score, allowed[tuple(hyp.tokens)], abs_tol=1e-4)


def test_lexicon_turns_a_non_word_into_the_nearest_word():
    # frames spell "c a b" confidently, but only "ab" and "cab"... minus "cab": lexicon {"ab", "b"}
    rows = [[-9, -9, -9, -9, -9, -0.1], [-9, -9, -9, -0.1, -9, -9], [-9, -9, -9, -9, -0.1, -9]]
    lp = torch.tensor(rows, dtype=torch.float).log_softmax(-1)[None]
    (free,) = prefix_beam_search(lp, torch.tensor([3]), beam=8, space_id=SPACE)
    assert TOKENS.decode(free[0].tokens) == "cab"
    (fixed,) = prefix_beam_search(lp, torch.tensor([3]), beam=8, space_id=SPACE,
                                  lexicon=Lexicon(["ab", "b"], TOKENS))
    assert TOKENS.decode(fixed[0].tokens) == "ab"


def test_lexicon_with_lm_fusion_keeps_fused_scores():
    from asrkit.lm import ArpaLM, LmFusion, build_arpa

    lm = ArpaLM.parse(build_arpa([["a", "ab"], ["ab"], ["c", "a"]], order=2).splitlines())
    fusion = LmFusion(lm, TOKENS, weight=0.5, bonus=0.2)
    torch.manual_seed(2)
    lp = torch.randn(2, 12, len(TOKENS)).mul(3).log_softmax(-1)
    lexicon = Lexicon(["a", "ab", "c"], TOKENS)
    results = prefix_beam_search(lp, torch.tensor([12, 9]), beam=6, nbest=6, lm=fusion, lexicon=lexicon)
    for hyps in results:
        assert hyps
        for hyp in hyps:
            assert all(w in {spell("a"), spell("ab"), spell("c")} for w in words_of(hyp.tokens)) or not hyp.tokens
            words = TOKENS.decode(hyp.tokens).split()
            want = 0.5 * math.log(10) * lm.sentence_log10(words) + 0.2 * len(words)
            assert math.isclose(hyp.lm_score, want, abs_tol=1e-4)
            assert math.isclose(hyp.score, hyp.ctc_score + hyp.lm_score, abs_tol=1e-4)


def test_read_lexicon_formats(tmp_path):
    dic = tmp_path / "an4.dic"
    dic.write_text("A      AH\nA(2)   EY\nAND    AE N D\n\n# comment\n;; kaldi comment\nOH  OW\n<sil> SIL\n",
                   encoding="utf-8")
    assert read_lexicon(dic) == ["A", "AND", "OH", "<sil>"]
    tokenizer = CharTokenizer(["<blank>", "<unk>", "<space>", "A", "D", "N", "O"])
    lexicon = Lexicon.load(dic, tokenizer)
    assert lexicon.size == 2 and lexicon.skipped == ["OH", "<sil>"]  # no H; fillers left out
    keys = torch.tensor([0])
    assert not lexicon.is_word(keys).item()


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"), ("", "has no words"), ("# only a comment\n", "has no words"),
    (b"\xff\xfe\x00A", "not UTF-8"), ("xyz\n", "none of its 1 words can be spelt")])
def test_bad_lexicons_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "lexicon.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DecodeError, match=message) as info:
        Lexicon.load(path, TOKENS)
    assert "\n" not in str(info.value)


def test_lexicon_directory_is_refused(tmp_path):
    with pytest.raises(DecodeError, match="is not a file"):
        read_lexicon(tmp_path)
