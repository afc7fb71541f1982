"""Jordan's recurrent network: one step against its equations, padding, both directions, training."""

from __future__ import annotations

import pytest
import torch

from asrkit.config import ModelConfig
from asrkit.errors import ConfigError
from asrkit.model import build_model
from asrkit.model.jordan import JordanDirection, JordanLayer, JordanRNN
from asrkit.model.recurrent import reverse_within_length as reverse_padded


def test_two_steps_follow_the_equations_written_out():
    """h_t = tanh(W x_t + U y_{t-1} + b), y_t = tanh(V h_t + c), y_0 = 0."""
    torch.manual_seed(0)
    cell = JordanDirection(3, 4)
    x = torch.randn(1, 2, 3)
    W, b = cell.input.weight, cell.input.bias
    U = cell.recurrent.weight
    V, c = cell.output.weight, cell.output.bias
    h1 = torch.tanh(W @ x[0, 0] + b)  # U y_0 = 0
    y1 = torch.tanh(V @ h1 + c)
    h2 = torch.tanh(W @ x[0, 1] + U @ y1 + b)
    y2 = torch.tanh(V @ h2 + c)
    out = cell(x)
    assert torch.allclose(out[0, 0], y1, atol=1e-6) and torch.allclose(out[0, 1], y2, atol=1e-6)


def test_reverse_padded_reverses_each_utterance_within_its_length():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]  # padding stays after the valid part


@pytest.mark.parametrize("bidirectional", [False, True])
def test_outputs_do_not_depend_on_padding_and_the_backward_direction_starts_at_each_end(bidirectional):
    torch.manual_seed(1)
    layer = JordanLayer(3, 4, bidirectional)
    short = torch.randn(1, 4, 3)
    alone = layer(short, torch.tensor([4]))
    padded = torch.cat([short, torch.randn(1, 3, 3)], 1)  # three frames of junk after it
    batch = torch.cat([padded, torch.randn(1, 7, 3)], 0)
    together = layer(batch, torch.tensor([4, 7]))
    assert torch.allclose(together[0, :4], alone[0], atol=1e-6)
    assert together[0, 4:].abs().sum() == 0
    assert together.shape == (2, 7, 8 if bidirectional else 4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_jordan_encoder_trains_a_step_and_unknown_types_list_the_choices(bidirectional):
    cfg = ModelConfig(rnn_type="jordan", num_layers=2, hidden_size=8, bidirectional=bidirectional, dropout=0.1)
    model = build_model(5, 6, cfg)
    assert isinstance(model.encoder.rnn, JordanRNN) and len(model.encoder.rnn.layers) == 2
    feats, lens = torch.randn(2, 20, 5), torch.tensor([20, 13])
    log_probs, out_lens = model(feats, lens)
    assert log_probs.shape == (2, 5, 6) and out_lens.tolist() == [5, 3]
    loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.tensor([[1, 2], [3, 3]]), out_lens,
                                        torch.tensor([2, 2]), reduction="sum", zero_infinity=True)
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.rnn.parameters())
    with pytest.raises(ConfigError, match="lstm, gru, rnn \\(Elman\\) or jordan"):
        build_model(5, 6, ModelConfig(rnn_type="hopfield"))


def test_jordan_model_trains_and_decodes_through_the_cli(tone_corpus, tiny_config, tmp_path, capsys):
    from conftest import run_cli

    exp = tmp_path / "jordan"
    code, _, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"],
                            "--config", tiny_config, "--out", exp, "--set", "model.rnn_type=jordan",
                            "--set", "train.epochs=3"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["-q", "decode", exp, tone_corpus["dev"], "--out", tmp_path / "d", "--mode", "beam"],
                             capsys)
    assert code == 0, err
    assert len((tmp_path / "d" / "hyp").read_text().splitlines()) == 12
