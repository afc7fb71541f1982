"""What each recurrent type costs: forward + backward of the encoder, per type and direction.

Jordan's network runs as a loop over time (cuDNN has no such cell); Elman (nn.RNN),
GRU and LSTM run as torch's fused kernels. Same input, hidden size and layers for
all. Prints milliseconds per batch and the ratio to nn.RNN (Elman) of the same
direction, and the encoder's parameter count.

Then, for torch's kinds, the CPU's two ways of keeping padding out of the recurrence
(asrkit/model/recurrent.py) on a batch of unequal lengths: packing (the peer: what
``pack_padded_sequence`` users run, and asrkit did before) against asrkit's padded
per-direction run, with the ratio.

    python benchmarks/rnn_cost.py [--batch 16 --frames 800 --hidden 128 --layers 2]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import asrkit.model.encoder as encoder_module
from asrkit.config import ModelConfig
from asrkit.model import build_model
from asrkit.model.recurrent import run_packed, run_rnn


def timed(model, feats, lens, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        log_probs, _ = model(feats, lens)
        log_probs.sum().backward()
        best = min(best, time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=800, help="input frames (x4 stacking: 200 encoder frames)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"batch {args.batch} x {args.frames} frames x 80, {args.layers} x {args.hidden} units, best of {args.repeats}")
    torch.manual_seed(0)
    feats = torch.randn(args.batch, args.frames, 80)
    lens = torch.full((args.batch,), args.frames)
    for bidirectional in (False, True):
        base = None
        for rnn_type in ("rnn", "jordan", "gru", "lstm"):
            cfg = ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=args.layers,
                              hidden_size=args.hidden, dropout=0.0)
            model = build_model(80, 30, cfg)
            params = sum(p.numel() for p in model.encoder.parameters())
            seconds = timed(model, feats, lens, args.repeats)
            base = base or seconds
            print(f"  {rnn_type:6s} {'bi' if bidirectional else 'uni'}: {1000 * seconds:8.1f} ms per batch "
                  f"(x{seconds / base:.2f} Elman), encoder {params / 1e6:.2f}M parameters")
    lens = torch.linspace(0.6 * args.frames, args.frames, args.batch).long()  # unequal, as in training
    print(f"packed vs padded (lengths {int(lens[0])}-{args.frames} frames):")
    for bidirectional in (False, True):
        for rnn_type in ("rnn", "gru", "lstm"):
            cfg = ModelConfig(rnn_type=rnn_type, bidirectional=bidirectional, num_layers=args.layers,
                              hidden_size=args.hidden, dropout=0.0)
            model = build_model(80, 30, cfg)
            figures = {}
            for name, run in (("packed", run_packed), ("padded", run_rnn)):
                encoder_module.run_rnn = run
                figures[name] = timed(model, feats, lens, args.repeats)
            encoder_module.run_rnn = run_rnn
            print(f"  {rnn_type:6s} {'bi' if bidirectional else 'uni'}: packed {1000 * figures['packed']:8.1f} ms, "
                  f"padded {1000 * figures['padded']:8.1f} ms: x{figures['packed'] / figures['padded']:.2f} faster")


if __name__ == "__main__":
    main()
