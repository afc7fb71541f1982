"""Encoder variants: pyramid (pBLSTM) and projections (BLSTMP) for every rnn_type; one owner of the time reduction."""

from __future__ import annotations

import pytest
import torch

from asrkit.config import ModelConfig
from asrkit.errors import ConfigError
from asrkit.model import build_model, output_length


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn", "jordan"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("variant", [{"pyramid_layers": 1}, {"projection_size": 12},
                                     {"pyramid_layers": 2, "projection_size": 6}])
def test_variants_match_output_length_and_ignore_padding(rnn_type, bidirectional, variant):
    torch.manual_seed(0)
    cfg = ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=3, hidden_size=8, dropout=0.0,
                      subsampling_factor=2, **variant)
    model = build_model(5, 7, cfg).eval()
    assert model.encoder.layers is not None and model.encoder.rnn is None
    assert cfg.time_reduction == 2 * 2 ** cfg.pyramid_layers
    lengths = [37, 16, 9, 3]
    feats = torch.randn(len(lengths), max(lengths), 5)
    with torch.no_grad():
        log_probs, out_lens = model(feats, torch.tensor(lengths))
        assert out_lens.tolist() == [output_length(n, cfg) for n in lengths]
        alone, alone_lens = model(feats[1:2, :16], torch.tensor([16]))  # the same utterance without padding
    assert torch.allclose(log_probs[1, :int(alone_lens[0])], alone[0], atol=1e-5)
    assert log_probs.shape[-1] == 7


@pytest.mark.parametrize("variant", [{}, {"pyramid_layers": 1, "projection_size": 6}])
@pytest.mark.parametrize("rnn_type,bidirectional", [("lstm", True), ("gru", False), ("rnn", True), ("jordan", True)])
def test_layers_unrolled_step_by_step_compute_what_the_encoder_computes(rnn_type, bidirectional, variant):
    """``unrolled`` (for gradients through time) walks the same layers as ``forward``: same output,
    and one state per step of each layer at that layer's frame rate."""
    torch.manual_seed(0)
    cfg = ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=3, hidden_size=8, dropout=0.0,
                      **variant)
    model = build_model(5, 6, cfg).eval()
    feats = torch.randn(1, 40, 5)
    enc, enc_lens = model.encoder(feats, torch.tensor([40]))
    unrolled, states = model.encoder.unrolled(feats)
    assert torch.allclose(unrolled, enc, atol=1e-5)
    assert [len(s) for s in states] == [40 // cfg.layer_time_reduction(k) for k in range(3)]
    assert int(enc_lens[0]) == output_length(40, cfg) == 40 // cfg.time_reduction


def test_output_length_is_the_forward_pass_arithmetic_for_ints_and_tensors():
    for cfg in (ModelConfig(subsampling="conv2d", subsampling_factor=4, conv_channels=2, num_layers=3,
                            pyramid_layers=2, hidden_size=8),
                ModelConfig(subsampling="stack", subsampling_factor=3, num_layers=2, pyramid_layers=1, hidden_size=8)):
        model = build_model(20, 6, cfg).eval()
        lengths = list(range(1, 40))
        with torch.no_grad():
            _, out_lens = model(torch.randn(len(lengths), max(lengths), 20), torch.tensor(lengths))
        assert out_lens.tolist() == [output_length(n, cfg) for n in lengths]


def test_plain_layers_keep_the_single_module_and_its_checkpoint_keys():
    model = build_model(5, 7, ModelConfig(num_layers=2, hidden_size=8))
    assert model.encoder.rnn is not None and model.encoder.layers is None
    assert "encoder.rnn.weight_ih_l1_reverse" in model.state_dict()


def test_an_impossible_pyramid_and_a_negative_projection_are_errors():
    with pytest.raises(ConfigError, match="impossible pyramid.*0 to num_layers - 1 \\(2\\)"):
        build_model(5, 7, ModelConfig(num_layers=3, pyramid_layers=3))
    with pytest.raises(ConfigError, match="projection_size"):
        build_model(5, 7, ModelConfig(projection_size=-1))


def test_word_times_under_a_pyramid(tone_corpus, tiny_config, tmp_path, capsys):
    """A model with x2 stacking and one pyramid layer (x4 in all, like the plain tiny model): its
    seconds per frame count the pyramid, so word times stay on the recording's clock."""
    import json

    import soundfile

    from asrkit.data.datadir import DataDir
    from asrkit.recognize.recognizer import Recognizer

    from conftest import run_cli

    exp = tmp_path / "pyramid"
    code, _, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"],
                            "--config", tiny_config, "--out", exp, "--set", "model.num_layers=2",
                            "--set", "model.subsampling_factor=2", "--set", "model.pyramid_layers=1",
                            "--set", "train.epochs=12"], capsys)
    assert code == 0, err
    recognizer = Recognizer(exp)
    assert recognizer.seconds_per_frame == pytest.approx(0.04)
    dev = DataDir.load(tone_corpus["dev"])
    checked = 0
    for utt in dev.utt_ids():
        path = dev.wav_scp[utt]
        code, out, _ = run_cli(["-q", "transcribe", exp, path, "--format", "json"], capsys)
        result = json.loads(out)
        duration = soundfile.info(path).duration
        words = result["words"]
        if result["text"] != dev.text[utt]:
            continue
        checked += 1
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        # the last tone ends 0.08-0.15 s before the file does: a time reduction counted without the
        # pyramid would put the last word's end near half the duration
        assert 0.6 * (duration - 0.15) <= words[-1]["end"] <= duration + 0.05
    assert checked >= 6  # the model gets most dev files right, and their times are on the clock


