"""Kaldi's yesno corpus: 60 recordings of 8 words, each YES or NO (file name: 1 = YES, 0 = NO).

Split: in sorted file order, even positions train and odd positions test
(30/30, as lhotse/icefall). Kaldi's egs/yesno takes the first and second
halves instead, but sorting by label puts every file that starts with NO in
train and every file that starts with YES in test, a confound a BiLSTM
learns. Five training files (every sixth) are held out as dev, so that model
selection never sees the test half.
"""

from __future__ import annotations

from pathlib import Path

from asrkit.corpora.download import download_corpus
from asrkit.data.datadir import DataDir, save_splits
from asrkit.errors import CorpusError

URL = "https://www.openslr.org/resources/1/waves_yesno.tar.gz"
FOLDER = "waves_yesno"
PATTERN = "*.wav"
DIGEST = "0032ed8b3aaeddf0c7451e136e7c5dae6a58415b1bd3fa7bbe2b49873564cb6a"
WORDS = {"0": "NO", "1": "YES"}


def download(download_dir: Path) -> Path:
    return download_corpus(URL, download_dir, FOLDER, PATTERN, DIGEST)


def find_root(corpus_dir: Path) -> Path:
    """Accept the folder holding the wavs or its parent."""
    for candidate in (corpus_dir, corpus_dir / FOLDER):
        if candidate.is_dir() and any(candidate.glob(PATTERN)):
            return candidate
    raise CorpusError(f"{corpus_dir}: no yesno wav files (expected {FOLDER}/0_0_1_0_1_0_1_1.wav ...)")


def _data_dir(files: list[Path]) -> DataDir:
    data = DataDir()
    for path in files:
        labels = path.stem.split("_")
        if len(labels) != 8 or any(x not in WORDS for x in labels):
            raise CorpusError(f"{path}: name is not 8 digits 0/1 separated by '_'")
        utt = path.stem
        data.wav_scp[utt] = str(path.resolve())
        data.text[utt] = " ".join(WORDS[x] for x in labels)
        data.utt2spk[utt] = "global"  # one speaker, as in Kaldi's recipe
    return data


def prepare(corpus_dir: Path, out_dir: Path) -> dict[str, int]:
    root = find_root(corpus_dir)
    files = sorted(root.glob(PATTERN))
    if len(files) != 60:
        raise CorpusError(f"{root}: expected 60 wav files, found {len(files)}")
    train_all, test = files[0::2], files[1::2]
    dev = train_all[::6]
    train = [f for f in train_all if f not in dev]
    return save_splits({"train": _data_dir(train), "dev": _data_dir(dev), "test": _data_dir(test)}, out_dir)
