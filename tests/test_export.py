"""asrkit export: ONNX bundles whose log-probs and transcripts are torch's, for every shipped
recipe config's model, and bundles that are refused in one line when they are damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asrkit.checkpoint import Checkpoint, save_checkpoint
from asrkit.config import load_config
from asrkit.errors import CheckpointError
from asrkit.model import build_model
from asrkit.tokenizer import CharTokenizer

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("recipes/*/conf/*.yaml"))


def small_checkpoint(config: Path, path: Path, seed: int = 0) -> Path:
    """A checkpoint of ``config``'s model at a small width (random weights): its every other setting,
    layer kind, direction, subsampling, pyramid and projections, as the recipe ships it."""
    cfg = load_config(config, ["model.hidden_size=24", "model.num_layers=2", "model.projection_size=0"]
                      if load_config(config).model.projection_size else ["model.hidden_size=24"])
    if cfg.model.pyramid_layers >= cfg.model.num_layers:
        cfg.model.pyramid_layers = cfg.model.num_layers - 1
    torch.manual_seed(seed)
    tokens = CharTokenizer(["<blank>", "<unk>", "<space>"] + list("abcdefg"))
    model = build_model(cfg.feature.dim, len(tokens), cfg.model)
    dim = cfg.feature.dim
    record = Checkpoint(model_state=model.state_dict(), config=cfg.to_dict(), tokens=tokens.symbols,
                        cmvn={"mean": [0.0] * dim, "std": [1.0] * dim, "count": 1}, feat_dim=dim,
                        vocab_size=len(tokens))
    save_checkpoint(path, record)
    return path


@pytest.mark.parametrize("config", SHIPPED, ids=[f"{p.parent.parent.name}/{p.name}" for p in SHIPPED])
def test_every_shipped_config_exports_with_torchs_log_probs(config, tmp_path, capsys):
    """Log-probs within 1e-4 of torch's on a batch whose lengths are unsorted and differ 4x and more
    (what breaks packed-sequence exports), the same lengths, and the same transcripts (token
    sequences) with greedy, beam and (with a decoder) rescore, for every recipe's model."""
    from asrkit.recognize.recognizer import Recognizer

    checkpoint = small_checkpoint(config, tmp_path / "model.pt")
    bundle = tmp_path / "bundle"
    code, _, _ = run_cli(["-q", "export", checkpoint, "--out", bundle], capsys)
    assert code == 0
    torch_side, onnx_side = Recognizer(checkpoint), Recognizer(bundle)
    dim = torch_side.config.feature.dim
    lengths = [37, 160, 9, 90, 3]
    feats = np.random.default_rng(1).standard_normal((len(lengths), max(lengths), dim)).astype(np.float32)
    lens = np.array(lengths)
    want, want_lens, _ = torch_side.acoustic(feats, lens)
    got, got_lens, _ = onnx_side.acoustic(feats, lens)
    assert got_lens.tolist() == want_lens.tolist()
    for row, n in enumerate(want_lens.tolist()):
        assert np.abs(got[row, :n] - want[row, :n]).max() < 1e-4, (config.name, row)
    from asrkit.search.options import SearchOptions

    utterances = [feats[row, :n] for row, n in enumerate(lengths)]  # CMVN is the identity here
    modes = ["greedy", "beam"] + (["rescore"] if torch_side.has_decoder else [])
    for mode in modes:
        search = SearchOptions(mode, 4, 2 if mode != "greedy" else 1)
        texts = [[h.tokens for hyps in side.decode_features(utterances, search) for h in hyps]
                 for side in (torch_side, onnx_side)]
        assert texts[0] == texts[1], (config.name, mode)


