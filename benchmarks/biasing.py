"""Hotwords measured on both sides: WER, U-WER (words not in the list) and B-WER (words in it).

The protocol of Le et al. 2021 (contextual spelling correction; deep biasing on LibriSpeech):
  - the rare-word set: words of the training text seen at most ``--max-count`` times (and test
    words it never saw);
  - each test utterance's list: its own rare words plus D distractors drawn from the rare set
    (D = 0, 100, 500; fewer when the rare set is smaller: the number used is printed);
  - decoding without biasing and with it, for each hotword score of ``--scores`` (the sweep that
    chooses the default), and the time against the search without biasing: the search alone
    ("search x", each the faster of two runs, the unbiased search timed beside it) and the whole
    decode ("decode x": the encoder's time, measured once, added to both).
B-WER counts the errors on the reference's biased words and the insertions of a listed word;
U-WER the rest. One decode of the model's encoder serves every row: the rows differ in the search.

    python benchmarks/biasing.py MODEL TRAIN_TEXT TEST_DIR [--max-count 10] [--distractors 0 100 500]
        [--scores 0.5 1 2 3] [--beam 20] [--lexicon FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np

from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer
from asrkit.scoring import align, read_text_file
from asrkit.search.context import ContextGraph, Phrase, spell
from asrkit.search.ctc import search_batch
from asrkit.search.options import SearchOptions


def rare_words(train_text: Path, refs: dict[str, str], max_count: int) -> list[str]:
    counts = Counter(w for text in read_text_file(train_text).values() for w in text.split())
    test_words = {w for text in refs.values() for w in text.split()}
    return sorted({w for w, n in counts.items() if n <= max_count} | {w for w in test_words if counts[w] == 0})


def biasing_lists(refs: dict[str, str], rare: list[str], distractors: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    lists = {}
    for utt, text in refs.items():
        own = sorted({w for w in text.split() if w in set(rare)})
        others = [w for w in rare if w not in own]
        lists[utt] = own + rng.sample(others, min(distractors, len(others)))
    return lists


def biased_error_rates(refs: dict[str, str], hyps: dict[str, str], lists: dict[str, list[str]]):
    """(WER, U-WER, B-WER, biased reference words) in percent."""
    counts = {"U": [0, 0], "B": [0, 0]}  # errors, reference words
    for utt, ref in refs.items():
        biased = set(lists.get(utt, []))
        for op, r, h in align(ref.split(), hyps.get(utt, "").split()).ops:
            side = "B" if (r if op != "I" else h) in biased else "U"
            if op != "I":
                counts[side][1] += 1
            counts[side][0] += op != "C"
    total = counts["U"][0] + counts["B"][0], counts["U"][1] + counts["B"][1]
    rate = lambda e, n: 100.0 * e / max(n, 1)  # noqa: E731
    return rate(*total), rate(*counts["U"]), rate(*counts["B"]), counts["B"][1]


def graphs_for(recognizer: Recognizer, lists: dict[str, list[str]], utts: list[str], score: float):
    tokenizer, boundary = recognizer.tokenizer, recognizer.tokenizer.boundary
    spelt: dict[str, tuple[int, ...]] = {}
    graphs = []
    for utt in utts:
        phrases = []
        for word in lists[utt]:
            if word not in spelt:
                spelt[word] = spell(word, tokenizer, f"word {word!r}")
            phrases.append(Phrase(spelt[word], score))
        graphs.append(ContextGraph(phrases, len(tokenizer), boundary.separator, boundary.starts) if phrases else None)
    return graphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("train_text", type=Path)
    parser.add_argument("test_dir", type=Path)
    parser.add_argument("--max-count", type=int, default=10)
    parser.add_argument("--distractors", type=int, nargs="+", default=[0, 100, 500])
    parser.add_argument("--scores", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--lexicon")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    recognizer = Recognizer(args.model, threads=args.threads)
    data = DataDir.load(args.test_dir)
    refs = {u: data.text[u] for u in data.utt_ids()}
    utts = list(refs)
    feats = recognizer.features_of(data)
    started = time.perf_counter()
    log_probs = [recognizer.log_probs(feats[u]) for u in utts]  # the encoder once per utterance
    encoder_s = time.perf_counter() - started
    search = SearchOptions("beam", args.beam, lexicon=args.lexicon)
    lexicon = recognizer.lexicon(search)
    rare = rare_words(args.train_text, refs, args.max_count)
    print(f"model {args.model}, {len(utts)} utterances of {args.test_dir}; rare words (train count <= "
          f"{args.max_count}): {len(rare)}; beam {args.beam}{' + lexicon' if lexicon else ''}; "
          f"{platform.machine()}, {args.threads} thread(s)")

    def run(graphs) -> tuple[dict[str, str], float]:
        started, hyps = time.perf_counter(), {}
        for i, utt in enumerate(utts):  # one utterance at a time, as a user's transcribe runs
            lp = log_probs[i][None]
            found = search_batch(lp, np.array([lp.shape[1]]), search, blank_id=recognizer.tokenizer.blank_id,
                                 boundary=recognizer.tokenizer.boundary, lexicon=lexicon,
                                 context=None if graphs is None else [graphs[i]])
            hyps[utt] = recognizer.tokenizer.decode(found[0][0].tokens)
        return hyps, time.perf_counter() - started

    def timed(graphs) -> tuple[dict[str, str], float]:  # the faster of two runs: less noise from the machine
        (hyps, first), (_, second) = run(graphs), run(graphs)
        return hyps, min(first, second)

    plain, plain_s = timed(None)
    print(f"encoder {encoder_s:.2f} s, search without biasing {plain_s:.2f} s (one utterance at a time)")
    print(f"{'D':>4s} {'used':>5s} {'score':>6s} {'WER':>7s} {'U-WER':>7s} {'B-WER':>7s} {'B words':>8s} "
          f"{'search x':>8s} {'decode x':>8s}")
    for distractors in args.distractors:
        lists = biasing_lists(refs, rare, distractors, args.seed)
        used = int(np.mean([len(lists[u]) - len({w for w in refs[u].split() if w in set(rare)}) for u in utts]))
        wer, uwer, bwer, bwords = biased_error_rates(refs, plain, lists)
        print(f"{distractors:4d} {used:5d} {'none':>6s} {wer:6.2f}% {uwer:6.2f}% {bwer:6.2f}% {bwords:8d} "
              f"{1.0:7.2f}x {1.0:7.2f}x")
        for score in args.scores:
            graphs = graphs_for(recognizer, lists, utts, score)
            hyps, seconds = timed(graphs)
            _, plain_s = timed(None)  # beside it, under the same conditions
            wer, uwer, bwer, bwords = biased_error_rates(refs, hyps, lists)
            print(f"{distractors:4d} {used:5d} {score:6.2f} {wer:6.2f}% {uwer:6.2f}% {bwer:6.2f}% {bwords:8d} "
                  f"{seconds / plain_s:7.2f}x {(encoder_s + seconds) / (encoder_s + plain_s):7.2f}x")


if __name__ == "__main__":
    main()
