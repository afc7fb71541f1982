"""LibriSpeech (OpenSLR 12) in its official layout.

``LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>-<nnnn>.flac`` with
``<reader>-<chapter>.trans.txt`` beside them (``UTTID WORDS`` per line, upper
case) and ``LibriSpeech/SPEAKERS.TXT`` (``;`` comments, then
``ID | SEX | SUBSET | MINUTES | NAME``). One data dir per subset, named as the
subset; ``wav.scp`` points at the flac files (no conversion); the speaker is
``<reader>-<chapter>``, as in Kaldi's and ESPnet's recipes (a chapter is one
recording session); ``spk2gender`` comes from SPEAKERS.TXT when it is there.

A flac without a transcript line, or a line without its flac, is counted and
reported (``strict=True`` makes it an error). Downloads use the official
archive names and their published MD5 sums; a partial download resumes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from asrkit.corpora.download import download_file, safe_extract
from asrkit.data.datadir import DataDir
from asrkit.errors import CorpusError
from asrkit.progress import track

log = logging.getLogger("asrkit")

URL = "https://www.openslr.org/resources/12"
# subset -> (published MD5 of <subset>.tar.gz, utterances in the full subset)
SUBSETS = {
    "train-clean-100": ("2a93770f6d5c6c964bc36631d331a522", 28539),
    "train-clean-360": ("c0e676e450a7ff2f54aeade5171606fa", 104014),
    "train-other-500": ("d1a0fd59409feb2c614ce4d30c387708", 148688),
    "dev-clean": ("42e2234ba48799c1f50f24a7926300a1", 2703),
    "dev-other": ("c8d0bcc9cca99d4f8b62fcc847357931", 2864),
    "test-clean": ("32fa31d27d2e1cad72775fee3f4849a9", 2620),
    "test-other": ("fb5a50374b501bb3bac4815ee91d3135", 2939),
}


def parse_subsets(subsets: str | list[str] | None) -> list[str]:
    """The asked subsets in order (all seven when None); an unknown name is an error listing them."""
    if subsets is None:
        return list(SUBSETS)
    names = [s.strip() for s in (subsets.split(",") if isinstance(subsets, str) else subsets) if s.strip()]
    unknown = [s for s in names if s not in SUBSETS]
    if unknown or not names:
        raise CorpusError(f"unknown LibriSpeech subset {unknown[0] if unknown else ''!r}; "
                          f"known: {', '.join(SUBSETS)}")
    return names


def download(download_dir: Path, subsets: str | list[str] | None = None, url: str = URL) -> Path:
    """Fetch and unpack each subset's archive into ``download_dir/LibriSpeech`` (skipping finished ones)."""
    download_dir = Path(download_dir)
    root = download_dir / "LibriSpeech"
    for subset in parse_subsets(subsets):
        if (root / subset / ".complete").is_file():
            log.info("%s already downloaded", root / subset)
            continue
        md5, _ = SUBSETS[subset]
        archive = download_file(f"{url}/{subset}.tar.gz", download_dir / f"{subset}.tar.gz", md5=md5)
        safe_extract(archive, download_dir)
        if not (root / subset).is_dir():
            raise CorpusError(f"{archive} did not contain LibriSpeech/{subset}/")
        (root / subset / ".complete").touch()
    return root


def find_root(corpus_dir: Path) -> Path:
    """The ``LibriSpeech`` folder: ``corpus_dir`` itself, or its ``LibriSpeech/``."""
    for root in (corpus_dir / "LibriSpeech", corpus_dir):
        if root.is_dir() and (any((root / s).is_dir() for s in SUBSETS) or (root / "SPEAKERS.TXT").is_file()):
            return root
    raise CorpusError(f"{corpus_dir}: not the LibriSpeech layout (expected LibriSpeech/<subset>/ with one of "
                      f"{', '.join(SUBSETS)})")


def read_genders(path: Path) -> dict[str, str]:
    """reader id -> 'm'/'f' from SPEAKERS.TXT (empty when the file is missing)."""
    if not path.is_file():
        return {}
    genders = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot be read ({exc})") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 3 or fields[1].upper() not in ("M", "F"):
            raise CorpusError(f"{path} line {line_no}: expected 'ID | SEX | SUBSET | MINUTES | NAME', got {line[:60]!r}")
        genders[fields[0]] = fields[1].lower()
    return genders