def test_a_trained_models_bundle_transcribes_as_the_checkpoint(trained_exp, tone_corpus, tmp_path, capsys):
    """The tone model through its bundle: the same transcripts, with greedy and beam search and
    with word times, and the same decode of the dev set."""
    bundle = tmp_path / "bundle"
    code, out, err = run_cli(["export", trained_exp, "--out", bundle], capsys)
    assert code == 0, err
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "asrkit-bundle" and set(manifest["files"]) == {
        "encoder.onnx", "tokens.txt", "cmvn.json", "config.yaml"}
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:4]
    for mode in (["--mode", "greedy"], ["--mode", "beam", "--beam", "4"]):
        for fmt in ("txt", "json"):
            args = ["transcribe", *wavs, "--format", fmt, *mode]
            code, from_checkpoint, _ = run_cli([args[0], trained_exp, *args[1:]], capsys)
            assert code == 0
            code, from_bundle, _ = run_cli([args[0], bundle, *args[1:]], capsys)
            assert code == 0 and from_bundle == from_checkpoint, (mode, fmt)
    for source, out_dir in ((trained_exp, tmp_path / "d1"), (bundle, tmp_path / "d2")):
        assert run_cli(["-q", "decode", source, tone_corpus["dev"], "--out", out_dir, "--mode", "beam"], capsys)[0] == 0
    assert (tmp_path / "d1" / "hyp").read_text() == (tmp_path / "d2" / "hyp").read_text()
    files = sorted(p.name for p in bundle.iterdir())
    assert run_cli(["-q", "decode", bundle, tone_corpus["dev"]], capsys)[0] == 0  # beside the bundle, not in it
    assert run_cli(["-q", "align", bundle, tone_corpus["dev"]], capsys)[0] == 0
    assert sorted(p.name for p in bundle.iterdir()) == files
    assert (tmp_path / "decode_dev_greedy_bundle" / "hyp").is_file()
    ctm = (tmp_path / "align_dev_bundle" / "ctm").read_text()
    assert ctm == run_cli_ctm(trained_exp, tone_corpus, tmp_path, capsys)
    code, _, err = run_cli(["transcribe", bundle, wavs[0], "--mode", "rescore"], capsys)
    assert code == 1 and "has no attention decoder" in err  # a pure CTC model: none to export


def test_a_joint_models_bundle_rescores_as_the_checkpoint(joint_exp, tone_corpus, tmp_path, capsys):
    """The attention decoder as two graphs (keys, one teacher-forced step looped by the runtime): its
    sequence scores are torch's, and rescoring decodes the dev set to the same n-best."""
    from asrkit.recognize.recognizer import Recognizer

    bundle = tmp_path / "joint"
    assert run_cli(["-q", "export", joint_exp, "--out", bundle], capsys)[0] == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["decoder"] and {"decoder_keys.onnx", "decoder_step.onnx"} <= set(manifest["files"])
    torch_side, onnx_side = Recognizer(joint_exp), Recognizer(bundle)
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((3, 60, torch_side.config.feature.dim)).astype(np.float32)
    lens = np.array([60, 17, 41])
    _, enc_lens, enc = torch_side.acoustic(feats, lens)
    _, onnx_lens, onnx_enc = onnx_side.acoustic(feats, lens)
    for row, n in enumerate(enc_lens.tolist()):  # the encoder output the decoder reads
        assert np.abs(onnx_enc[row, :n] - enc[row, :n].numpy()).max() < 1e-4
    rows = [0, 2, 1, 1, 0]  # hypotheses of unequal lengths, the empty one too, of any utterance
    tokens = [rng.integers(1, len(torch_side.tokenizer), n).tolist() for n in (5, 1, 0, 7, 3)]
    want = torch_side.decoder.score_sequences(enc, enc_lens, rows, tokens)
    got = onnx_side.decoder.score_sequences(onnx_enc, onnx_lens, rows, tokens)
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    wav = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[0]
    code, _, err = run_cli(["plot", "attention", bundle, wav, "--out", tmp_path / "a.png"], capsys)
    assert code == 1 and "is an export bundle; the attention plot needs the checkpoint" in err
    for source, out in ((joint_exp, tmp_path / "r1"), (bundle, tmp_path / "r2")):
        assert run_cli(["-q", "decode", source, tone_corpus["dev"], "--mode", "rescore", "--beam", "4", "--nbest", "2",
                        "--out", out], capsys)[0] == 0
    assert (tmp_path / "r1" / "hyp").read_text() == (tmp_path / "r2" / "hyp").read_text()
    first = [line.split(" ", 3) for line in (tmp_path / "r1" / "nbest").read_text().splitlines()]
    second = [line.split(" ", 3) for line in (tmp_path / "r2" / "nbest").read_text().splitlines()]
    assert [(u, r, text) for u, r, _, text in first] == [(u, r, text) for u, r, _, text in second]
    for (*_, score_a, _), (*_, score_b, _) in zip(first, second):
        assert abs(float(score_a) - float(score_b)) < 1e-2


