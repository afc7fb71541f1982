"""Helpers of run_study.sh (the recurrent-family study on AN4).

    python local/study.py width CONF TEXT RNN_TYPE BIDIRECTIONAL [--set KEY=VALUE ...]
                                                 # hidden size at CONF's budget (--set: a variant)
    python local/study.py table EXP_ROOT TEXT ROW... [--plots DIR]  # the results table (markdown)

The budget is the encoder + CTC head of CONF's own model (a 3 x 128 BiLSTM for
conf/study.yaml); ``width`` finds the hidden size of another type and direction
with the same number of parameters (asrkit.model.budget); ``--set`` gives the row's
encoder variant (a pyramid, projections, other subsampling), which the width then absorbs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from pathlib import Path

from asrkit.config import load_config
from asrkit.model.budget import acoustic_parameters, width_for_budget


def _vocab_size(text: Path) -> int:
    """Output units of a character model trained on the transcripts in ``text`` (Kaldi text file)."""
    from asrkit.tokenizer import CharTokenizer
    lines = text.read_text(encoding="utf-8").splitlines()
    return len(CharTokenizer.build(line.partition(" ")[2] for line in lines))


def width(conf: str, text: Path, rnn_type: str, bidirectional: bool, overrides: list[str] | None = None) -> int:
    cfg = load_config(conf)
    feat_dim = cfg.feature.num_mel_bins
    vocab = _vocab_size(text)
    budget = acoustic_parameters(cfg.model, feat_dim, vocab)
    variant = load_config(conf, overrides or []).model
    row = dataclasses.replace(variant, rnn_type=rnn_type, bidirectional=bidirectional)
    return width_for_budget(row, feat_dim, vocab, budget)


def _wer(path: Path) -> tuple[str, str]:
    if not path.exists():
        return "-", "-"
    line = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.search(r"%WER ([\d.]+) .*%CER ([\d.]+)", line)
    return (f"{match.group(1)}%", f"{match.group(2)}%") if match else ("?", "?")


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _epoch_seconds(steps: list[dict], epochs: list[dict]) -> float:
    """Training time per epoch: the median time between consecutive steps times the steps of an
    epoch. Robust to a run paused or slowed by other jobs now and then (an epoch's wall time is not),
    and without the dev evaluation."""
    stamps = [r["time"] for r in steps if "time" in r]
    gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
    if not gaps or not epochs:
        return float("nan")
    return statistics.median(gaps) * len(steps) / len(epochs)


def _encoder(m) -> str:
    """The time reduction and the between-layer variant of a row's encoder, in words."""
    text = f"x{m.subsampling_factor} {m.subsampling}"
    if m.pyramid_layers:
        text += f", pyramid {m.pyramid_layers} (x{m.time_reduction})"
    if m.projection_size:
        text += f", projection {m.projection_size}"
    return text


def table(exp_root: Path, text: Path, rows: list[str], plots: str | None) -> str:
    out = ["| row | type | direction | encoder | width | params (enc + CTC) | s / epoch | clip | clipped steps "
           "| max grad norm | dev greedy WER / CER | dev rescore WER / CER | test greedy WER / CER "
           "| test rescore WER / CER | gradients |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in rows:
        exp = exp_root / name
        cfg = load_config(exp / "config.yaml")
        m = cfg.model
        vocab = _vocab_size(text)
        params = acoustic_parameters(m, cfg.feature.num_mel_bins, vocab)
        epochs = _rows(exp / "metrics.jsonl")
        steps = _rows(exp / "steps.jsonl")
        seconds = _epoch_seconds(steps, epochs)
        clip = cfg.train.grad_clip
        threshold = clip or 5.0  # without clipping: the steps a 5.0 threshold would have cut
        norms = [r["grad_norm"] for r in steps if r.get("grad_norm") is not None]
        clipped = sum(n > threshold for n in norms) / max(len(norms), 1)
        share = f"{100 * clipped:.1f}%" + ("" if clip else " (would be, at 5.0)")
        finite = [n for n in norms if n == n and n != float("inf")]
        cells = [name, {"rnn": "Elman", "jordan": "Jordan", "gru": "GRU", "lstm": "LSTM"}[m.rnn_type],
                 "bi" if m.bidirectional else "uni", _encoder(m), str(m.hidden_size), f"{params / 1e6:.2f}M",
                 f"{seconds:.0f}", str(clip) if clip else "none", share,
                 f"{max(finite):.1f}" if finite else "-"]
        for split in ("dev", "test"):
            for mode in ("greedy", "rescore"):
                wer, cer = _wer(exp / f"decode_{split}_{mode}_best" / "wer")
                cells.append(f"{wer} / {cer}")
        cells.append(f"[png]({plots}/{name}.png)" if plots else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("width")
    w.add_argument("conf")
    w.add_argument("text", type=Path, help="training transcripts (Kaldi text)")
    w.add_argument("rnn_type")
    w.add_argument("bidirectional", choices=["true", "false"])
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the row's encoder variant")
    t = sub.add_parser("table")
    t.add_argument("exp_root", type=Path)
    t.add_argument("text", type=Path, help="training transcripts (Kaldi text)")
    t.add_argument("rows", nargs="+")
    t.add_argument("--plots")
    args = parser.parse_args()
    if args.command == "width":
        print(width(args.conf, args.text, args.rnn_type, args.bidirectional == "true", args.set))
    else:
        print(table(args.exp_root, args.text, args.rows, args.plots))


if __name__ == "__main__":
    sys.exit(main())
