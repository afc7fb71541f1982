"""Parity of a model and its export bundle on a whole test set: the largest log-prob difference
and whether every transcript is the same, for greedy, beam and (with a decoder) rescore.

    python benchmarks/export_parity.py MODEL DATA_DIR [--work DIR] [--beam 10] [--quantize int8]
                                       [--lexicon FILE]

MODEL is a checkpoint (an exp dir or a .pt file); the bundle is exported into --work (kept
between runs). The bar for fp32 is identical transcripts on every utterance; int8 is
reported as it comes (differing utterances and both WERs). Exit code 1 when an fp32
transcript differs or a log-prob differs by more than 1e-4.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from asrkit.data.datadir import DataDir
from asrkit.recognize.export import export_bundle
from asrkit.recognize.recognizer import Recognizer
from asrkit.scoring import score
from asrkit.search.options import SearchOptions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("parity_work"))
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--lexicon", help="also beam and rescore with this closed vocabulary")
    args = parser.parse_args()
    bundle = args.work / f"bundle_{args.quantize or 'fp32'}"
    if not bundle.is_dir():
        args.work.mkdir(parents=True, exist_ok=True)
        export_bundle(args.model, bundle, quantize=args.quantize)
    checkpoint, exported = Recognizer(args.model), Recognizer(bundle)
    data = DataDir.load(args.data_dir)
    ids = data.utt_ids()
    feats = checkpoint.features_of(data)
    worst = 0.0
    for start in range(0, len(ids), 32):  # the log-probs of every utterance, in batches of unequal lengths
        batch = [checkpoint.cmvn(feats[u]).astype(np.float32) for u in ids[start:start + 32]]
        lens = np.array([len(b) for b in batch])
        padded = np.zeros((len(batch), lens.max(), batch[0].shape[1]), np.float32)
        for row, matrix in enumerate(batch):
            padded[row, :len(matrix)] = matrix
        want, want_lens, _ = checkpoint.acoustic(padded, lens)
        got, got_lens, _ = exported.acoustic(padded, lens)
        assert got_lens.tolist() == want_lens.tolist()
        for row, n in enumerate(want_lens.tolist()):
            worst = max(worst, float(np.abs(got[row, :n] - want[row, :n]).max()))
    print(f"{args.model} -> {bundle}; {len(ids)} utterances of {args.data_dir}; {platform.machine()}, "
          f"torch {torch.__version__}")
    print(f"largest log-prob difference: {worst:.2e}")
    modes = [("greedy", None), ("beam", None)] + ([("rescore", None)] if checkpoint.has_decoder else [])
    if args.lexicon:
        modes += [(mode, args.lexicon) for mode, _ in modes[1:]]
    failed = worst > 1e-4 and args.quantize is None
    for mode, lexicon in modes:
        search = SearchOptions(mode=mode, beam=args.beam, lexicon=lexicon)
        texts = [{u: r.tokenizer.decode(h[0].tokens) for u, h in r.decode_data_dir(args.data_dir, search).items()}
                 for r in (checkpoint, exported)]
        differ = sorted(u for u in ids if texts[0][u] != texts[1][u])
        wers = [100 * score(data.text, t).wer for t in texts]
        print(f"{mode + (' + lexicon' if lexicon else ''):18s} transcripts differ: {len(differ)} of {len(ids)}{f' (e.g. {differ[0]})' if differ else ''}; "
              f"WER checkpoint {wers[0]:.2f}%, bundle {wers[1]:.2f}%")
        failed = failed or (bool(differ) and args.quantize is None)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
