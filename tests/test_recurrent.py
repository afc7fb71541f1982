"""The CPU's padded recurrence gives what packing gives: outputs, gradients, dropout, every kind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import asrkit.model.encoder as encoder_module
from asrkit.config import ModelConfig
from asrkit.model import build_model
from asrkit.model.recurrent import reverse_within_length, run_packed, run_padded, run_rnn

KINDS = [(nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"})]


def test_reverse_within_length_reverses_only_the_valid_frames():
    x = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)
    out = reverse_within_length(x, torch.tensor([5, 3]))
    assert out[..., 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    assert torch.equal(reverse_within_length(out, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("kind,extra", KINDS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_matches_packed_in_outputs_and_gradients(kind, extra, bidirectional):
    torch.manual_seed(0)
    rnn = kind(6, 5, num_layers=2, batch_first=True, bidirectional=bidirectional, **extra)
    lens = torch.tensor([9, 4, 7, 1])
    x = torch.randn(4, 9, 6)
    weights = torch.randn(4, 9, 5 * (2 if bidirectional else 1))  # an arbitrary loss over the outputs
    results = []
    for run in (run_packed, run_padded):
        xi = x.clone().requires_grad_()
        out = run(rnn, xi, lens)
        (out * weights).sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in rnn.parameters()]))
        rnn.zero_grad()
    (out_a, dx_a, dw_a), (out_b, dx_b, dw_b) = results
    assert torch.allclose(out_a, out_b, atol=1e-5)
    assert torch.all(out_b[1, 4:] == 0) and torch.all(out_b[3, 1:] == 0)  # padding zeroed, as packing leaves it
    assert torch.allclose(dx_a, dx_b, atol=1e-5)
    for a, b in zip(dw_a, dw_b):
        assert torch.allclose(a, b, atol=1e-4)


def test_padded_applies_the_modules_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = nn.LSTM(4, 3, num_layers=2, batch_first=True, bidirectional=True, dropout=0.9)
    x, lens = torch.randn(2, 6, 4), torch.tensor([6, 5])
    rnn.eval()
    assert torch.allclose(run_padded(rnn, x, lens), run_packed(rnn, x, lens), atol=1e-6)
    rnn.train()
    torch.manual_seed(1)
    first = run_padded(rnn, x, lens)
    torch.manual_seed(2)
    assert not torch.allclose(first, run_padded(rnn, x, lens))


def test_the_cpu_runs_padded_and_an_encoder_decodes_alike_either_way(monkeypatch):
    torch.manual_seed(0)
    rnn = nn.GRU(3, 2, batch_first=True)
    calls = []
    monkeypatch.setattr("asrkit.model.recurrent.run_padded", lambda *a: calls.append("padded") or run_padded(*a))
    run_rnn(rnn, torch.randn(1, 4, 3), torch.tensor([4]))
    assert calls == ["padded"]
    model = build_model(5, 7, ModelConfig(num_layers=3, hidden_size=8, pyramid_layers=1)).eval()
    plain = build_model(5, 7, ModelConfig(num_layers=2, hidden_size=8)).eval()
    feats, lens = torch.randn(3, 40, 5), torch.tensor([40, 23, 9])
    for m in (model, plain):
        with torch.no_grad():
            padded, _ = m(feats, lens)
            monkeypatch.setattr(encoder_module, "run_rnn", run_packed)
            packed, _ = m(feats, lens)
            monkeypatch.undo()
        assert torch.allclose(padded, packed, atol=1e-5)
