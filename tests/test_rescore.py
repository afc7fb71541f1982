"""Attention decoder, joint CTC/attention training and attention rescoring."""

import math

import numpy as np
import pytest
import torch

from asrkit.config import ModelConfig
from asrkit.model import build_model
from asrkit.model.decoder import decoder_io, sequence_log_probs
from asrkit.search.rescore import attention_rescore
from asrkit.search.types import Hypothesis

from conftest import run_cli


def test_decoder_inputs_and_outputs():
    targets = torch.tensor([[3, 4, 0], [5, 0, 0]])
    ys_in, ys_out = decoder_io(targets, torch.tensor([2, 1]))
    assert ys_in.tolist() == [[0, 3, 4, 0], [0, 5, 0, 0]]
    assert ys_out.tolist() == [[3, 4, 0, -1], [5, 0, -1, -1]]  # 0 = <eos>, -1 = ignored


def test_sequence_log_probs_sums_the_targets():
    logits = torch.randn(1, 3, 4)
    ys_out = torch.tensor([[2, 0, -1]])
    lp = logits.log_softmax(-1)
    assert sequence_log_probs(logits, ys_out).item() == pytest.approx((lp[0, 0, 2] + lp[0, 1, 0]).item(), abs=1e-6)


@pytest.mark.parametrize("attention", ["location", "additive"])
def test_decoder_ignores_encoder_padding(attention):
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=1, hidden_size=8, ctc_weight=0.3, attention=attention, attention_dim=8,
                      decoder_hidden_size=8, decoder_embed_dim=4, dropout=0.0)
    model = build_model(6, 7, cfg).eval()
    enc = torch.randn(1, 9, 16)
    ys_in = torch.tensor([[0, 3, 4]])
    alone = model.decoder(enc, torch.tensor([9]), ys_in)
    padded = torch.cat([enc, torch.randn(1, 5, 16) * 100], 1)
    assert torch.allclose(alone, model.decoder(padded, torch.tensor([9]), ys_in), atol=1e-5)
    _, attention_weights = model.decoder(enc, torch.tensor([9]), ys_in, return_attention=True)
    assert attention_weights.shape == (1, 3, 9)
    assert torch.allclose(attention_weights.sum(-1), torch.ones(1, 3), atol=1e-5)


def test_folded_location_term_equals_the_convolution_and_its_projection():
    """Attention.add_location applies conv and loc_proj as one (A, K) matrix over each frame's
    window: the same values and the same gradients as the plain conv -> transpose -> linear."""
    from asrkit.model.decoder import Attention

    torch.manual_seed(0)
    att = Attention(enc_dim=6, dec_dim=5, att_dim=7, location=True)
    energy = torch.randn(3, 11, 7)
    previous = torch.rand(3, 11).softmax(-1).requires_grad_()
    folded = att.add_location(energy, previous)
    plain = energy + att.loc_proj(att.conv(previous[:, None, :]).transpose(1, 2))
    assert torch.allclose(folded, plain, atol=1e-6)
    probe = torch.randn_like(plain)
    grads = torch.autograd.grad((folded * probe).sum(), [previous, att.conv.weight, att.loc_proj.weight])
    grads_plain = torch.autograd.grad((plain * probe).sum(), [previous, att.conv.weight, att.loc_proj.weight])
    for mine, reference in zip(grads, grads_plain):
        assert torch.allclose(mine, reference, atol=1e-5)


def test_joint_loss_is_the_weighted_sum():
    from asrkit.data.dataset import Batch
    from asrkit.model.decoder import attention_loss
    from asrkit.training.loss import compute_loss

    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=1, hidden_size=8, ctc_weight=0.3, attention_dim=8, decoder_hidden_size=8,
                      decoder_embed_dim=4, dropout=0.0, label_smoothing=0.0)
    model = build_model(5, 6, cfg).eval()
    batch = Batch(torch.randn(2, 40, 5), torch.tensor([40, 32]), torch.tensor([[2, 3, 4], [5, 2, 0]]),
                  torch.tensor([3, 2]), ["u1", "u2"])
    ctc = torch.nn.CTCLoss(reduction="sum", zero_infinity=True)
    enc, lens = model.encode(batch.feats, batch.feat_lens)
    ctc_part = ctc(model.ctc_log_probs(enc).transpose(0, 1), batch.targets, lens, batch.target_lens)
    ys_in, ys_out = decoder_io(batch.targets, batch.target_lens)
    att_part = attention_loss(model.decoder(enc, lens, ys_in), ys_out, 0.0)
    # without smoothing, the CE is minus the sequence log-probability
    assert att_part.item() == pytest.approx(-sequence_log_probs(model.decoder(enc, lens, ys_in), ys_out).sum().item(),
                                            rel=1e-5)
    assert compute_loss(model, batch, ctc).item() == pytest.approx((0.3 * ctc_part + 0.7 * att_part).item(), rel=1e-5)
    pure = build_model(5, 6, ModelConfig(num_layers=1, hidden_size=8))
    assert pure.decoder is None


