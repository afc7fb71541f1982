"""LibriSpeech: official-layout preparation, spk2gender, and the resuming, MD5-checked download."""

import hashlib
import http.server
import tarfile
import threading
import time

import numpy as np
import pytest
import soundfile

from asrkit.corpora import librispeech
from asrkit.corpora.download import download_file
from asrkit.data.datadir import DataDir, fix_data_dir, split_data_dir
from asrkit.data.perturb import speed_perturb
from asrkit.errors import CorpusError, DataDirError

SPEAKERS = """; Some comment
;ID  |SEX| SUBSET           |MINUTES| NAME
103  | F | train-clean-100  | 25.10 | A Reader
1034 | M | train-clean-100  | 25.05 | Another
2412 | F | dev-clean        | 8.02 | Third Reader
"""
LAYOUT = {"train-clean-100": {("103", "1240"): ["CHAPTER ONE", "HELLO WORLD"], ("1034", "121119"): ["A B C"]},
          "dev-clean": {("2412", "153948"): ["SOME WORDS HERE", "TWO"]}}


def make_layout(root, layout=LAYOUT, speakers=SPEAKERS):
    """A tiny LibriSpeech tree under root/LibriSpeech (a little noise as flac)."""
    rng = np.random.default_rng(0)
    base = root / "LibriSpeech"
    for subset, chapters in layout.items():
        for (reader, chapter), texts in chapters.items():
            folder = base / subset / reader / chapter
            folder.mkdir(parents=True)
            lines = []
            for n, text in enumerate(texts):
                utt = f"{reader}-{chapter}-{n:04d}"
                soundfile.write(folder / f"{utt}.flac", (rng.standard_normal(1600) * 0.01).astype(np.float32), 16000)
                lines.append(f"{utt} {text}\n")
            (folder / f"{reader}-{chapter}.trans.txt").write_text("".join(lines))
    if speakers is not None:
        (base / "SPEAKERS.TXT").write_text(speakers)
    return base


def test_prepare_official_layout(tmp_path):
    base = make_layout(tmp_path / "corpus")
    counts = librispeech.prepare(tmp_path / "corpus", tmp_path / "data")
    assert counts == {"train-clean-100": 3, "dev-clean": 2}
    train = DataDir.load(tmp_path / "data/train-clean-100")
    assert train.text["103-1240-0001"] == "HELLO WORLD"
    assert train.utt2spk["1034-121119-0000"] == "1034-121119"
    assert train.wav_scp["103-1240-0000"] == str((base / "train-clean-100/103/1240/103-1240-0000.flac").resolve())
    assert train.spk2gender == {"103-1240": "f", "1034-121119": "m"}
    assert (tmp_path / "data/dev-clean/spk2gender").read_text() == "2412-153948 f\n"
    # LibriSpeech/ itself as --corpus-dir, and a chosen subset
    assert librispeech.prepare(base, tmp_path / "data2", subsets="dev-clean") == {"dev-clean": 2}


def test_prepare_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from asrkit.cli import app

    make_layout(tmp_path / "corpus")
    result = CliRunner().invoke(app, ["prepare", "librispeech", "--corpus-dir", str(tmp_path / "corpus"),
                                      "--out", str(tmp_path / "data"), "--subsets", "train-clean-100"])
    assert result.exit_code == 0, result.output
    assert "train-clean-100 3 utterances" in result.output
    result = CliRunner().invoke(app, ["prepare", "yesno", "--corpus-dir", str(tmp_path), "--out",
                                      str(tmp_path / "y"), "--subsets", "a"])
    assert isinstance(result.exception, CorpusError) and "--subsets is not an option of yesno" in str(result.exception)


