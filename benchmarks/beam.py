"""CTC prefix beam search speed and quality: asrkit against pyctcdecode and flashlight-text.

The same log-probabilities go to three decoders, no LM, at beam 10 and 50:
  - asrkit ``prefix_beam_search`` (tensorised, the whole set as one batch; again
    with pyctcdecode's default token pruning, tokens below log-prob -5 do not
    extend prefixes; and one utterance at a time, the latency a single
    ``transcribe`` or a stream sees, exact and with that pruning, under which
    a frame where nothing but the blank is left only moves the scores); each
    plain search runs the compiled step (asrkit.search.kernel), and again
    the numpy step it replaced ("numpy step" rows, ASRKIT_SEARCH_KERNEL=0);
  - pyctcdecode ``decode_beams`` (pure Python, one utterance at a time);
  - flashlight-text ``LexiconFreeDecoder`` (C++, the engine behind
    torchaudio's ``ctc_decoder``), with torchaudio's default options.
Two inputs: random peaky posteriors (N utterances x T frames x 30 tokens, a
blank-heavy CTC-like shape) and a real model's output (a trained asrkit model
run on concatenated test utterances, cut to T frames).

Printed per decoder: ms per utterance, throughput (utterances/s) and its ratio
to asrkit's batched search, and how its best hypothesis compares with
asrkit's under the exact CTC log-likelihood log P(text | x) (forward algorithm,
torch's ctc_loss): asrkit must be >= on every utterance.

    pip install pyctcdecode flashlight-text      # the peers (not asrkit dependencies)
    bash recipes/digits/run.sh                   # a trained model for the real input (or pass --exp)
    python benchmarks/beam.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from asrkit.search.prefix import prefix_beam_search

ROOT = Path(__file__).resolve().parents[1]


def peaky_log_probs(num_utts: int, num_frames: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """Blank on ~60% of frames, otherwise one token dominating; the rest noise."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_utts, num_frames, vocab, generator=gen)
    winners = torch.randint(1, vocab, (num_utts, num_frames), generator=gen)
    winners[torch.rand(num_utts, num_frames, generator=gen) < 0.6] = 0
    logits.scatter_add_(2, winners[..., None], torch.full((num_utts, num_frames, 1), 6.0))
    return logits.log_softmax(-1)


def model_log_probs(exp: Path, data_dir: Path, num_utts: int, num_frames: int):
    """A real model's posteriors: test utterances' features concatenated until T encoder frames."""
    from asrkit.data.datadir import DataDir
    from asrkit.recognize.recognizer import Recognizer

    recognizer = Recognizer(exp)
    data = DataDir.load(data_dir)
    feats = recognizer.features_of(data)
    pool = [feats[u] for u in data.utt_ids()]
    factor = recognizer.config.model.time_reduction
    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(num_utts):
        pieces, frames = [], 0
        while frames < num_frames * factor + 8:
            piece = pool[int(rng.integers(len(pool)))]
            pieces.append(piece)
            frames += piece.shape[0]
        inputs.append(np.concatenate(pieces)[: num_frames * factor])
    out = []
    with torch.no_grad():
        for start in range(0, num_utts, 25):
            batch = torch.from_numpy(np.stack([recognizer.cmvn(x) for x in inputs[start:start + 25]]).astype(np.float32))
            log_probs, _ = recognizer.model(batch, torch.full((batch.size(0),), batch.size(1)))
            out.append(log_probs[:, :num_frames])
    symbols = recognizer.tokenizer.symbols
    return torch.cat(out), symbols


def labels_for(symbols: list[str]) -> list[str]:
    """One character per token for the peers: blank '', <space> ' ', <unk> '#'."""
    special = {"<blank>": "", "<space>": " ", "<unk>": "#"}
    return [special.get(s, s) for s in symbols]


def to_ids(text: str, labels: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(labels) if c}
    return [index[c] for c in " ".join(text.split())]


def ctc_log_likelihood(log_probs: torch.Tensor, texts: list[str], labels: list[str]) -> np.ndarray:
    """Exact log P(text | x) for each utterance (summed over alignments)."""
    frames = torch.full((log_probs.size(0),), log_probs.size(1))
    return token_log_likelihood(log_probs, frames, [to_ids(t, labels) for t in texts])


