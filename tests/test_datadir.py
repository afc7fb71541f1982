import pytest

from asrkit.data.datadir import DataDir, fix_data_dir, split_data_dir
from asrkit.errors import DataDirError


def write_dir(root, wav, text, utt2spk, spk2utt=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav.scp").write_text(wav)
    (root / "text").write_text(text)
    (root / "utt2spk").write_text(utt2spk)
    if spk2utt is not None:
        (root / "spk2utt").write_text(spk2utt)
    return root


GOOD = ("u1 /a/u1.wav\nu2 /a/u2.wav\n", "u1 HELLO WORLD\nu2 BYE\n", "u1 s1\nu2 s1\n", "s1 u1 u2\n")


def test_load_valid(tmp_path):
    data = DataDir.load(write_dir(tmp_path / "d", *GOOD))
    assert data.utt_ids() == ["u1", "u2"]
    assert data.spk2utt() == {"s1": ["u1", "u2"]}
    utts = data.utterances()
    assert utts[0].audio_path == "/a/u1.wav" and utts[0].text == "HELLO WORLD"


def test_duplicate_id(tmp_path):
    d = write_dir(tmp_path / "d", GOOD[0], "u1 A\nu1 B\n", GOOD[2])
    with pytest.raises(DataDirError, match=r"text line 2: duplicate id 'u1' \(first on line 1\)"):
        DataDir.load(d)


def test_unsorted(tmp_path):
    d = write_dir(tmp_path / "d", "u2 /a\nu1 /b\n", GOOD[1], GOOD[2])
    with pytest.raises(DataDirError, match=r"wav.scp line 2: 'u1' is out of order"):
        DataDir.load(d)


def test_missing_text_entry(tmp_path):
    d = write_dir(tmp_path / "d", GOOD[0], "u1 HELLO\n", GOOD[2])
    with pytest.raises(DataDirError, match=r"utterance 'u2' has no entry in text"):
        DataDir.load(d)


def test_empty_transcript(tmp_path):
    d = write_dir(tmp_path / "d", GOOD[0], "u1 HELLO\nu2\n", GOOD[2])
    with pytest.raises(DataDirError, match=r"text line 2: utterance 'u2' has an empty transcript"):
        DataDir.load(d)


def test_missing_file_and_not_a_dir(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(GOOD[0])
    with pytest.raises(DataDirError, match="missing text"):
        DataDir.load(d)
    with pytest.raises(DataDirError, match="does not exist"):
        DataDir.load(tmp_path / "nope")
    with pytest.raises(DataDirError, match="not a directory"):
        DataDir.load(d / "wav.scp")


def test_stale_spk2utt(tmp_path):
    d = write_dir(tmp_path / "d", *GOOD[:3], "s1 u1\n")
    with pytest.raises(DataDirError, match="spk2utt: does not match utt2spk"):
        DataDir.load(d)


def test_non_utf8(tmp_path):
    d = write_dir(tmp_path / "d", *GOOD)
    (d / "text").write_bytes(b"u1 HELLO\nu2 \xff\xfe\n")
    with pytest.raises(DataDirError, match="text line 2: not valid UTF-8"):
        DataDir.load(d)


def test_fix_sorts_drops_and_backs_up(tmp_path):
    d = write_dir(tmp_path / "d", "u2 /b\nu1 /a\nu3 /c\n", "u1 A\nu2 B\n", "u2 s1\nu1 s1\n", "s1 u2\n")
    dropped, backup = fix_data_dir(d)
    assert dropped == 1
    assert (backup / "wav.scp").read_text() == "u2 /b\nu1 /a\nu3 /c\n"
    data = DataDir.load(d)
    assert data.utt_ids() == ["u1", "u2"]
    assert (d / "spk2utt").read_text() == "s1 u1 u2\n"


def test_segments_round_trip_and_checks(tmp_path):
    d = write_dir(tmp_path / "d", "rec1 /a/rec.wav\n", "u1 A\nu2 B\n", "u1 s\nu2 s\n", "s u1 u2\n")
    (d / "segments").write_text("u1 rec1 0.0 1.5\nu2 rec1 1.5 3.0\n")
    data = DataDir.load(d)
    assert [(u.start, u.end) for u in data.utterances()] == [(0.0, 1.5), (1.5, 3.0)]
    (d / "segments").write_text("u1 rec1 0.0 1.5\nu2 rec2 1.5 3.0\n")
    with pytest.raises(DataDirError, match="recording 'rec2' missing from wav.scp"):
        DataDir.load(d)
    (d / "segments").write_text("u1 rec1 2.0 1.5\nu2 rec1 1.5 3.0\n")
    with pytest.raises(DataDirError, match="segments line 1"):
        DataDir.load(d)


def test_split_speaker_stratified(tmp_path):
    data = DataDir()
    for spk in ("a", "b"):
        for i in range(10):
            utt = f"{spk}-{i}"
            data.wav_scp[utt], data.text[utt], data.utt2spk[utt] = "/x", "T", spk
    rest, held = split_data_dir(data, 0.2)
    assert len(held) == 4 and len(rest) == 16
    assert sorted(held.utt2spk.values()) == ["a", "a", "b", "b"]
    rest, held = split_data_dir(data, 0.5, by_speaker=True)
    assert set(held.utt2spk.values()).isdisjoint(rest.utt2spk.values())


def test_save_round_trip_with_segments_and_durations(tmp_path):
    data = DataDir()
    data.wav_scp = {"rec": "/a/rec.flac"}
    data.text = {"u1": "A", "u2": "B C"}
    data.utt2spk = {"u1": "s", "u2": "s"}
    data.segments = {"u1": ("rec", 0.0, 1.25), "u2": ("rec", 1.25, 2.5)}
    data.utt2dur = {"u1": 1.25, "u2": 1.25}
    data.save(tmp_path / "d")
    again = DataDir.load(tmp_path / "d")
    assert again.segments == data.segments and again.utt2dur == data.utt2dur and again.text == data.text
    assert (tmp_path / "d" / "segments").read_text() == "u1 rec 0.000 1.250\nu2 rec 1.250 2.500\n"