def test_unknown_or_absent_subset_is_one_clear_error(tmp_path):
    make_layout(tmp_path / "corpus")
    with pytest.raises(CorpusError, match="unknown LibriSpeech subset 'train-clean-101'; known: train-clean-100"):
        librispeech.prepare(tmp_path / "corpus", tmp_path / "data", subsets="train-clean-101")
    with pytest.raises(CorpusError, match=r"subset test-other is not there \(present: train-clean-100, dev-clean\)"):
        librispeech.prepare(tmp_path / "corpus", tmp_path / "data", subsets="test-other")
    with pytest.raises(CorpusError, match="not the LibriSpeech layout"):
        librispeech.prepare(tmp_path, tmp_path / "data")
    with pytest.raises(CorpusError, match="unknown LibriSpeech subset 'dev-cleen'"):  # before the layout
        librispeech.prepare(tmp_path, tmp_path / "data", subsets="dev-cleen")


def test_audio_and_transcripts_that_do_not_pair_are_counted_or_strict(tmp_path, caplog):
    base = make_layout(tmp_path / "corpus")
    chapter = base / "train-clean-100/103/1240"
    (chapter / "103-1240-0000.flac").unlink()  # a line without its flac
    soundfile.write(chapter / "103-1240-0009.flac", np.zeros(1600, np.float32), 16000)  # a flac without a line
    counts = librispeech.prepare(tmp_path / "corpus", tmp_path / "data", subsets="train-clean-100")
    assert counts == {"train-clean-100": 2}
    assert "1 flac files without a transcript line (e.g. 103-1240-0009)" in caplog.text
    assert "1 transcript lines without a flac file (e.g. 103-1240-0000)" in caplog.text
    with pytest.raises(CorpusError, match="flac files without a transcript line"):
        librispeech.prepare(tmp_path / "corpus", tmp_path / "data", subsets="train-clean-100", strict=True)


@pytest.mark.parametrize("content,message", [
    ("", "no transcript lines"),
    ("103-1240-0000\n", "line 1: utterance '103-1240-0000' has an empty transcript"),
    ("999-1-0000 WORDS\n", "line 1: utterance '999-1-0000' is not of chapter 103-1240"),
    (b"\xff\xfe bad", "cannot be read"),
])
def test_bad_transcript_file_is_one_line_naming_it(tmp_path, content, message):
    base = make_layout(tmp_path / "corpus")
    trans = base / "train-clean-100/103/1240/103-1240.trans.txt"
    trans.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CorpusError, match=message) as error:
        librispeech.prepare(tmp_path / "corpus", tmp_path / "data")
    assert "103-1240.trans.txt" in str(error.value) and "\n" not in str(error.value)


def test_speakers_file_is_optional_and_checked(tmp_path):
    make_layout(tmp_path / "a", speakers=None)
    librispeech.prepare(tmp_path / "a", tmp_path / "data")
    assert not (tmp_path / "data/train-clean-100/spk2gender").exists()
    make_layout(tmp_path / "b", speakers="103 | X | train-clean-100 | 1 | N\n")
    with pytest.raises(CorpusError, match="SPEAKERS.TXT line 1"):
        librispeech.prepare(tmp_path / "b", tmp_path / "data")