def token_log_likelihood(log_probs: torch.Tensor, lengths: torch.Tensor, token_lists: list[list[int]]) -> np.ndarray:
    """Exact log P(tokens | x) for each utterance of ``lengths`` frames (forward algorithm, torch's ctc_loss)."""
    targets = [torch.tensor(t, dtype=torch.long) for t in token_lists]
    target_lens = torch.tensor([len(t) for t in targets])
    flat = torch.cat(targets) if sum(target_lens) else torch.zeros(0, dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1).double(), flat, lengths, target_lens,
                                        blank=0, reduction="none", zero_infinity=False)
    return -loss.numpy()


def text_of(tokens, labels: list[str]) -> str:
    return " ".join("".join(labels[t] for t in tokens).split())


def run_asrkit(log_probs, labels, beam, batch_size, token_min_logp=None, compiled=True):
    """asrkit's search, ``batch_size`` utterances per call; ``compiled``: the compiled step
    (asrkit.search.kernel) where it applies, else the numpy step (the path before it)."""
    lengths = torch.full((log_probs.size(0),), log_probs.size(1))
    space = labels.index(" ") if " " in labels else None
    texts = []
    before = os.environ.get("ASRKIT_SEARCH_KERNEL")
    os.environ["ASRKIT_SEARCH_KERNEL"] = "1" if compiled else "0"
    try:
        prefix_beam_search(log_probs[:1], lengths[:1], beam=beam, space_id=space)  # compiled (or loaded) before timing
        start = time.perf_counter()
        for i in range(0, log_probs.size(0), batch_size):
            found = prefix_beam_search(log_probs[i:i + batch_size], lengths[i:i + batch_size], beam=beam,
                                       space_id=space, token_min_logp=token_min_logp)
            texts.extend(text_of(n[0].tokens, labels) for n in found)
        return texts, time.perf_counter() - start
    finally:
        if before is None:
            os.environ.pop("ASRKIT_SEARCH_KERNEL")
        else:
            os.environ["ASRKIT_SEARCH_KERNEL"] = before


def run_pyctcdecode(log_probs, labels, beam):
    import logging

    from pyctcdecode import build_ctcdecoder

    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    decoder = build_ctcdecoder(labels)
    arrays = [x.numpy() for x in log_probs]
    texts = []
    start = time.perf_counter()
    for x in arrays:
        texts.append(decoder.decode_beams(x, beam_width=beam)[0][0])
    return [" ".join(t.split()) for t in texts], time.perf_counter() - start


def run_flashlight(log_probs, labels, beam):
    from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions, ZeroLM

    vocab = log_probs.size(-1)
    # torchaudio.models.decoder.ctc_decoder's defaults: every token, threshold 50, max (not log-add) merging
    options = LexiconFreeDecoderOptions(beam_size=beam, beam_size_token=vocab, beam_threshold=50.0, lm_weight=0.0,
                                        sil_score=0.0, log_add=False, criterion_type=CriterionType.CTC)
    silence = labels.index(" ") if " " in labels else 0
    decoder = LexiconFreeDecoder(options, ZeroLM(), silence, 0, [])
    arrays = [np.ascontiguousarray(x.numpy(), dtype=np.float32) for x in log_probs]
    texts = []
    start = time.perf_counter()
    for x in arrays:
        result = decoder.decode(x.ctypes.data, x.shape[0], x.shape[1])[0]
        path = [t for i, t in enumerate(result.tokens) if t != 0 and (i == 0 or t != result.tokens[i - 1])]
        texts.append(text_of(path, labels))
    return texts, time.perf_counter() - start


def quiet_share(log_probs: torch.Tensor) -> float:
    """Share of frames where pruning at -5 leaves only the blank (the frames a pruned search skips through)."""
    others = log_probs[..., 1:].max(-1).values
    return float((others < -5.0).float().mean())


