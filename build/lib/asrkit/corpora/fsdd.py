"""Free Spoken Digit Dataset: ``recordings/{digit}_{speaker}_{index}.wav``, 8 kHz.

Official split: takes 0-4 of every digit and speaker are test (300), 5-49
train. Dev is carved from train by speaker-stratified sampling: for every
(speaker, digit) pair, 4 of its 45 training takes, drawn with a fixed seed,
are held out (6 × 10 × 4 = 240 dev, 2460 train). Utterance ids are
``{speaker}_{digit}_{index:02d}`` so that utterances sort by speaker.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from asrkit.corpora.download import download_corpus
from asrkit.data.datadir import DataDir, save_splits
from asrkit.errors import CorpusError

URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FOLDER = "free-spoken-digit-dataset-1.0.10"
PATTERN = "recordings/*.wav"
DIGEST = "baa3a6dcf4da47fb3075bec71a8cefb512022cb9ae030a79a31b315f37bc67af"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)$")
DEV_TAKES_PER_DIGIT = 4


def download(download_dir: Path) -> Path:
    return download_corpus(URL, download_dir, FOLDER, PATTERN, DIGEST)


def find_root(corpus_dir: Path) -> Path:
    if (corpus_dir / "recordings").is_dir():
        return corpus_dir
    if corpus_dir.name == "recordings" and corpus_dir.is_dir():
        return corpus_dir.parent
    raise CorpusError(f"{corpus_dir}: no recordings/ folder (expected recordings/7_jackson_32.wav ...)")


def prepare(corpus_dir: Path, out_dir: Path, seed: int = 0) -> dict[str, int]:
    root = find_root(corpus_dir)
    parts = {"train": DataDir(), "dev": DataDir(), "test": DataDir()}
    pool: dict[tuple[str, str], list[str]] = {}
    entries = {}
    for path in sorted((root / "recordings").glob("*.wav")):
        match = NAME.match(path.stem)
        if not match:
            raise CorpusError(f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav")
        digit, speaker, index = match.group(1), match.group(2), int(match.group(3))
        utt = f"{speaker}_{digit}_{index:02d}"
        entries[utt] = (str(path.resolve()), WORDS[int(digit)], speaker)
        if index <= 4:
            split = "test"
        else:
            pool.setdefault((speaker, digit), []).append(utt)
            continue
        _add(parts[split], utt, *entries[utt])
    if not entries:
        raise CorpusError(f"{root / 'recordings'}: no wav files")
    rng = random.Random(seed)
    for key in sorted(pool):
        utts = sorted(pool[key])
        dev = set(rng.sample(utts, min(DEV_TAKES_PER_DIGIT, len(utts) - 1)))
        for utt in utts:
            _add(parts["dev" if utt in dev else "train"], utt, *entries[utt])
    return save_splits(parts, out_dir)


def _add(data: DataDir, utt: str, path: str, text: str, speaker: str) -> None:
    data.wav_scp[utt] = path
    data.text[utt] = text
    data.utt2spk[utt] = speaker