class ReadsEncoder:
    """A stand-in decoder (a ``SequenceScorer``) that favours the token sequence written in each
    row's encoder output (channel 0 of frame s holds token s, -1 ends it; frames past the row's
    length are not read), so rescoring must hand every hypothesis its own utterance's encoder
    output and length."""

    def __init__(self, vocab: int = 6) -> None:
        self.vocab, self.calls = vocab, 0

    def score_sequences(self, enc, enc_lens, rows, tokens):
        self.calls += 1
        enc, scores = np.asarray(enc), []
        for row, seq in zip(rows, tokens):
            written = [int(x) for x in enc[row, :int(enc_lens[row]), 0]]
            favourite = (written[:written.index(-1)] if -1 in written else written) + [0]
            total = 0.0
            for step, token in enumerate(seq + [0]):
                logits = np.zeros(self.vocab)
                if step < len(favourite):
                    logits[favourite[step]] = 5.0
                total += logits[token] - np.log(np.exp(logits).sum())
            scores.append(total)
        return np.array(scores)


def encoder_output(*favourites: list[int], frames: int = 4) -> torch.Tensor:
    enc = torch.full((len(favourites), frames, 3), 2.0)  # past each favourite: junk a wrong length would read
    for row, tokens in enumerate(favourites):
        enc[row, :len(tokens) + 1, 0] = torch.tensor(tokens + [-1], dtype=torch.float)
    return enc


def test_attention_rescore_reranks_all_hypotheses_in_one_batch():
    nbest = [[Hypothesis([2, 3], -1.0, [0, 1], -1.0), Hypothesis([2, 4], -1.5, [0, 2], -1.5)],
             [Hypothesis([5], -0.1, [0], -0.1), Hypothesis([3], -0.3, [1], -0.3)]]
    decoder = ReadsEncoder()
    enc = encoder_output([2, 4], [3])
    lens = torch.tensor([4, 2])
    rescored = attention_rescore(decoder, enc, lens, nbest, ctc_weight=0.5)
    assert decoder.calls == 1
    assert rescored[0][0].tokens == [2, 4]  # each utterance's own favourite wins despite a lower CTC score
    assert rescored[1][0].tokens == [3]
    top = rescored[0][0]
    assert top.score == pytest.approx(top.att_score + 0.5 * top.ctc_score)
    assert rescored[0][0].att_score > rescored[0][1].att_score
    # the utterances' encoder outputs swapped: the choices swap with them
    swapped = attention_rescore(decoder, encoder_output([3], [2, 4]), lens.flip(0), nbest[::-1], ctc_weight=0.5)
    assert [h[0].tokens for h in swapped] == [[3], [2, 4]]
    # a huge CTC weight leaves the CTC order alone
    assert attention_rescore(decoder, enc, lens, nbest, ctc_weight=100.0)[0][0].tokens == [2, 3]
    # rows beyond max_rows go in further batches with the same result
    again = attention_rescore(decoder, enc, lens, nbest, ctc_weight=0.5, max_rows=1)
    assert [[h.tokens for h in hyps] for hyps in again] == [[h.tokens for h in hyps] for hyps in rescored]


def test_joint_model_decodes_with_every_mode_and_an_lm(joint_exp, tone_corpus, tmp_path, capsys):
    from asrkit.checkpoint import load_checkpoint
    from asrkit.scoring import read_text_file, score

    assert "decoder.cell.weight_ih" in load_checkpoint(joint_exp / "best.pt").model_state
    refs = read_text_file(tone_corpus["dev"] / "text")
    wers = {}
    for mode in ("greedy", "beam", "rescore"):
        out = tmp_path / mode
        code, _, err = run_cli(["-q", "decode", joint_exp, tone_corpus["dev"], "--mode", mode, "--beam", "4",
                                "--nbest", "2", "--out", out], capsys)
        assert code == 0, err
        wers[mode] = score(refs, read_text_file(out / "hyp")).wer
        if mode != "greedy":
            assert len((out / "nbest").read_text().splitlines()) >= 12
    assert wers["greedy"] < 0.3 and wers["rescore"] < 0.3, wers
    lm = tmp_path / "lm.arpa"
    code, out, err = run_cli(["lm", "build", tone_corpus["train"], "--out", lm, "--order", "2"], capsys)
    assert code == 0 and "2-gram" in out, err
    code, _, err = run_cli(["-q", "decode", joint_exp, tone_corpus["dev"], "--mode", "rescore", "--lm", lm,
                            "--lm-weight", "0.3", "--word-bonus", "0.5", "--out", tmp_path / "lm"], capsys)
    assert code == 0, err
    assert score(refs, read_text_file(tmp_path / "lm" / "hyp")).wer < 0.3
    lexicon = tmp_path / "lexicon.txt"  # closed vocabulary: "b" may not appear
    lexicon.write_text("a  AH\na(2)  EY\n")
    code, _, err = run_cli(["decode", joint_exp, tone_corpus["dev"], "--mode", "rescore", "--lexicon", lexicon,
                            "--out", tmp_path / "lex"], capsys)
    assert code == 0 and "lexicon" in err and "1 words spellable" in err, err
    hyps = read_text_file(tmp_path / "lex" / "hyp")
    assert all(set(h.split()) <= {"a"} for h in hyps.values()) and any(hyps.values())
    wav = tone_corpus["dev"] / "audio"
    code, out, err = run_cli(["transcribe", joint_exp, sorted(wav.iterdir())[0], "--mode", "rescore"], capsys)
    assert code == 0 and out.strip(), err
    picture = tmp_path / "attention.png"
    code, out, err = run_cli(["plot", "attention", joint_exp, sorted(wav.iterdir())[0], "--out", picture], capsys)
    assert code == 0 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", err


