"""A LibriSpeech-size word LM in asrkit: load time, memory, and beam search with it.

Writes a synthetic gzipped ARPA trigram of about 2 million n-grams (the order of
LibriSpeech's official ``3-gram.pruned.1e-7.arpa.gz``): a Zipf-like vocabulary
of made-up words plus the digit words, so a digits model can spell some of it.
Then, in this process:
  - the time ``ArpaLM.load`` takes on it (target <= 30 s);
  - the resident memory the loaded model adds (target <= 600 MB);
  - CTC prefix beam search at beam 10 over the digits test posteriors, batch 32,
    with the LM fused (``LmFusion``) against without it (target <= 3x).

    bash recipes/digits/run.sh                  # a trained digits model (or pass --exp)
    python benchmarks/arpa_lm.py [--ngrams 2000000] [--exp recipes/digits/exp/bilstm/avg_10.pt]

Without a model it says so and uses random peaky posteriors over the digits
model's characters instead.
"""

from __future__ import annotations

import argparse
import gzip
import math
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "recipes/digits"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_synthetic_arpa(path: Path, num_ngrams: int, seed: int = 0) -> dict[int, int]:
    """A trigram ARPA (gzip) with ~num_ngrams entries: 5% 1-grams, 35% 2-grams, 60% 3-grams.

    Every 2-gram's and 3-gram's context is itself an entry (as lmplz writes);
    probabilities are plausible log10 values, not normalised (load and search
    speed do not depend on it)."""
    rng = random.Random(seed)
    num_words = max(num_ngrams // 20, len(DIGIT_WORDS) + 3)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["<s>", "</s>", "<unk>"] + DIGIT_WORDS
    seen = set(vocab)
    while len(vocab) < num_words:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]  # Zipf: frequent words recur in contexts
    num_bigrams = int(num_ngrams * 0.35)
    num_trigrams = num_ngrams - len(vocab) - num_bigrams
    bigrams: set[tuple[str, str]] = set()
    while len(bigrams) < num_bigrams:
        firsts = rng.choices(vocab, weights, k=4096)
        seconds = rng.choices(vocab, weights, k=4096)
        for a, b in zip(firsts, seconds):
            if b != "<s>" and a != "</s>" and len(bigrams) < num_bigrams:
                bigrams.add((a, b))
    bigram_list = sorted(bigrams)
    trigrams: set[tuple[str, str, str]] = set()
    while len(trigrams) < num_trigrams:
        contexts = rng.choices(bigram_list, k=4096)
        thirds = rng.choices(vocab, weights, k=4096)
        for (a, b), c in zip(contexts, thirds):
            if c != "<s>" and b != "</s>" and len(trigrams) < num_trigrams:
                trigrams.add((a, b, c))
    counts = {1: len(vocab), 2: len(bigram_list), 3: len(trigrams)}
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
        out.write("\\data\\\n" + "".join(f"ngram {n}={c}\n" for n, c in counts.items()) + "\n\\1-grams:\n")
        for rank, word in enumerate(vocab):
            logp = -99.0 if word == "<s>" else math.log10(weights[rank] / 12.0)
            out.write(f"{logp:.6f}\t{word}\t{-rng.random():.6f}\n")
        out.write("\n\\2-grams:\n")
        for a, b in bigram_list:
            out.write(f"{-rng.random() * 3:.6f}\t{a} {b}\t{-rng.random():.6f}\n")
        out.write("\n\\3-grams:\n")
        for a, b, c in sorted(trigrams):
            out.write(f"{-rng.random() * 3:.6f}\t{a} {b} {c}\n")
        out.write("\n\\end\\\n")
    return counts