def compare(name: str, log_probs: torch.Tensor, labels: list[str], beams: list[int], batch_size: int) -> None:
    num_utts, num_frames, vocab = log_probs.shape
    print(f"\n## {name}: {num_utts} utterances x {num_frames} frames x {vocab} tokens")
    for beam in beams:
        ours, ours_s = run_asrkit(log_probs, labels, beam, batch_size)
        ours_ll = ctc_log_likelihood(log_probs, ours, labels)
        rows = [("asrkit batched", ours_s, ours_ll)]
        numpy_texts, numpy_s = run_asrkit(log_probs, labels, beam, batch_size, compiled=False)
        rows.append(("  numpy step", numpy_s, ctc_log_likelihood(log_probs, numpy_texts, labels)))
        pruned, pruned_s = run_asrkit(log_probs, labels, beam, batch_size, token_min_logp=-5.0)
        rows.append(("asrkit -5 pruning", pruned_s, ctc_log_likelihood(log_probs, pruned, labels)))
        single, single_s = run_asrkit(log_probs, labels, beam, 1)
        rows.append(("asrkit 1 utt/call", single_s, ctc_log_likelihood(log_probs, single, labels)))
        few = max(num_utts // 10, 1)  # the numpy step one utterance at a time is slow: a tenth of the set
        single_numpy, single_numpy_s = run_asrkit(log_probs[:few], labels, beam, 1, compiled=False)
        rows.append(("  numpy step", single_numpy_s * num_utts / few,
                     ctc_log_likelihood(log_probs[:few], single_numpy, labels)))
        single_pruned, single_pruned_s = run_asrkit(log_probs, labels, beam, 1, token_min_logp=-5.0)
        rows.append(("asrkit 1 utt -5", single_pruned_s, ctc_log_likelihood(log_probs, single_pruned, labels)))
        for peer, runner in (("pyctcdecode", run_pyctcdecode), ("flashlight-text", run_flashlight)):
            try:
                texts, seconds = runner(log_probs, labels, beam)
            except ImportError as exc:
                print(f"  {peer}: not installed ({exc}); pip install pyctcdecode flashlight-text")
                continue
            rows.append((peer, seconds, ctc_log_likelihood(log_probs, texts, labels)))
        print(f"beam {beam}:" + ("" if beam != beams[0] else f" ({quiet_share(log_probs):.0%} of frames quiet at -5: "
                                                             "nothing but the blank above log-prob -5)"))
        print(f"  {'decoder':18s} {'ms/utt':>8s} {'utt/s':>8s} {'asrkit x':>9s}  best-hyp log P vs asrkit")
        for label, seconds, ll in rows:
            diff = ours_ll[:len(ll)] - ll
            quality = (f"asrkit higher on {int((diff > 1e-3).sum())}, equal on {int((abs(diff) <= 1e-3).sum())}, "
                       f"lower on {int((diff < -1e-3).sum())} (mean {diff.mean():+.3f})") if label != "asrkit batched" \
                else f"mean log P {ll.mean():.3f}"
            print(f"  {label:18s} {1000 * seconds / num_utts:8.2f} {num_utts / seconds:8.1f} "
                  f"{seconds / ours_s:8.1f}x  {quality}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=200)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--beams", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--batch-size", type=int, default=200, help="asrkit utterances per call")
    parser.add_argument("--exp", type=Path, default=ROOT / "recipes/digits/exp/bilstm/avg_10.pt")
    parser.add_argument("--data", type=Path, default=ROOT / "recipes/digits/data/test")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    symbols = ["<blank>", "<space>"] + list("abcdefghijklmnopqrstuvwxyzäö")
    compare("random peaky", peaky_log_probs(args.utts, args.frames, len(symbols)), labels_for(symbols),
            args.beams, args.batch_size)
    if args.exp.exists() and args.data.is_dir():
        log_probs, symbols = model_log_probs(args.exp, args.data, args.utts, args.frames)
        compare(f"model output ({args.exp.relative_to(ROOT) if args.exp.is_relative_to(ROOT) else args.exp})",
                log_probs, labels_for(symbols), args.beams, args.batch_size)
    else:
        print(f"\n(no model at {args.exp} / data at {args.data}: run recipes/digits/run.sh for the real-output rows)")


if __name__ == "__main__":
    main()
