"""sentencepiece units: the tokenizer owns the word boundary, and the batched search agrees with
the reference when words begin at "▁" pieces (with a lexicon and an LM)."""

import dataclasses
import math
import random

import pytest
import torch

from asrkit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from asrkit.errors import CheckpointError, DataDirError
from asrkit.search.lexicon import Lexicon
from asrkit.search.lm import ArpaLM, LmFusion, build_arpa
from asrkit.search.prefix import prefix_beam_search
from asrkit.tokenizer import CharTokenizer, SentencePieceTokenizer, from_checkpoint, load_tokenizer, train_sentencepiece

from conftest import assert_nbest_agree, random_ints, random_lm_fusion
from reference_search import prefix_beam_search_reference

pytest.importorskip("sentencepiece")


def random_words(seed: int, count: int = 400) -> list[str]:
    rng = random.Random(seed)
    return sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
                   for _ in range(count)})


@pytest.fixture(scope="module")
def sp500(tmp_path_factory):
    """A BPE model of 500 pieces trained on random-word sentences, and those words."""
    words = random_words(0)
    rng = random.Random(1)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("sp"), vocab_size=500), words


def test_pieces_round_trip_and_the_tokenizer_owns_the_word_boundary(sp500, tmp_path):
    tokenizer, words = sp500
    assert len(tokenizer) == 500 and tokenizer.symbols[:2] == ["<blank>", "<unk>"]
    text = " ".join(words[:6])
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text and tokenizer.decode([0] + ids + [0]) == text
    starts = tokenizer.boundary.starts
    assert tokenizer.boundary.separator is None and len(starts) == 500
    assert [tokenizer.decode([ids[p] for p in w]) for w in tokenizer.split_words(ids)] == words[:6]
    spelt = tokenizer.spell(words[0])
    assert spelt == tokenizer.encode(words[0]) and starts[spelt[0]] and not any(starts[t] for t in spelt[1:])
    assert tokenizer.spell("two words") is None and tokenizer.spell("") is None
    first, second = tokenizer.encode(words[0]), tokenizer.encode(words[1])
    assert tokenizer.decode(tokenizer.join(first, second)) == f"{words[0]} {words[1]}"
    # saved beside tokens.txt and in a checkpoint (bytes survive weights_only loading)
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).symbols == tokenizer.symbols
    entries = tokenizer.checkpoint_entries()
    record = Checkpoint(model_state={}, config={}, tokens=entries["tokens"], cmvn={}, feat_dim=1,
                        vocab_size=len(tokenizer), sentencepiece=entries["sentencepiece"])
    save_checkpoint(tmp_path / "x.pt", record)
    again = from_checkpoint(load_checkpoint(tmp_path / "x.pt"))
    assert isinstance(again, SentencePieceTokenizer) and again.encode(text) == ids
    characters = dataclasses.replace(record, tokens=["<blank>", "<unk>", "a"], sentencepiece=None)
    assert isinstance(from_checkpoint(characters), CharTokenizer)


def test_a_sentencepiece_model_that_does_not_match_the_checkpoint_is_refused_at_load(sp500, tmp_path):
    """A checkpoint whose sentencepiece bytes come from another model than its token table (and so
    its output layer): refused when it is loaded, in one line."""
    tokenizer, _ = sp500
    other = train_sentencepiece(["a b c ab bc abc"] * 30, tmp_path / "other", vocab_size=8)
    record = Checkpoint(model_state={}, config={}, tokens=tokenizer.symbols, cmvn={}, feat_dim=1, vocab_size=500,
                        sentencepiece=other.proto)
    with pytest.raises(CheckpointError, match="sentencepiece model \\(8 pieces\\) does not match its token table "
                                              "\\(500 entries\\)"):
        from_checkpoint(record)


def test_a_foreign_sentencepiece_model_is_refused(tmp_path):
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.Train(sentence_iterator=iter(["a b c ab bc"] * 20), model_writer=model,
                                             vocab_size=8, minloglevel=2)  # the defaults: <unk> 0, <s> 1, </s> 2
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    with pytest.raises(DataDirError, match="has <blank> \\(pad\\) at 0, <unk> at 1"):
        SentencePieceTokenizer.load(tmp_path / "tokenizer.model")
    with pytest.raises(DataDirError, match="sentencepiece model .*none.model does not exist"):
        SentencePieceTokenizer.load(tmp_path / "none.model")
    (tmp_path / "tokenizer.model").write_bytes(b"junk")
    with pytest.raises(DataDirError, match="not a sentencepiece model"):
        load_tokenizer(tmp_path)