@pytest.fixture(scope="module")
def yesno_data(tmp_path_factory):
    from conftest import SHARED_CORPORA

    if not (SHARED_CORPORA / "yesno").is_dir():
        pytest.skip("../shared/corpora/yesno is not there")
    from asrkit.corpora import yesno

    root = tmp_path_factory.mktemp("yesno_types")
    yesno.prepare(SHARED_CORPORA / "yesno", root)
    return root


@pytest.mark.parametrize("rnn_type", ["rnn", "jordan", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_type_and_direction_trains_and_decodes_on_yesno(yesno_data, tmp_path, capsys, rnn_type, bidirectional):
    from conftest import run_cli

    config = tmp_path / "conf.yaml"
    config.write_text("feature: {sample_rate: 8000, num_mel_bins: 23}\n"
                      "model: {num_layers: 2, hidden_size: 16, dropout: 0.0}\n"
                      "train: {epochs: 2, lr: 0.005, warmup_steps: 5, max_frames_per_batch: 3000,"
                      " spec_augment: {enabled: false}}\n")
    exp = tmp_path / "exp"
    code, _, err = run_cli(["-q", "train", "--train", yesno_data / "train", "--dev", yesno_data / "dev", "--config",
                            config, "--out", exp, "--set", f"model.rnn_type={rnn_type}",
                            "--set", f"model.bidirectional={str(bidirectional).lower()}"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["-q", "decode", exp, yesno_data / "test", "--mode", "beam", "--beam", "4",
                            "--out", tmp_path / "dec"], capsys)
    assert code == 0, err
    assert len((tmp_path / "dec" / "hyp").read_text().splitlines()) == 30


def test_widths_for_an_equal_parameter_budget_fit_within_ten_percent():
    """The study compares types at one budget: each type's width brings its encoder + CTC head
    within 10% of a 2 x 128 BiLSTM's."""
    from asrkit.model.budget import acoustic_parameters, width_for_budget

    lstm = ModelConfig(num_layers=2, hidden_size=128, ctc_weight=0.5)  # the decoder is not counted
    budget = acoustic_parameters(lstm, 80, 30)
    for rnn_type in ("rnn", "jordan", "gru", "lstm"):
        for bidirectional in (True, False):
            cfg = ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=2)
            width = width_for_budget(cfg, 80, 30, budget)
            size = acoustic_parameters(ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=2,
                                                   hidden_size=width), 80, 30)
            assert abs(size - budget) <= 0.1 * budget, (rnn_type, bidirectional, width, size, budget)
            if rnn_type == "lstm" and bidirectional:
                assert width == 128


@pytest.mark.parametrize("variant", [[], ["model.subsampling_factor=2", "model.pyramid_layers=1"],
                                     ["model.projection_size=128"], ["model.subsampling_factor=2"]])
def test_study_recipe_width_absorbs_an_encoder_variant(tmp_path, variant):
    """recipes/an4/local/study.py width: a variant row (pyramid, projections, x2 stacking) keeps
    conf/study.yaml's budget, and the width it prints is the one that does."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    from asrkit.config import load_config
    from asrkit.model.budget import acoustic_parameters

    root = Path(__file__).resolve().parents[1] / "recipes" / "an4"
    spec = importlib.util.spec_from_file_location("an4_study", root / "local" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    text = tmp_path / "text"
    text.write_text("u1 TWO ZERO\nu2 P A T\nu3 ENTER FIFTY\n")
    conf = root / "conf" / "study.yaml"
    vocab = study._vocab_size(text)
    budget = acoustic_parameters(load_config(conf).model, 80, vocab)
    for rnn_type in ("lstm", "gru"):
        width = study.width(str(conf), text, rnn_type, True, variant)
        row = dataclasses.replace(load_config(conf, variant).model, rnn_type=rnn_type, hidden_size=width)
        size = acoustic_parameters(row, 80, vocab)
        assert abs(size - budget) <= 0.1 * budget, (variant, rnn_type, width, size, budget)
        if variant:
            assert row.layered or row.subsampling_factor == 2
        if not variant and rnn_type == "lstm":
            assert width == 128
