"""Corpus preparation from the official layouts (../shared/corpora when present), downloads, synthesis."""

import io
import tarfile

import pytest

from asrkit.corpora import digits, fsdd, yesno
from asrkit.corpora.download import safe_extract, tree_digest
from asrkit.datadir import DataDir
from asrkit.errors import CorpusError
from conftest import SHARED_CORPORA

needs_shared = pytest.mark.skipif(not SHARED_CORPORA.is_dir(), reason="../shared/corpora not present")


@needs_shared
def test_yesno_prepare(tmp_path):
    counts = yesno.prepare(SHARED_CORPORA / "yesno", tmp_path)
    assert counts == {"train": 25, "dev": 5, "test": 30}
    test = DataDir.load(tmp_path / "test")
    assert test.text["0_0_0_1_0_0_0_1"] == "NO NO NO YES NO NO NO YES"
    train = DataDir.load(tmp_path / "train")
    assert not set(train.text) & set(test.text)


@needs_shared
def test_fsdd_prepare_official_split(tmp_path):
    counts = fsdd.prepare(SHARED_CORPORA / "fsdd", tmp_path)
    assert counts == {"train": 2460, "dev": 240, "test": 300}
    test = DataDir.load(tmp_path / "test")
    assert all(int(u.rsplit("_", 1)[1]) <= 4 for u in test.text)
    assert test.text["jackson_7_03"] == "seven" and test.utt2spk["jackson_7_03"] == "jackson"
    dev = DataDir.load(tmp_path / "dev")
    assert all(int(u.rsplit("_", 1)[1]) >= 5 for u in dev.text)
    pairs = {(spk, u.split("_")[1]) for u, spk in dev.utt2spk.items()}
    assert len(pairs) == 60  # every speaker x digit contributes to dev


@needs_shared
def test_checksums_match_the_official_copies():
    assert tree_digest(SHARED_CORPORA / "yesno" / "waves_yesno", yesno.PATTERN) == yesno.DIGEST
    assert tree_digest(SHARED_CORPORA / "fsdd", fsdd.PATTERN) == fsdd.DIGEST


def test_fsdd_bad_layout(tmp_path):
    with pytest.raises(CorpusError, match="no recordings/ folder"):
        fsdd.prepare(tmp_path, tmp_path / "out")
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "seven.wav").write_bytes(b"")
    with pytest.raises(CorpusError, match="seven.wav: name is not"):
        fsdd.prepare(tmp_path, tmp_path / "out")


def test_safe_extract_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CorpusError, match="unsafe archive member"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_digits_synthesis(tmp_path):
    pytest.importorskip("espeakng_loader")
    counts = digits.prepare(None, tmp_path, utts_per_voice=2)
    assert counts == {"train": 2 * len(digits.TRAIN_VOICES), "dev": 2 * len(digits.DEV_VOICES),
                      "test": 2 * len(digits.TEST_VOICES)}
    test = DataDir.load(tmp_path / "test")
    assert set(test.utt2spk.values()).isdisjoint(DataDir.load(tmp_path / "train").utt2spk.values())
    import soundfile

    for utt in test.utterances():
        assert set(utt.text.split()) <= set(digits.WORDS)
        assert soundfile.info(utt.audio_path).duration > 0.2
    # the same corpus on every run (female variants add random breath noise, seeded per utterance);
    # a fresh process, as a second eSpeak initialisation in one process does not start from scratch
    import subprocess
    import sys

    again = str(tmp_path / "again")
    code = f"from pathlib import Path; from asrkit.corpora import digits; digits.prepare(None, Path({again!r}), 2)"
    subprocess.run([sys.executable, "-c", code], check=True)
    for audio in sorted((tmp_path / "audio").glob("*.wav")):
        assert audio.read_bytes() == (tmp_path / "again" / "audio" / audio.name).read_bytes(), audio.name


def _fake_archive(tmp_path, folder="waves_yesno"):
    import numpy as np
    import soundfile

    src = tmp_path / "src" / folder
    src.mkdir(parents=True)
    for name in ("0_0_0_0_1_1_1_1", "1_1_1_1_0_0_0_0"):
        soundfile.write(src / f"{name}.wav", np.zeros(800, np.float32), 8000)
    archive = tmp_path / "waves_yesno.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=folder)
    return archive, tree_digest(src, "*.wav")


def test_download_verifies_checksum(tmp_path):
    from asrkit.corpora.download import download_corpus

    archive, digest = _fake_archive(tmp_path)
    root = download_corpus(archive.as_uri(), tmp_path / "dl", "waves_yesno", "*.wav", digest)
    assert root == tmp_path / "dl" / "waves_yesno" and len(list(root.glob("*.wav"))) == 2
    assert download_corpus(archive.as_uri(), tmp_path / "dl", "waves_yesno", "*.wav", digest) == root
    with pytest.raises(CorpusError, match="checksum mismatch"):
        download_corpus(archive.as_uri(), tmp_path / "dl2", "waves_yesno", "*.wav", "0" * 64)
    with pytest.raises(CorpusError, match="cannot download"):
        download_corpus((tmp_path / "nope.tar.gz").as_uri(), tmp_path / "dl3", "waves_yesno", "*.wav", digest)