def test_lm_fusion_scores_a_word_when_the_next_begins_and_at_the_end(sp500):
    tokenizer, words = sp500
    lm = ArpaLM.parse(build_arpa([[words[0], words[1]], [words[1]]], order=2).splitlines())
    fusion = LmFusion(lm, tokenizer, weight=1.0)
    assert fusion.word_starts == tokenizer.boundary.starts and fusion.spellable == 2
    ids = tokenizer.encode(f"{words[0]} {words[1]}")
    lp = torch.full((1, 2 * len(ids), 500), -20.0)
    for t, token in enumerate(ids):  # each token then a blank
        lp[0, 2 * t, token] = 0.0
        lp[0, 2 * t + 1, 0] = 0.0
    lp = lp.log_softmax(-1)
    (hyps,) = prefix_beam_search(lp, torch.tensor([lp.size(1)]), beam=4, lm=fusion)
    expected = lm.sentence_log10([words[0], words[1]]) * math.log(10)
    assert hyps[0].tokens == ids and hyps[0].lm_score == pytest.approx(expected, abs=1e-4)


def _case(generator, tokenizer, words, with_lm):
    randint = random_ints(generator)
    chosen = [words[randint(0, len(words) - 1)] for _ in range(randint(1, 30))]
    lexicon = Lexicon(sorted(set(chosen)), tokenizer)
    spelt = [tokenizer.spell(w) for w in sorted(set(chosen)) if w not in lexicon.skipped]
    num_frames = randint(1, 14)
    # posteriors that favour the lexicon's pieces, so that words get finished
    favoured = sorted({t for s in spelt for t in s})
    logits = torch.randn(3, num_frames, len(tokenizer), generator=generator) * [1.0, 3.0][randint(0, 1)]
    logits[:, :, favoured] += 4.0
    lp = logits.log_softmax(-1)
    lengths = torch.randint(0, num_frames + 1, (3,), generator=generator)
    lengths[0] = num_frames
    fusion = random_lm_fusion(randint, chosen, tokenizer, 15) if with_lm else None
    return lexicon, spelt, lp, lengths, randint(1, 8), fusion


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("with_lexicon", [True, False])
def test_batched_search_equals_reference_with_sentencepiece_500(sp500, with_lm, with_lexicon):
    """The property test of the character search, on a real 500-piece vocabulary: the batched
    search's whole n-best has the reference's tokens, order and scores."""
    tokenizer, words = sp500
    generator = torch.Generator().manual_seed(31 + 2 * with_lm + with_lexicon)
    starts = tokenizer.boundary.starts
    for case in range(12):
        lexicon, spelt, lp, lengths, beam, fusion = _case(generator, tokenizer, words, with_lm)
        constraint = dict(lexicon=lexicon) if with_lexicon else {}
        reference_constraint = dict(lexicon=spelt) if with_lexicon else {}
        fast = prefix_beam_search(lp, lengths, beam=beam, nbest=beam, word_starts=starts, lm=fusion, **constraint)
        slow = prefix_beam_search_reference(lp, lengths, beam=beam, nbest=beam, word_starts=starts, lm=fusion,
                                            **reference_constraint)
        assert_nbest_agree(fast, slow, with_lm, f"case {case} beam {beam}")
        for utt, got in enumerate(fast):
            if got and with_lexicon:
                text = tokenizer.decode(got[0].tokens).split()
                assert all(w in {tokenizer.decode(s) for s in spelt} for w in text[:-1]), f"case {case} utt {utt}"


def test_full_beams_agree_token_for_token_on_a_small_piece_vocabulary():
    """Every hypothesis, not just the best, on a hand-made word-start vocabulary."""
    starts = (False, False, True, True, False, False)  # 2, 3 begin words; 4, 5 continue them
    generator = torch.Generator().manual_seed(3)
    for _ in range(30):
        num_frames = int(torch.randint(1, 12, (), generator=generator))
        lp = (torch.randn(2, num_frames, 6, generator=generator) * 2).log_softmax(-1)
        lengths = torch.tensor([num_frames, max(num_frames - 3, 0)])
        beam = int(torch.randint(1, 7, (), generator=generator))
        fast = prefix_beam_search(lp, lengths, beam=beam, nbest=beam, word_starts=starts)
        slow = prefix_beam_search_reference(lp, lengths, beam=beam, nbest=beam, word_starts=starts)
        for got, want in zip(fast, slow):
            assert [h.tokens for h in got] == [h.tokens for h in want]
            assert all(math.isclose(g.score, w.score, abs_tol=1e-4) for g, w in zip(got, want))