def test_decode_bad_search_input_is_one_line(joint_exp, trained_exp, tone_corpus, tmp_path, capsys):
    not_arpa = tmp_path / "lm.arpa"
    not_arpa.write_text("this is not an LM\n")
    cases = [
        (["decode", joint_exp, tone_corpus["dev"], "--mode", "beam", "--lm", not_arpa], "not an ARPA file"),
        (["decode", joint_exp, tone_corpus["dev"], "--mode", "beam", "--lm", tmp_path / "nope.arpa"], "does not exist"),
        (["decode", joint_exp, tone_corpus["dev"], "--mode", "greedy", "--lm", not_arpa], "--lm needs --mode beam"),
        (["decode", joint_exp, tone_corpus["dev"], "--mode", "rescore", "--beam", "0"], "at least 1"),
        (["decode", trained_exp, tone_corpus["dev"], "--mode", "rescore"], "has no attention decoder"),
        (["transcribe", joint_exp, tone_corpus["dev"] / "wav.scp", "--mode", "beam", "--lm-weight", "nan"],
         "--lm-weight must be a finite number"),
    ]
    foreign = tmp_path / "foreign.arpa"
    foreign.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.3 ЖЖ\n-0.3 </s>\n\n\\end\\\n")
    cases.append((["decode", joint_exp, tone_corpus["dev"], "--mode", "beam", "--lm", foreign], "can be spelt"))
    cases += [
        (["decode", joint_exp, tone_corpus["dev"], "--lexicon", foreign], "--lexicon needs --mode beam"),
        (["decode", joint_exp, tone_corpus["dev"], "--mode", "beam", "--lexicon", tmp_path / "no.dic"],
         "does not exist"),
        (["transcribe", joint_exp, tone_corpus["dev"] / "wav.scp", "--mode", "beam", "--lexicon", foreign],
         "none of its 5 words can be spelt"),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 1 and message in err and err.count("\n") == 1, (args, err)


def test_pure_ctc_checkpoint_from_before_the_decoder_still_loads(trained_exp, tmp_path):
    from asrkit.checkpoint import load_checkpoint, save_checkpoint
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.search.options import SearchOptions

    blob = load_checkpoint(trained_exp / "best.pt")
    for key in ("ctc_weight", "attention", "attention_dim", "decoder_hidden_size", "decoder_embed_dim",
                "label_smoothing"):
        blob.config["model"].pop(key)
    old = tmp_path / "old.pt"
    save_checkpoint(old, blob)
    recognizer = Recognizer(old)
    assert recognizer.model.decoder is None
    feats = [torch.randn(50, recognizer.model.feat_dim).numpy()]
    assert len(recognizer.decode_features(feats, SearchOptions("beam", 3, 2))[0]) >= 1


def test_nan_log_probs_are_refused():
    from asrkit.errors import DecodeError
    from asrkit.search.prefix import prefix_beam_search

    lp = torch.zeros(1, 3, 3)
    lp[0, 0, 0] = math.nan
    with pytest.raises(DecodeError, match="NaN"):
        prefix_beam_search(lp, torch.tensor([3]))


def test_token_table_that_does_not_match_the_model_is_one_line(trained_exp, tone_corpus, tmp_path, capsys):
    from asrkit.checkpoint import load_checkpoint, save_checkpoint

    blob = load_checkpoint(trained_exp / "best.pt")
    blob.tokens = list(blob.tokens)[:-1]
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, blob)
    code, _, err = run_cli(["decode", bad, tone_corpus["dev"], "--mode", "beam"], capsys)
    assert code == 1 and "token table has" in err and err.count("\n") == 1, err
