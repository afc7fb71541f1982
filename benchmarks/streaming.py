"""Streaming: a unidirectional model's test files fed chunk by chunk, as a live source would come.

Per chunk size: WER of the streamed final results beside offline ``transcribe`` of the same model
(which the streamed text must equal: the count of files that differ is printed), the algorithmic
latency (chunk + lookahead), the real-time factor (compute time / audio time, on --threads torch
threads), and the finish latency: the compute between the end of the audio and the final result
(the last chunk's step and the end of the utterance, rescoring included), mean and worst.

    python benchmarks/streaming.py MODEL DATA_DIR [--chunk-ms 160,320,640] [--mode greedy]
                                   [--beam 10] [--lexicon FILE] [--threads 1] [--max-files N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from asrkit.data.audio import read_audio, resample
from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer
from asrkit.recognize.stream import StreamingSession
from asrkit.scoring import score
from asrkit.search.options import SearchOptions


def stream_file(recognizer, samples: np.ndarray, search, chunk_ms: float):
    """(final text, compute seconds, finish latency seconds) of one file streamed in chunks."""
    session = StreamingSession(recognizer, search, chunk_ms)
    piece = int(recognizer.sample_rate * chunk_ms / 1000)
    compute = last = 0.0
    for start in range(0, len(samples), piece):
        began = time.perf_counter()
        session.accept(samples[start:start + piece])
        last = time.perf_counter() - began
        compute += last
    began = time.perf_counter()
    finals = session.finish()
    done = time.perf_counter() - began
    return " ".join(r.text for r in finals).strip(), compute + done, last + done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--chunk-ms", default="160,320,640")
    parser.add_argument("--mode", default="greedy", choices=["greedy", "beam", "rescore"])
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--lexicon")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-files", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = Recognizer(args.model)
    search = SearchOptions(mode=args.mode, beam=args.beam, lexicon=args.lexicon)
    data = DataDir.load(args.data_dir)
    utts = data.utterances()[:args.max_files or None]
    audio = {}
    for utt in utts:
        samples, rate = read_audio(utt.audio_path, utt.start, utt.end)
        audio[utt.utt_id] = resample(samples, rate, recognizer.sample_rate)
    seconds = sum(len(a) for a in audio.values()) / recognizer.sample_rate
    refs = {u.utt_id: data.text[u.utt_id] for u in utts}
    started = time.perf_counter()
    offline = {u.utt_id: r.text for u, r in zip(utts, recognizer.transcribe_files([u.audio_path for u in utts],
                                                                                   search))}
    offline_rtf = (time.perf_counter() - started) / seconds
    lookahead_ms = recognizer.config.model.lookahead * recognizer.seconds_per_frame * 1000
    print(f"model {args.model} ({'lookahead ' + format(lookahead_ms, 'g') + ' ms' if lookahead_ms else 'no lookahead'})"
          f", {len(utts)} files of {args.data_dir} ({seconds:.0f} s), {args.mode}"
          f"{' + lexicon' if args.lexicon else ''}; {platform.machine()}, {args.threads} torch thread(s)")
    print(f"offline transcribe: WER {100 * score(refs, offline).wer:.2f}%, RTF {offline_rtf:.3f} (all files at once)")
    print(f"{'chunk':>8s} {'latency':>9s} {'WER':>7s} {'differ':>7s} {'RTF':>7s} {'finish mean':>12s} {'worst':>8s}")
    for chunk_ms in [float(c) for c in args.chunk_ms.split(",")]:
        texts, compute, finish = {}, 0.0, []
        for utt_id, samples in audio.items():
            text, spent, last = stream_file(recognizer, samples, search, chunk_ms)
            texts[utt_id], compute = text, compute + spent
            finish.append(last)
        differ = sum(texts[u] != offline[u] for u in texts)
        print(f"{chunk_ms:6.0f}ms {chunk_ms + lookahead_ms:7.0f}ms {100 * score(refs, texts).wer:6.2f}% "
              f"{differ:7d} {compute / seconds:7.3f} {1000 * np.mean(finish):10.1f}ms {1000 * max(finish):6.1f}ms",
              flush=True)


if __name__ == "__main__":
    main()
