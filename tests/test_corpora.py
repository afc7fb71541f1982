"""Corpus preparation from the official layouts (../shared/corpora when present), downloads, synthesis."""

import io
import re
import tarfile

import pytest

from asrkit.corpora import digits, fsdd, yesno
from asrkit.corpora.download import safe_extract, tree_digest
from asrkit.data.datadir import DataDir
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


@needs_shared
def test_an4_prepare_official_layout(tmp_path):
    from asrkit.corpora import an4

    counts = an4.prepare(SHARED_CORPORA / "an4", tmp_path)
    assert counts == {"train": 848, "dev": 100, "test": 130}
    train, dev, test = (DataDir.load(tmp_path / name) for name in ("train", "dev", "test"))
    assert not set(train.text) & set(dev.text)
    assert dev.utt_ids() == sorted(dev.utt_ids()) and dev.utt_ids()[-1] < train.utt_ids()[0]  # the first 100
    assert dev.text["fash-an251-fash-b"] == "YES"  # <s> ... </s> stripped
    assert test.text["fcaw-an406-fcaw-b"] == "RUBOUT G M E F THREE NINE"
    assert test.utt2spk["fcaw-an406-fcaw-b"] == "fcaw" and len(set(test.utt2spk.values())) == 10
    assert test.wav_scp["fcaw-an406-fcaw-b"].endswith("wav/an4test_clstk/fcaw/an406-fcaw-b.sph")
    assert tree_digest(SHARED_CORPORA / "an4", an4.PATTERN) == an4.DIGEST
    from asrkit.search.lexicon import read_lexicon
    words = read_lexicon(tmp_path / "lang" / "lexicon.txt")
    assert len(words) == 101 and "RUBOUT" in words
    assert {w for text in test.text.values() for w in text.split()} <= set(words)


def _mini_an4(root, transcription_lines, fileids, make_audio=True):
    import shutil

    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.transcription").write_text("\n".join(transcription_lines) + "\n")
    (root / "etc" / "an4_train.fileids").write_text("\n".join(fileids) + "\n")
    (root / "etc" / "an4_test.transcription").write_text("A B (an9-spk-b)\n")
    (root / "etc" / "an4_test.fileids").write_text("an4test_clstk/spk/an9-spk-b\n")
    for fileid in fileids + ["an4test_clstk/spk/an9-spk-b"]:
        path = root / "wav" / f"{fileid}.sph"
        path.parent.mkdir(parents=True, exist_ok=True)
        if make_audio:
            shutil.copy(SHARED_CORPORA / "an4" / "wav" / "an4_clstk" / "fash" / "an251-fash-b.sph", path)


@needs_shared
@pytest.mark.parametrize("lines,fileids,message", [
    (["<s> YES </s> (an1-spk-b)"], ["an4_clstk/spk/an2-spk-b"], "does not match"),
    (["<s> YES </s>"], ["an4_clstk/spk/an1-spk-b"], "line 1: expected 'WORDS (utterance-id)'"),
    (["<s> </s> (an1-spk-b)"], ["an4_clstk/spk/an1-spk-b"], "empty transcript"),
    (["<s> YES </s> (an1-spk-b)", "<s> NO </s> (an2-spk-b)"], ["an4_clstk/spk/an1-spk-b"], "lists 1 files but"),
])
def test_an4_malformed_layout_is_one_clear_error(tmp_path, lines, fileids, message):
    from asrkit.corpora import an4

    _mini_an4(tmp_path / "an4", lines, fileids)
    with pytest.raises(CorpusError, match=re.escape(message)) as info:
        an4.prepare(tmp_path / "an4", tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


@needs_shared
def test_an4_missing_audio_and_wrong_folder(tmp_path):
    from asrkit.corpora import an4

    _mini_an4(tmp_path / "an4", ["<s> YES </s> (an1-spk-b)"], ["an4_clstk/spk/an1-spk-b"], make_audio=False)
    with pytest.raises(CorpusError, match=r"an1-spk-b.sph does not exist"):
        an4.prepare(tmp_path / "an4", tmp_path / "out")
    with pytest.raises(CorpusError, match="not the an4_sphere layout"):
        an4.prepare(tmp_path / "an4" / "etc", tmp_path / "out2")
    _mini_an4(tmp_path / "small", ["<s> YES </s> (an1-spk-b)"], ["an4_clstk/spk/an1-spk-b"])
    with pytest.raises(CorpusError, match="1 training utterances; AN4 has 948"):
        an4.prepare(tmp_path / "small", tmp_path / "out3")


@needs_shared
def test_an4_copy_converted_to_flac_is_read(tmp_path):
    import soundfile as sf

    from asrkit.corpora import an4
    from asrkit.data.audio import read_audio

    root = tmp_path / "an4"
    _mini_an4(root, ["<s> YES </s> (an1-spk-b)"], ["an4_clstk/spk/an1-spk-b"])
    sph = root / "wav" / "an4_clstk" / "spk" / "an1-spk-b.sph"
    audio, rate = sf.read(sph, dtype="int16")
    sf.write(sph.with_suffix(".flac"), audio, rate)
    sph.unlink()
    data = an4.read_split(root, "train")
    assert data.wav_scp["spk-an1-spk-b"].endswith("an1-spk-b.flac")
    samples, read_rate = read_audio(data.wav_scp["spk-an1-spk-b"])
    assert read_rate == 16000 and len(samples) == len(audio)
