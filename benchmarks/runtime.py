"""Real-time factor and peak memory of transcription: torch eager against the ONNX Runtime bundle,
fp32 and int8, one file per call and all files in one call, on 1 and 2 threads.

    python benchmarks/runtime.py MODEL DATA_DIR [--work DIR] [--max-files N] [--threads 1,2]

MODEL is a checkpoint (an exp dir or a .pt file); the fp32 and int8 bundles are exported
into --work (kept between runs). Each row runs in a fresh process, so its peak RSS is its
own: the model loaded, the files transcribed, nothing of the other rows. The real-time
factor is the wall time of transcription (model loaded, files read and decoded, greedy
search) over the seconds of audio. Also printed: where the time goes (features, the acoustic
model, the search, the rest), each bundle's WER against the data dir's
text, beside torch's, and the speed-up of each row over torch eager at the same threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(model: str, files: list[str], threads: int, per_file: bool) -> dict:
    """One row, in this process: load, warm up on the first file, then time the transcriptions. A
    bundle's row never imports torch (its peak RSS is the runtime's alone)."""
    from asrkit.recognize.bundle import OnnxBackend, is_bundle

    if not is_bundle(model):
        import torch

        torch.set_num_threads(threads)
    import asrkit.recognize.recognizer as module
    from asrkit.data.audio import audio_duration
    from asrkit.recognize.recognizer import Recognizer

    stages = {"features": 0.0, "acoustic": 0.0, "search": 0.0}

    def timed(stage, function):  # where the time goes: each stage's wall time, summed
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[stage] += time.perf_counter() - started
        return wrapper

    module.compute_features = timed("features", module.compute_features)
    module.search_batch = timed("search", module.search_batch)
    recognizer = Recognizer(model)
    if recognizer.is_bundle:  # the bundle's session, with the same thread count as torch
        recognizer.backend = OnnxBackend.open(model, threads=threads)
    recognizer.acoustic = timed("acoustic", recognizer.acoustic)
    recognizer.transcribe_files(files[:1])  # warm-up: first-call allocations and kernel choices
    stages.update(dict.fromkeys(stages, 0.0))
    started = time.perf_counter()
    if per_file:
        texts = {f: recognizer.transcribe_files([f])[0].text for f in files}
    else:
        texts = {r.key: r.text for r in recognizer.transcripts(files)}
    seconds = time.perf_counter() - started
    audio = sum(audio_duration(f) for f in files)
    return {"rtf": seconds / audio, "seconds": seconds, "audio": audio, "texts": texts, "stages": stages,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("data_dir", nargs="?", type=Path)
    parser.add_argument("--work", type=Path, default=Path("runtime_work"), help="where the bundles go")
    parser.add_argument("--max-files", type=int, default=0, help="the first N files of the data dir (0: all)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one row as JSON
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["model"], spec["files"], spec["threads"], spec["per_file"])))
        return
    if args.model is None or args.data_dir is None:
        parser.error("MODEL and DATA_DIR are needed")
    from asrkit.data.datadir import DataDir
    from asrkit.recognize.export import export_bundle
    from asrkit.scoring import score

    data = DataDir.load(args.data_dir)
    utts = data.utterances()[:args.max_files or None]
    files = [u.audio_path for u in utts]
    refs = {u.audio_path: data.text[u.utt_id] for u in utts}
    args.work.mkdir(parents=True, exist_ok=True)
    models = {"torch eager": args.model}
    for name, quantize in (("ORT fp32", None), ("ORT int8", "int8")):
        bundle = args.work / f"bundle_{quantize or 'fp32'}"
        if not bundle.is_dir():
            export_bundle(args.model, bundle, quantize=quantize)
        models[name] = str(bundle)
    print(f"model {args.model}, {len(files)} files of {args.data_dir}; {platform.machine()}, "
          f"{platform.python_version()}, greedy search")
    print(f"{'backend':12s} {'threads':>7s} {'calls':>9s} {'RTF':>8s} {'x torch':>8s} {'peak RSS':>9s} {'WER':>7s}"
          "  time in features / acoustic model / search / the rest (reading audio, joining)")
    for threads in [int(t) for t in args.threads.split(",")]:
        for per_file in (True, False):
            base = None
            for name, model in models.items():
                spec = json.dumps({"model": model, "files": files, "threads": threads, "per_file": per_file})
                done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{name}: {done.stderr.strip().splitlines()[-1]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                base = base or row["rtf"]
                wer = score(refs, row["texts"]).wer
                shares = [row["stages"][s] / row["seconds"] for s in ("features", "acoustic", "search")]
                shares.append(1 - sum(shares))
                print(f"{name:12s} {threads:7d} {'one each' if per_file else 'all once':>9s} {row['rtf']:8.4f} "
                      f"{base / row['rtf']:7.2f}x {row['peak_rss_mb']:7.0f}MB {100 * wer:6.2f}%  "
                      + " / ".join(f"{100 * s:.0f}%" for s in shares), flush=True)


if __name__ == "__main__":
    main()