def test_a_second_pass_bundle_scores_as_torch(tmp_path, capsys):
    """A decoder with a memory (model.decoder_memory_layers, AN4's conf/unigru_stream_2pass.yaml): the
    keys graph runs the bidirectional second pass once per utterance within its length, and the
    bundle's sequence scores are torch's."""
    from asrkit.recognize.recognizer import Recognizer

    checkpoint = small_checkpoint(ROOT / "recipes/an4/conf/unigru_stream_2pass.yaml", tmp_path / "model.pt")
    bundle = tmp_path / "bundle"
    assert run_cli(["-q", "export", checkpoint, "--out", bundle], capsys)[0] == 0
    torch_side, onnx_side = Recognizer(checkpoint), Recognizer(bundle)
    assert torch_side.model.decoder.memory is not None
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((3, 90, torch_side.config.feature.dim)).astype(np.float32)
    lens = np.array([90, 23, 61])
    _, enc_lens, enc = torch_side.acoustic(feats, lens)
    _, onnx_lens, onnx_enc = onnx_side.acoustic(feats, lens)
    rows = [2, 0, 1, 1, 0, 2]
    tokens = [rng.integers(1, len(torch_side.tokenizer), n).tolist() for n in (5, 1, 0, 7, 3, 2)]
    want = torch_side.decoder.score_sequences(enc, enc_lens, rows, tokens)
    got = onnx_side.decoder.score_sequences(onnx_enc, onnx_lens, rows, tokens)
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())


def run_cli_ctm(exp, tone_corpus, tmp_path, capsys) -> str:
    out = tmp_path / "ref_ctm"
    assert run_cli(["-q", "align", exp, tone_corpus["dev"], "--out", out], capsys)[0] == 0
    return out.read_text()


def test_int8_bundle_runs_and_stays_close(trained_exp, tone_corpus, tmp_path, capsys):
    from asrkit.recognize.recognizer import Recognizer

    bundle = tmp_path / "int8"
    assert run_cli(["-q", "export", trained_exp, "--out", bundle, "--quantize", "int8"], capsys)[0] == 0
    assert json.loads((bundle / "manifest.json").read_text())["quantize"] == "int8"
    wav = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[0]
    fp32, int8 = Recognizer(trained_exp), Recognizer(bundle)
    assert int8.transcribe_files([wav])[0].text == fp32.transcribe_files([wav])[0].text


def test_bad_bundles_and_bad_exports_are_one_line_errors(trained_exp, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert run_cli(["-q", "export", trained_exp, "--out", bundle], capsys)[0] == 0
    wav = tmp_path / "missing.wav"
    code, _, err = run_cli(["export", trained_exp, "--out", bundle], capsys)
    assert code == 1 and "exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["export", trained_exp, "--out", tmp_path / "q", "--quantize", "int4"], capsys)
    assert code == 1 and "--quantize must be one of int8, not 'int4'" in err and not (tmp_path / "q").exists()
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    with open(damaged / "encoder.onnx", "ab") as handle:
        handle.write(b"\0")
    code, _, err = run_cli(["transcribe", damaged, wav], capsys)
    assert code == 1 and "encoder.onnx: its sha256 is not the manifest's" in err
    (damaged / "cmvn.json").unlink()
    code, _, err = run_cli(["transcribe", damaged, wav], capsys)
    assert code == 1 and "cmvn.json is missing" in err
    future = tmp_path / "future"
    shutil.copytree(bundle, future)
    manifest = json.loads((future / "manifest.json").read_text())
    (future / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    code, _, err = run_cli(["transcribe", future, wav], capsys)
    assert code == 1 and "format version 99; this asrkit reads up to 1" in err
    assert not list(tmp_path.glob(".*.tmp*"))  # no half bundle left behind


def test_a_jordan_encoder_is_refused_with_the_reason(tmp_path, capsys):
    config = tmp_path / "jordan.yaml"
    config.write_text("model: {rnn_type: jordan, num_layers: 1, hidden_size: 8}\n")
    checkpoint = small_checkpoint(config, tmp_path / "j.pt")
    code, _, err = run_cli(["export", checkpoint, "--out", tmp_path / "b"], capsys)
    assert code == 1 and "Jordan encoder cannot be exported" in err and "Python loop over time" in err
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.tmp*"))
    with pytest.raises(CheckpointError):
        from asrkit.recognize.export import export_bundle

        export_bundle(checkpoint, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.pt", "jordan.yaml"]  # nothing else left behind
