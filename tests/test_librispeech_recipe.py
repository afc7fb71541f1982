"""recipes/librispeech/run.sh, every stage, on a mini corpus this test synthesises in the official
layout (flac, trans.txt, SPEAKERS.TXT): prepare, features, sentencepiece, the gzipped LM built
from the training text, training with torchrun --nproc 2 (gloo), averaging, decoding and scoring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
# subset -> (eSpeak voice of each reader, utterances per reader)
MINI = {"train-clean-100": (["en+m1", "en+f2", "en-us+m2", "en+m3"], 10),
        "dev-clean": (["en-us+f3"], 3), "dev-other": (["en+m6"], 3),
        "test-clean": (["en-gb-x-rp+f3"], 3), "test-other": (["en+f4"], 3)}
WORDS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]


def make_mini_librispeech(root: Path) -> Path:
    """LibriSpeech/<subset>/<reader>/<chapter>/ with 16 kHz flac and trans.txt, and SPEAKERS.TXT."""
    import random

    import librosa

    from asrkit.corpora.digits import Espeak

    engine, rng = Espeak(), random.Random(0)
    base = root / "LibriSpeech"
    speakers = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    reader = 100
    for subset, (voices, count) in MINI.items():
        for voice in voices:
            reader += 1
            chapter = 2000 + reader
            folder = base / subset / str(reader) / str(chapter)
            folder.mkdir(parents=True)
            lines = []
            for n in range(count):
                words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
                samples = engine.say(" ".join(words).lower(), voice, rate=160, pitch=50, seed=reader * 100 + n)
                samples = librosa.resample(samples, orig_sr=engine.sample_rate, target_sr=16000)
                utt = f"{reader}-{chapter}-{n:04d}"
                soundfile.write(folder / f"{utt}.flac", np.clip(samples, -1, 1), 16000)
                lines.append(f"{utt} {' '.join(words)}\n")
            (folder / f"{reader}-{chapter}.trans.txt").write_text("".join(lines))
            speakers.append(f"{reader} | {'F' if '+f' in voice else 'M'} | {subset} | 0.10 | Reader {reader}")
    (base / "SPEAKERS.TXT").write_text("\n".join(speakers) + "\n")
    return root


def test_every_stage_runs_on_a_mini_corpus_with_two_processes(tmp_path):
    pytest.importorskip("espeakng_loader")
    pytest.importorskip("sentencepiece")
    corpus = make_mini_librispeech(tmp_path / "corpus")
    env = {**os.environ, "data": str(tmp_path / "data"), "exp": str(tmp_path / "exp"), "avg": "2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "recipes/librispeech/run.sh"), "--corpus-dir", str(corpus),
                           "--conf", "conf/tiny.yaml", "--nproc", "2", "--nj", "2", "--speed-perturb"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data, exp = tmp_path / "data", tmp_path / "exp"
    assert (data / "train-clean-100" / "spk2gender").read_text().splitlines()[0] == "101-2101 m"
    assert len((data / "train" / "text").read_text().splitlines()) == 3 * 40  # speed-perturbed x 0.9, 1.0, 1.1
    assert (data / "lang_bpe" / "tokenizer.model").is_file() and (data / "lang" / "lm_3gram.arpa.gz").is_file()
    log = (exp / "train.log").read_text()
    assert "distributed: 2 processes (gloo)" in log
    assert done.stdout.count("trained 2 epochs") == 1  # one summary for the job, not one per process
    rows = [line for line in (exp / "RESULTS.md").read_text().splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 12, rows  # 4 sets x (greedy, beam + LM, rescore + LM)
    assert {r.split("|")[2].strip() for r in rows} == {"greedy", "beam_lm", "rescore_lm"}