def digits_posteriors(exp: Path | None, num_utts: int):
    """(log_probs (B, T, V), lengths (B,), tokenizer): the digits test set through a trained model,
    or random peaky posteriors over its characters when there is no model."""
    from asrkit.tokenizer import CharTokenizer

    if exp is not None and exp.exists():
        from asrkit.data.datadir import DataDir
        from asrkit.recognize.recognizer import Recognizer

        recognizer = Recognizer(exp)
        data = DataDir.load(DIGITS / "data/test")
        feats = recognizer.features_of(data)
        ids = data.utt_ids()[:num_utts]
        with torch.no_grad():
            batch = [torch.from_numpy(np.asarray(recognizer.cmvn(feats[u]), dtype=np.float32)) for u in ids]
            lens = torch.tensor([len(f) for f in batch])
            padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
            log_probs, out_lens = recognizer.model(padded, lens)
        return log_probs, out_lens, recognizer.tokenizer, f"{exp} on {len(ids)} digits test utterances"
    tokenizer = CharTokenizer.build(DIGIT_WORDS)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(num_utts, 120, len(tokenizer), generator=gen)
    winners = torch.randint(1, len(tokenizer), (num_utts, 120), generator=gen)
    winners[torch.rand(num_utts, 120, generator=gen) < 0.6] = 0
    logits.scatter_add_(2, winners[..., None], torch.full((num_utts, 120, 1), 6.0))
    lengths = torch.full((num_utts,), 120)
    return logits.log_softmax(-1), lengths, tokenizer, f"random peaky posteriors (no model at {exp})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngrams", type=int, default=2_000_000)
    parser.add_argument("--exp", type=Path, default=DIGITS / "exp/bilstm/avg_10.pt")
    parser.add_argument("--arpa", type=Path, help="an existing ARPA(.gz) to use instead of the synthetic one")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from asrkit.search.lm import ArpaLM, LmFusion
    from asrkit.search.prefix import prefix_beam_search

    log_probs, lengths, tokenizer, source = digits_posteriors(args.exp, args.batch)
    boundary = tokenizer.boundary
    with tempfile.TemporaryDirectory() as tmp:
        path = args.arpa
        if path is None:
            path = Path(tmp) / "synthetic.3gram.arpa.gz"
            start = time.perf_counter()
            counts = write_synthetic_arpa(path, args.ngrams)
            print(f"wrote {path.name}: {sum(counts.values()):,} n-grams {counts}, {path.stat().st_size / 1e6:.1f} MB "
                  f"gzipped, {time.perf_counter() - start:.1f} s")
        before = rss_mb()
        start = time.perf_counter()
        lm = ArpaLM.load(path)
        load_s = time.perf_counter() - start
        added = rss_mb() - before
    fusion_start = time.perf_counter()
    fusion = LmFusion(lm, tokenizer, weight=0.5, bonus=1.0)
    fusion_s = time.perf_counter() - fusion_start

    def search(scorer) -> float:
        best = math.inf
        for _ in range(args.repeats):
            if scorer is not None:  # a fresh memo each time: the cost of scoring, not of a warm cache
                scorer = LmFusion(lm, tokenizer, weight=0.5, bonus=1.0)
            start = time.perf_counter()
            prefix_beam_search(log_probs, lengths, beam=args.beam, space_id=boundary.separator,
                               word_starts=boundary.starts, lm=scorer)
            best = min(best, time.perf_counter() - start)
        return best

    plain_s = search(None)
    fused_s = search(fusion)
    print(f"machine: {platform.node()} {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"LM: {lm.order}-gram, {len(lm.words):,} words, {lm.num_ngrams:,} n-grams; posteriors: {source}")
    print("| figure | measured | target |\n|---|---|---|")
    print(f"| load {path.name} | {load_s:.1f} s | <= 30 s |")
    print(f"| memory added by the loaded LM (RSS) | {added:.0f} MB | <= 600 MB |")
    print(f"| LmFusion set-up ({fusion.spellable:,} spellable words) | {fusion_s:.2f} s | |")
    print(f"| beam {args.beam}, batch {len(lengths)}, no LM | {plain_s * 1000:.0f} ms | |")
    print(f"| beam {args.beam}, batch {len(lengths)}, with the LM | {fused_s * 1000:.0f} ms "
          f"({fused_s / plain_s:.2f}x) | <= 3x |")


if __name__ == "__main__":
    main()
