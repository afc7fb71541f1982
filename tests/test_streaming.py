"""Streaming encoders (asrkit.model.streaming): any chunking of an utterance gives the log-probs of
one forward pass over all of it, for every unidirectional kind, with lookahead, pyramid, projections
and both subsamplings; what cannot stream says so in one line."""

from __future__ import annotations

import pytest
import torch

from asrkit.config import ModelConfig
from asrkit.errors import ConfigError
from asrkit.model import build_model

KINDS = {
    "gru": {},
    "lstm": {"rnn_type": "lstm"},
    "elman": {"rnn_type": "rnn"},
    "gru lookahead 3": {"lookahead": 3},
    "lstm conv2d": {"rnn_type": "lstm", "subsampling": "conv2d"},
    "gru pyramid + projection": {"pyramid_layers": 1, "projection_size": 12},
    "lstm conv2d pyramid lookahead": {"rnn_type": "lstm", "subsampling": "conv2d", "pyramid_layers": 1,
                                      "lookahead": 2},
    "gru no subsampling": {"subsampling_factor": 1},
}


def streaming_model(**overrides):
    settings = {"rnn_type": "gru", "bidirectional": False, "num_layers": 2, "hidden_size": 16, "dropout": 0.0,
                **overrides}
    torch.manual_seed(0)
    model = build_model(10, 7, ModelConfig(**settings)).eval()
    if model.encoder.lookahead is not None:  # not the identity it starts as: the future must count
        with torch.no_grad():
            model.encoder.lookahead.weight.normal_()
    return model


def chunked(model, feats: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    state, outputs, start, index = model.init_state(feats.size(0)), [], 0, 0
    while start < feats.size(1):
        size = sizes[index % len(sizes)]
        index += 1
        out, state = model.forward_chunk(feats[:, start:start + size], state)
        outputs.append(out)
        start += size
    out, state = model.forward_chunk(feats[:, :0], state, final=True)
    return torch.cat(outputs + [out], 1)


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
@pytest.mark.parametrize("sizes", [[1], [3], [4], [16], [7, 1, 12, 2], [1000]], ids=str)
def test_any_chunking_gives_the_full_forward_pass(kind, sizes):
    model = streaming_model(**KINDS[kind])
    feats = torch.randn(2, 83, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, lens = model(feats, torch.tensor([83, 83]))
    got = chunked(model, feats, sizes)
    assert got.shape == full.shape, (kind, sizes)
    assert torch.allclose(got, full, atol=1e-5), (kind, sizes, (got - full).abs().max())


@pytest.mark.parametrize("frames", [1, 2, 5, 6, 9])
def test_short_utterances_stream_to_what_the_full_pass_pads_them_to(frames):
    for kind in ("gru", "lstm conv2d", "lstm conv2d pyramid lookahead"):
        model = streaming_model(**KINDS[kind])
        feats = torch.randn(1, frames, 10, generator=torch.Generator().manual_seed(frames))
        with torch.no_grad():
            full, _ = model(feats, torch.tensor([frames]))
        got = chunked(model, feats, [1])
        assert got.shape == full.shape and torch.allclose(got, full, atol=1e-5), (kind, frames)


def test_lookahead_hears_the_future_and_the_unidirectional_model_does_not():
    plain, ahead = streaming_model(), streaming_model(lookahead=2)
    feats = torch.randn(1, 40, 10)
    changed = feats.clone()
    changed[:, 32:] += 1.0  # encoder frames 8.. (4x stacking)
    with torch.no_grad():
        for model, untouched in ((plain, 8), (ahead, 6)):  # frame t hears frames up to t + lookahead
            a, _ = model(feats, torch.tensor([40]))
            b, _ = model(changed, torch.tensor([40]))
            assert torch.allclose(a[:, :untouched], b[:, :untouched])
            assert not torch.allclose(a[:, untouched], b[:, untouched])


def test_what_cannot_stream_says_what_to_use_instead():
    with pytest.raises(ConfigError, match="bidirectional encoder cannot stream.*bidirectional: false"):
        build_model(10, 7, ModelConfig(num_layers=1, hidden_size=8)).init_state()
    with pytest.raises(ConfigError, match="Jordan encoder cannot stream"):
        build_model(10, 7, ModelConfig(rnn_type="jordan", bidirectional=False, num_layers=1, hidden_size=8)).init_state()
    with pytest.raises(ConfigError, match="model.lookahead=2.*unidirectional"):
        ModelConfig(lookahead=2).check()


def test_a_lookahead_model_exports_with_torchs_log_probs(tmp_path, capsys):
    """The offline graph of a streaming model (unidirectional, lookahead convolution) on ONNX Runtime."""
    import numpy as np

    from asrkit.recognize.recognizer import Recognizer

    from conftest import run_cli
    from test_export import small_checkpoint

    config = tmp_path / "stream.yaml"
    config.write_text("model: {rnn_type: gru, bidirectional: false, num_layers: 2, lookahead: 3}\n")
    from asrkit.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = small_checkpoint(config, tmp_path / "model.pt")
    record = load_checkpoint(checkpoint)
    weight = record.model_state["encoder.lookahead.weight"]
    weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))  # not the identity
    save_checkpoint(checkpoint, record)
    assert run_cli(["-q", "export", checkpoint, "--out", tmp_path / "bundle"], capsys)[0] == 0
    torch_side, onnx_side = Recognizer(checkpoint), Recognizer(tmp_path / "bundle")
    feats = np.random.default_rng(0).standard_normal((3, 90, torch_side.config.feature.dim)).astype(np.float32)
    lens = np.array([90, 31, 64])
    want, want_lens, _ = torch_side.acoustic(feats, lens)
    got, got_lens, _ = onnx_side.acoustic(feats, lens)
    assert got_lens.tolist() == want_lens.tolist()
    for row, n in enumerate(want_lens.tolist()):
        assert np.abs(got[row, :n] - want[row, :n]).max() < 1e-4
