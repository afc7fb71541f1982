"""CMU AN4 (alphanumeric census database), official ``an4_sphere`` layout.

``etc/an4_{train,test}.fileids`` list ``an4_clstk/<spk>/<id>`` (train, 948
utterances, 74 speakers) and ``an4test_clstk/<spk>/<id>`` (test, 130, 10
speakers); ``etc/an4_{train,test}.transcription`` hold ``<s> WORDS </s> (id)``
(train) and ``WORDS (id)`` (test); audio is ``wav/<fileid>.sph``, 16 kHz
16-bit NIST SPHERE (read directly by soundfile); a copy whose ``.sph`` files were
converted to ``.flac`` or ``.wav`` of the same name is read as well.

Utterance ids are ``<spk>-<id>`` (e.g. ``fash-an251-fash-b``) so that they sort
by speaker. Dev set, as ESPnet's ``train_dev``/``train_nodev``: the first 100
training utterances in sorted id order (the first speakers' recordings), so
``train`` keeps 848 utterances; ``test`` is the official 130.

The corpus's pronunciation dictionary ``etc/an4.dic`` (all 101 words of the
task, test words included, as CMU Sphinx decodes AN4) is copied to
``<out>/lang/lexicon.txt`` for closed-vocabulary decoding (``--lexicon``).
"""

from __future__ import annotations

import re
from pathlib import Path

from asrkit.corpora.download import download_corpus
from asrkit.data.datadir import DataDir, save_splits
from asrkit.errors import CorpusError

URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
FOLDER = "an4"
PATTERN = "wav/*/*/*.sph"
# tree_digest of the 1078 .sph files of this project's copy (../shared/corpora/an4); the
# live archive could not be fetched from the build machine to confirm it.
DIGEST = "60f64460884517f23f1b5daf5e91c5a9fad8abc284ef6019a5d4f749ece1ba33"
DEV_SIZE = 100
LINE = re.compile(r"^(?P<words>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


def download(download_dir: Path) -> Path:
    return download_corpus(URL, download_dir, FOLDER, PATTERN, DIGEST)


def find_root(corpus_dir: Path) -> Path:
    for root in (corpus_dir, corpus_dir / "an4"):
        if (root / "etc" / "an4_train.transcription").is_file() and (root / "wav").is_dir():
            return root
    raise CorpusError(f"{corpus_dir}: not the an4_sphere layout (expected etc/an4_train.transcription and wav/)")


def read_split(root: Path, split: str) -> DataDir:
    """One official split (``train`` or ``test``) as a data dir."""
    fileids_path = root / "etc" / f"an4_{split}.fileids"
    trans_path = root / "etc" / f"an4_{split}.transcription"
    for path in (fileids_path, trans_path):
        if not path.is_file():
            raise CorpusError(f"{path} does not exist (an4_sphere layout expected)")
    fileids = [line.strip() for line in fileids_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [line for line in trans_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(fileids) != len(lines):
        raise CorpusError(f"{fileids_path} lists {len(fileids)} files but {trans_path} has {len(lines)} lines")
    data = DataDir()
    for line_no, (fileid, line) in enumerate(zip(fileids, lines), start=1):
        match = LINE.match(line.strip())
        if not match:
            raise CorpusError(f"{trans_path} line {line_no}: expected 'WORDS (utterance-id)', got {line[:60]!r}")
        parts = fileid.split("/")
        if len(parts) != 3 or parts[2] != match.group("id"):
            raise CorpusError(f"{trans_path} line {line_no}: id {match.group('id')!r} does not match "
                              f"{fileids_path} line {line_no} ({fileid!r})")
        words = [w for w in match.group("words").split() if w not in ("<s>", "</s>")]
        if not words:
            raise CorpusError(f"{trans_path} line {line_no}: empty transcript for {match.group('id')}")
        speaker = parts[1]
        audio = root / "wav" / f"{fileid}.sph"
        if not audio.is_file():  # a copy converted from SPHERE (sph2pipe, sox) keeps the layout
            audio = next((c for c in (audio.with_suffix(".flac"), audio.with_suffix(".wav")) if c.is_file()), audio)
        if not audio.is_file():
            raise CorpusError(f"{audio} does not exist ({fileids_path} line {line_no})")
        utt = f"{speaker}-{parts[2]}"
        data.wav_scp[utt] = str(audio.resolve())
        data.text[utt] = " ".join(words)
        data.utt2spk[utt] = speaker
    return data


def prepare(corpus_dir: Path, out_dir: Path) -> dict[str, int]:
    root = find_root(corpus_dir)
    train, test = read_split(root, "train"), read_split(root, "test")
    ids = train.utt_ids()
    if len(ids) <= DEV_SIZE:
        raise CorpusError(f"{root}: {len(ids)} training utterances; AN4 has 948 (the first {DEV_SIZE} become dev)")
    dev_ids, train_ids = ids[:DEV_SIZE], ids[DEV_SIZE:]
    parts = {"train": train.subset(train_ids), "dev": train.subset(dev_ids), "test": test}
    counts = save_splits(parts, out_dir)
    dictionary = root / "etc" / "an4.dic"
    if dictionary.is_file():  # the corpus's pronunciation dictionary: its words are the task's vocabulary
        (Path(out_dir) / "lang").mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "lang" / "lexicon.txt").write_bytes(dictionary.read_bytes())
    return counts