def read_chapter(folder: Path, reader: str, chapter: str) -> tuple[dict[str, str], set[str]]:
    """(utterance id -> transcript from the chapter's trans.txt, utterance ids of its flac files)."""
    trans = folder / f"{reader}-{chapter}.trans.txt"
    flacs = {name[:-5] for name in os.listdir(folder) if name.endswith(".flac")}
    texts: dict[str, str] = {}
    if not trans.is_file():
        return texts, flacs
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{trans}: cannot be read ({exc})") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        utt, _, words = line.strip().partition(" ")
        if not utt.startswith(f"{reader}-{chapter}-"):
            raise CorpusError(f"{trans} line {line_no}: utterance {utt!r} is not of chapter {reader}-{chapter}")
        if not words.strip():
            raise CorpusError(f"{trans} line {line_no}: utterance {utt!r} has an empty transcript")
        if utt in texts:
            raise CorpusError(f"{trans} line {line_no}: utterance {utt!r} listed twice")
        texts[utt] = " ".join(words.split())
    if not texts:
        raise CorpusError(f"{trans}: no transcript lines (an empty file)")
    return texts, flacs


def read_subset(root: Path, subset: str, genders: dict[str, str], strict: bool = False) -> DataDir:
    folder = root / subset
    chapters = sorted((r.name, c.name) for r in folder.iterdir() if r.is_dir() for c in r.iterdir() if c.is_dir())
    if not chapters:
        raise CorpusError(f"{folder}: no <reader>/<chapter>/ folders")
    data = DataDir()
    no_text: list[str] = []
    no_audio: list[str] = []
    for reader, chapter in track(chapters, f"reading {subset}"):
        chapter_dir = folder / reader / chapter
        texts, flacs = read_chapter(chapter_dir, reader, chapter)
        no_text += sorted(flacs - set(texts))
        no_audio += sorted(set(texts) - flacs)
        speaker = f"{reader}-{chapter}"
        for utt in sorted(set(texts) & flacs):
            data.wav_scp[utt] = str((chapter_dir / f"{utt}.flac").resolve())
            data.text[utt] = texts[utt]
            data.utt2spk[utt] = speaker
        if reader in genders and texts.keys() & flacs:
            data.spk2gender[speaker] = genders[reader]
    for count, what, examples in ((len(no_text), "flac files without a transcript line", no_text),
                                  (len(no_audio), "transcript lines without a flac file", no_audio)):
        if count:
            message = f"{folder}: {count} {what} (e.g. {examples[0]})"
            if strict:
                raise CorpusError(message + "; without --strict they are left out")
            log.warning("%s; left out", message)
    if not data.text:
        raise CorpusError(f"{folder}: no utterance has both a flac file and a transcript line")
    if genders and set(data.utt2spk.values()) - set(data.spk2gender):
        missing = sorted(set(data.utt2spk.values()) - set(data.spk2gender))
        log.warning("%s: %d speakers have no entry in SPEAKERS.TXT (e.g. %s); no spk2gender written",
                    folder, len(missing), missing[0])
        data.spk2gender = {}
    expected = SUBSETS[subset][1]
    if len(data) != expected:
        log.info("%s: %d utterances (the full subset has %d)", folder, len(data), expected)
    return data


def prepare(corpus_dir: Path, out_dir: Path, subsets: str | list[str] | None = None,
            strict: bool = False) -> dict[str, int]:
    """One data dir per subset under ``out_dir`` (every subset present when ``subsets`` is None)."""
    names = parse_subsets(subsets) if subsets is not None else []  # a misspelt name first
    root = find_root(Path(corpus_dir))
    if subsets is None:
        names = [s for s in SUBSETS if (root / s).is_dir()]
    else:
        missing = [s for s in names if not (root / s).is_dir()]
        if missing:
            raise CorpusError(f"{root}: subset {missing[0]} is not there (present: "
                              f"{', '.join(s for s in SUBSETS if (root / s).is_dir()) or 'none'})")
    if not names:
        raise CorpusError(f"{root}: none of the subsets {', '.join(SUBSETS)} is there")
    genders = read_genders(root / "SPEAKERS.TXT")
    counts = {}
    for subset in names:
        data = read_subset(root, subset, genders, strict)
        data.save(Path(out_dir) / subset)
        DataDir.load(Path(out_dir) / subset)  # validate what was written
        counts[subset] = len(data)
    return counts