def test_spk2gender_survives_subset_fix_split_and_speed_perturbation(tmp_path):
    make_layout(tmp_path / "corpus")
    librispeech.prepare(tmp_path / "corpus", tmp_path / "data", subsets="train-clean-100")
    data = DataDir.load(tmp_path / "data/train-clean-100")
    part = data.subset(["103-1240-0000"])
    assert part.spk2gender == {"103-1240": "f"}
    rest, held = split_data_dir(data, 0.34, by_speaker=True)
    assert set(rest.spk2gender) | set(held.spk2gender) == {"103-1240", "1034-121119"}
    perturbed = speed_perturb(data, tmp_path / "sp", [0.9, 1.0])
    assert perturbed.spk2gender["sp0.9-103-1240"] == "f" and perturbed.spk2gender["1034-121119"] == "m"
    # fix drops an utterance missing from text, and the gender of a speaker left without utterances
    folder = tmp_path / "data/train-clean-100"
    (folder / "text").write_text("".join(f"{u} {t}\n" for u, t in data.text.items() if not u.startswith("1034")))
    fix_data_dir(folder)
    assert DataDir.load(folder).spk2gender == {"103-1240": "f"}
    (folder / "spk2gender").write_text("103-1240 x\n")
    with pytest.raises(DataDirError, match="spk2gender line 1: speaker '103-1240' must have gender 'm' or 'f'"):
        DataDir.load(folder)
    (folder / "spk2gender").write_text("103-1240 f\n9-9 m\n")
    with pytest.raises(DataDirError, match="speaker '9-9' is in spk2gender only"):
        DataDir.load(folder)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (what a resumed download asks for), 416 for a range
    past the end, and the faults the server's ``faults`` list asks for, one per request:
    "drop" (half the body, then the connection closes), "stall" (nothing for 2 s), "corrupt"
    (other bytes), None (as it should)."""

    def do_GET(self):  # noqa: N802 - the http.server name
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        fault = self.server.faults.pop(0) if self.server.faults else None
        self.server.requests.append(self.headers.get("Range"))
        if fault == "stall":
            time.sleep(2.0)
        if fault == "corrupt":
            data = bytes(reversed(data))
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[:len(body) // 2] if fault == "drop" else body)
        if fault == "drop":
            self.close_connection = True

    def log_message(self, *args):
        pass


_SERVERS: dict = {}


@pytest.fixture
def server(tmp_path):
    serve = tmp_path / "serve"
    serve.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(serve), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests, httpd.faults = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    _SERVERS[url] = httpd
    yield serve, url, httpd.requests
    del _SERVERS[url]
    httpd.shutdown()


def test_download_resumes_a_partial_file_and_checks_md5(tmp_path, server):
    serve, url, requests = server
    payload = bytes(range(256)) * 1000
    (serve / "x.tar.gz").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "dl" / "x.tar.gz"
    dest.parent.mkdir()
    dest.with_name("x.tar.gz.part").write_bytes(payload[:1000])
    assert download_file(f"{url}/x.tar.gz", dest, md5=md5).read_bytes() == payload
    assert requests == ["bytes=1000-"]
    with pytest.raises(CorpusError, match="is not the published 0000"):
        download_file(f"{url}/x.tar.gz", tmp_path / "dl" / "y.tar.gz", md5="0" * 32)
    assert (tmp_path / "dl" / "y.tar.gz.bad").exists() and not (tmp_path / "dl" / "y.tar.gz").exists()
    with pytest.raises(CorpusError, match="cannot download .*HTTP 404"):
        download_file(f"{url}/missing.tar.gz", tmp_path / "dl" / "z.tar.gz")


def server_state(server):
    """The running test server (its ``faults`` and ``requests`` lists)."""
    return _SERVERS[server[1]]


def test_a_whole_part_file_is_finished_not_asked_for_again(tmp_path, server):
    """Ctrl-C during the long MD5 of a finished .part used to leave a download that never finished:
    every rerun asked for 'bytes=N-', got 416 and said 'rerun to resume'."""
    serve, url, requests = server
    payload = bytes(range(256)) * 1000
    (serve / "x.tar.gz").write_bytes(payload)
    dest = tmp_path / "dl" / "x.tar.gz"
    dest.parent.mkdir()
    dest.with_name("x.tar.gz.part").write_bytes(payload)
    assert download_file(f"{url}/x.tar.gz", dest, md5=hashlib.md5(payload).hexdigest()).read_bytes() == payload
    assert requests == [f"bytes={len(payload)}-"] and not dest.with_name("x.tar.gz.part").exists()
    longer = tmp_path / "dl" / "w.tar.gz"  # a .part longer than the file is not the file: fetched afresh
    longer.with_name("w.tar.gz.part").write_bytes(payload + b"junk")
    assert download_file(f"{url}/x.tar.gz", longer, md5=hashlib.md5(payload).hexdigest(),
                         backoff=0.01).read_bytes() == payload


@pytest.mark.parametrize("faults,expected_requests", [
    (["drop"], [None, "bytes=128000-"]),  # the connection closes half way: resumed
    (["stall", None], [None, None]),  # nothing comes for longer than the timeout: asked again
    (["drop", "drop", "drop"], None),  # every attempt drops: the error says so, the part is kept
])
def test_dropped_and_stalled_connections_are_retried_and_resumed(tmp_path, server, faults, expected_requests):
    serve, url, requests = server
    payload = bytes(range(256)) * 1000
    (serve / "x.tar.gz").write_bytes(payload)
    server_state(server).faults[:] = faults
    dest = tmp_path / "dl" / "x.tar.gz"
    md5 = hashlib.md5(payload).hexdigest()
    if expected_requests is None:
        with pytest.raises(CorpusError, match="cannot download .*3 attempts.*rerun to resume"):
            download_file(f"{url}/x.tar.gz", dest, md5=md5, timeout=1.0, attempts=3, backoff=0.01)
        assert 0 < dest.with_name("x.tar.gz.part").stat().st_size < len(payload)  # kept for the rerun
        return
    assert download_file(f"{url}/x.tar.gz", dest, md5=md5, timeout=1.0, backoff=0.01).read_bytes() == payload
    assert requests == expected_requests


def test_a_corrupt_download_is_fetched_again_once_then_reported(tmp_path, server):
    serve, url, requests = server
    payload = bytes(range(256)) * 1000
    (serve / "x.tar.gz").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    server_state(server).faults[:] = ["corrupt"]
    dest = tmp_path / "dl" / "x.tar.gz"
    assert download_file(f"{url}/x.tar.gz", dest, md5=md5, backoff=0.01).read_bytes() == payload
    assert len(requests) == 2 and not dest.with_name("x.tar.gz.bad").exists()
    server_state(server).faults[:] = ["corrupt", "corrupt"]
    again = tmp_path / "dl" / "y.tar.gz"
    with pytest.raises(CorpusError, match="is not the published .*twice; the file was kept as y.tar.gz.bad"):
        download_file(f"{url}/x.tar.gz", again, md5=md5, backoff=0.01)
    assert again.with_name("y.tar.gz.bad").exists() and not again.exists()


def test_download_stage_fetches_official_names_and_unpacks(tmp_path, server, monkeypatch):
    serve, url, _ = server
    make_layout(tmp_path / "src", {"dev-clean": LAYOUT["dev-clean"]})
    archive = serve / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src/LibriSpeech/dev-clean", arcname="LibriSpeech/dev-clean")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(librispeech.SUBSETS, "dev-clean", (md5, 2))
    root = librispeech.download(tmp_path / "downloads", "dev-clean", url=url)
    assert root == tmp_path / "downloads/LibriSpeech"
    assert librispeech.prepare(root, tmp_path / "data") == {"dev-clean": 2}
    assert librispeech.download(tmp_path / "downloads", "dev-clean", url=url + "/nowhere") == root  # done: skipped


def test_combine_data_dirs_and_its_clashes(tmp_path):
    from typer.testing import CliRunner

    from asrkit.cli import app
    from asrkit.data.datadir import combine_data_dirs

    make_layout(tmp_path / "corpus")
    librispeech.prepare(tmp_path / "corpus", tmp_path / "data")
    parts = [tmp_path / "data/train-clean-100", tmp_path / "data/dev-clean"]
    result = CliRunner().invoke(app, ["data", "combine", str(tmp_path / "all"), *map(str, parts)])
    assert result.exit_code == 0, result.output
    combined = DataDir.load(tmp_path / "all")
    assert len(combined) == 5 and combined.spk2gender["2412-153948"] == "f"
    with pytest.raises(DataDirError, match="utterance '103-1240-0000' is also in an earlier data dir"):
        combine_data_dirs([DataDir.load(parts[0]), DataDir.load(parts[0])], ["a", "b"])


def test_lm_build_writes_gzip_for_a_gz_name(tmp_path):
    import gzip

    from typer.testing import CliRunner

    from asrkit.cli import app
    from asrkit.search.arpa import ArpaLM

    (tmp_path / "text").write_text("u1 A B\nu2 B C A\n")
    result = CliRunner().invoke(app, ["lm", "build", str(tmp_path / "text"), "--out", str(tmp_path / "lm.arpa.gz")])
    assert result.exit_code == 0, result.output
    assert gzip.decompress((tmp_path / "lm.arpa.gz").read_bytes()).startswith(b"\\data\\")
    assert ArpaLM.load(tmp_path / "lm.arpa.gz").order == 3
