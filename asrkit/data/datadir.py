"""Kaldi-style data dirs: the interchange format between stages.

A data dir holds ``wav.scp`` (recording id -> audio path), ``text`` (utterance
id -> transcript), ``utt2spk``, ``spk2utt``, and optionally ``segments``
(utterance id -> recording id, start, end in seconds), ``utt2dur`` and
``spk2gender`` (speaker -> m/f, kept through subset, fix, split and speed
perturbation). Without ``segments`` every recording is one utterance with the same id.
Every file is sorted by its first field in C (byte) order with unique keys;
errors name the file, the line and the utterance.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from asrkit.data.audio import PIPE_OPTION, pipes_allowed
from asrkit.errors import DataDirError

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")


@dataclass
class Utterance:
    utt_id: str
    audio_path: str
    text: str
    speaker: str
    start: float = 0.0
    end: float | None = None  # None: to the end of the recording
    duration: float | None = None


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8")  # C locale order


def read_table(path: Path, *, min_fields: int = 2, check_sorted: bool = True,
               allow_empty_value: bool = False) -> list[tuple[str, str, int]]:
    """Read ``key value...`` lines; return (key, rest, line number) in file order."""
    if not path.is_file():
        raise DataDirError(f"{path}: missing")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataDirError(f"{path} line {line_no}: not valid UTF-8") from None
    rows: list[tuple[str, str, int]] = []
    seen: dict[str, int] = {}
    previous = None
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            raise DataDirError(f"{path} line {line_no}: empty line")
        parts = line.strip().split(maxsplit=1)
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            raise DataDirError(f"{path} line {line_no}: {key!r} has no value")
        if min_fields > 2 and len(value.split()) < min_fields - 1:
            raise DataDirError(f"{path} line {line_no}: {key!r} needs {min_fields} fields")
        if key in seen:
            raise DataDirError(f"{path} line {line_no}: duplicate id {key!r} (first on line {seen[key]})")
        if check_sorted and previous is not None and _sort_key(key) < _sort_key(previous):
            raise DataDirError(
                f"{path} line {line_no}: {key!r} is out of order after {previous!r} "
                f"(sort in C order, or run 'asrkit data fix')"
            )
        seen[key] = line_no
        previous = key
        rows.append((key, value, line_no))
    return rows


def write_table(path: Path, items: dict[str, str]) -> None:
    """Write a sorted ``key value`` file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for key in sorted(items, key=_sort_key):
            handle.write(f"{key} {items[key]}\n")
    tmp.replace(path)


class DataDir:
    """An in-memory data dir. ``load`` validates; ``save`` writes sorted files."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.wav_scp: dict[str, str] = {}
        self.text: dict[str, str] = {}
        self.utt2spk: dict[str, str] = {}
        self.segments: dict[str, tuple[str, float, float]] | None = None
        self.utt2dur: dict[str, float] = {}
        self.spk2gender: dict[str, str] = {}  # speaker -> 'm' or 'f' (Kaldi's optional spk2gender)
        self.pipe_lines: dict[str, int] = {}  # wav.scp entries that are command pipes -> their line

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, check_sorted: bool = True, validate: bool = True) -> "DataDir":
        path = Path(path)
        if not path.exists():
            raise DataDirError(f"data dir {path} does not exist")
        if not path.is_dir():
            raise DataDirError(f"{path} is not a directory (expected a Kaldi data dir)")
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise DataDirError(f"{path}: missing {name} (a data dir needs {', '.join(REQUIRED_FILES)})")
        data = cls(path)
        for key, value, line_no in read_table(path / "wav.scp", check_sorted=check_sorted):
            if value.endswith("|"):
                data.pipe_lines[key] = line_no
            data.wav_scp[key] = value
        for key, value, line_no in read_table(path / "text", check_sorted=check_sorted, allow_empty_value=True):
            if not value:
                raise DataDirError(f"{path / 'text'} line {line_no}: utterance {key!r} has an empty transcript")
            data.text[key] = value
        for key, value, line_no in read_table(path / "utt2spk", check_sorted=check_sorted):
            if len(value.split()) != 1:
                raise DataDirError(f"{path / 'utt2spk'} line {line_no}: {key!r} must map to one speaker id")
            data.utt2spk[key] = value
        if (path / "segments").is_file():
            data.segments = {}
            for key, value, line_no in read_table(path / "segments", check_sorted=check_sorted):
                fields = value.split()
                try:
                    rec, start, end = fields[0], float(fields[1]), float(fields[2])
                except (IndexError, ValueError):
                    raise DataDirError(
                        f"{path / 'segments'} line {line_no}: {key!r} must be 'utt rec start end'"
                    ) from None
                if start < 0 or end <= start:
                    raise DataDirError(f"{path / 'segments'} line {line_no}: {key!r} has end <= start or start < 0")
                data.segments[key] = (rec, start, end)
        if (path / "utt2dur").is_file():
            for key, value, line_no in read_table(path / "utt2dur", check_sorted=check_sorted):
                try:
                    data.utt2dur[key] = float(value)
                except ValueError:
                    raise DataDirError(f"{path / 'utt2dur'} line {line_no}: {key!r} duration {value!r} is not a number") from None
        if (path / "spk2gender").is_file():
            for key, value, line_no in read_table(path / "spk2gender", check_sorted=check_sorted):
                if value not in ("m", "f"):
                    raise DataDirError(f"{path / 'spk2gender'} line {line_no}: speaker {key!r} must have gender "
                                       f"'m' or 'f', not {value!r}")
                data.spk2gender[key] = value
        if validate:
            data.validate()
        return data

    # ------------------------------------------------------------- validation
    def utt_ids(self) -> list[str]:
        return sorted(self.text, key=_sort_key)

    def problems(self) -> list[str]:
        """Every cross-file inconsistency, as messages naming file and utterance."""
        where = self.path or Path("<data dir>")
        found: list[str] = []
        utts = set(self.text)
        for utt in sorted(set(self.utt2spk) - utts):
            found.append(f"{where / 'utt2spk'}: utterance {utt!r} has no entry in text")
        for utt in sorted(utts - set(self.utt2spk)):
            found.append(f"{where / 'text'}: utterance {utt!r} has no entry in utt2spk")
        if self.segments is not None:
            for utt in sorted(utts - set(self.segments)):
                found.append(f"{where / 'text'}: utterance {utt!r} has no entry in segments")
            for utt in sorted(set(self.segments) - utts):
                found.append(f"{where / 'segments'}: utterance {utt!r} has no entry in text")
            for utt, (rec, _, _) in sorted(self.segments.items()):
                if rec not in self.wav_scp:
                    found.append(f"{where / 'segments'}: utterance {utt!r} names recording {rec!r} missing from wav.scp")
        else:
            for utt in sorted(utts - set(self.wav_scp)):
                found.append(f"{where / 'text'}: utterance {utt!r} has no entry in wav.scp")
            for rec in sorted(set(self.wav_scp) - utts):
                found.append(f"{where / 'wav.scp'}: recording {rec!r} has no entry in text")
        if self.utt2dur:
            for utt in sorted(utts ^ set(self.utt2dur)):
                found.append(f"{where / 'utt2dur'}: utterance {utt!r} is in only one of text and utt2dur")
        if self.spk2gender:  # as Kaldi's validate_data_dir.sh: the same speakers as spk2utt
            speakers = set(self.utt2spk.values())
            for spk in sorted(speakers ^ set(self.spk2gender)):
                where_spk = "utt2spk" if spk in speakers else "spk2gender"
                found.append(f"{where / 'spk2gender'}: speaker {spk!r} is in {where_spk} only")
        spk_file = self.path / "spk2utt" if self.path else None
        if spk_file is not None and spk_file.is_file():
            expected = self.spk2utt()
            try:
                rows = read_table(spk_file)
            except DataDirError as exc:
                found.append(str(exc))
            else:
                actual = {key: value.split() for key, value, _ in rows}
                if actual != expected:
                    found.append(f"{spk_file}: does not match utt2spk (run 'asrkit data fix' to regenerate it)")
        return found

    def validate(self) -> None:
        found = self.problems()
        if not self.text:
            raise DataDirError(f"{self.path}: no utterances")
        if found:
            more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
            raise DataDirError(found[0] + more)

    def check_pipes(self) -> None:
        """Before any audio is read: a command pipe in wav.scp runs only with --allow-pipes."""
        if self.pipe_lines and not pipes_allowed():
            rec, line_no = min(self.pipe_lines.items(), key=lambda item: item[1])
            where = self.path / "wav.scp" if self.path else "wav.scp"
            raise DataDirError(f"{where} line {line_no}: {rec!r} is a command pipe ({len(self.pipe_lines)} in all); "
                               f"pass {PIPE_OPTION} to run them (they run in a shell: only for data you trust)")

    # ---------------------------------------------------------------- access
    def spk2utt(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = defaultdict(list)
        for utt in sorted(self.utt2spk, key=_sort_key):
            result[self.utt2spk[utt]].append(utt)
        return dict(result)

    def utterances(self) -> list[Utterance]:
        out = []
        for utt in self.utt_ids():
            if self.segments is not None:
                rec, start, end = self.segments[utt]
                audio, seg_end = self.wav_scp[rec], end
            else:
                audio, start, seg_end = self.wav_scp[utt], 0.0, None
            audio_path = audio
            if self.path is not None and not Path(audio).is_absolute() and not Path(audio).exists():
                candidate = self.path / audio  # paths relative to the data dir are accepted too
                if candidate.exists():
                    audio_path = str(candidate)
            out.append(Utterance(utt, audio_path, self.text[utt], self.utt2spk[utt], start, seg_end,
                                 self.utt2dur.get(utt)))
        return out

    def fingerprint(self, features: dict[str, str] | None = None) -> str:
        """sha256 of what the data dir says: each utterance's transcript and audio (wav.scp entry
        and segment), and, when given, its feature entries (a foreign feats.scp, which is the data
        then). The same data gives the same fingerprint wherever it lies and however its files
        are laid out."""
        digest = hashlib.sha256()
        for utt in self.utt_ids():
            rec, start, end = self.segments[utt] if self.segments is not None else (utt, 0.0, -1.0)
            digest.update(f"{utt}\t{self.text[utt]}\t{self.wav_scp[rec]}\t{start:.3f}\t{end:.3f}\n".encode())
            if features is not None:
                digest.update(f"{features.get(utt, '')}\n".encode())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.text)

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_table(path / "wav.scp", self.wav_scp)
        write_table(path / "text", self.text)
        write_table(path / "utt2spk", self.utt2spk)
        write_table(path / "spk2utt", {spk: " ".join(utts) for spk, utts in self.spk2utt().items()})
        optional = {
            "segments": {u: f"{rec} {start:.3f} {end:.3f}" for u, (rec, start, end) in (self.segments or {}).items()},
            "utt2dur": {u: f"{dur:.3f}" for u, dur in self.utt2dur.items()},
            "spk2gender": self.spk2gender,
        }
        for name, rows in optional.items():
            if rows:
                write_table(path / name, rows)
            elif (path / name).exists():
                (path / name).unlink()
        self.path = path

    # ------------------------------------------------------------ operations
    def subset(self, utt_ids: list[str] | set[str]) -> "DataDir":
        keep = set(utt_ids)
        out = DataDir()
        out.text = {u: t for u, t in self.text.items() if u in keep}
        out.utt2spk = {u: s for u, s in self.utt2spk.items() if u in keep}
        out.utt2dur = {u: d for u, d in self.utt2dur.items() if u in keep}
        speakers = set(out.utt2spk.values())
        out.spk2gender = {s: g for s, g in self.spk2gender.items() if s in speakers}
        if self.segments is not None:
            out.segments = {u: s for u, s in self.segments.items() if u in keep}
            recs = {rec for rec, _, _ in out.segments.values()}
            out.wav_scp = {r: p for r, p in self.wav_scp.items() if r in recs}
        else:
            out.wav_scp = {u: p for u, p in self.wav_scp.items() if u in keep}
        return out


def load_unsorted(path: str | Path) -> DataDir:
    """Load without order and consistency checks (for ``fix``); duplicates still fail."""
    return DataDir.load(path, check_sorted=False, validate=False)


def fix_data_dir(path: str | Path) -> tuple[int, Path]:
    """Sort every file, drop utterances missing from any file, regenerate spk2utt.

    The original files are first copied to ``<dir>/.backup/``. Returns the
    number of utterances dropped and the backup path.
    """
    path = Path(path)
    data = load_unsorted(path)
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "utt2dur", "spk2gender"):
        if (path / name).is_file():
            shutil.copy2(path / name, backup / name)
    keep = set(data.text) & set(data.utt2spk)
    if data.segments is not None:
        keep &= {u for u, (rec, _, _) in data.segments.items() if rec in data.wav_scp}
    else:
        keep &= set(data.wav_scp)
    if data.utt2dur:
        keep &= set(data.utt2dur)
    seen = set(data.text) | set(data.utt2spk) | set(data.utt2dur)
    seen |= set(data.segments) if data.segments is not None else set(data.wav_scp)
    dropped = len(seen) - len(keep)
    fixed = data.subset(keep)
    # a speaker without a gender makes spk2gender inconsistent: drop the file, as Kaldi's fix_data_dir.sh
    # drops what it cannot keep consistent
    if fixed.spk2gender and set(fixed.utt2spk.values()) - set(fixed.spk2gender):
        fixed.spk2gender = {}
    if not fixed.text:
        raise DataDirError(f"{path}: no utterance is present in every file; nothing left after fixing")
    fixed.save(path)
    return dropped, backup


def split_data_dir(data: DataDir, fraction: float, *, by_speaker: bool = False,
                   seed: int = 0) -> tuple[DataDir, DataDir]:
    """Split into (rest, held_out), holding out about ``fraction`` of the utterances.

    ``by_speaker=False`` samples utterances per speaker (speaker-stratified: every
    speaker contributes the same share to both parts); ``by_speaker=True`` holds
    out whole speakers (disjoint speaker sets).
    """
    if not 0.0 < fraction < 1.0:
        raise DataDirError(f"split fraction must be in (0, 1), got {fraction}")
    rng = random.Random(seed)
    spk2utt = data.spk2utt()
    held: list[str] = []
    if by_speaker:
        speakers = sorted(spk2utt)
        rng.shuffle(speakers)
        target = fraction * len(data)
        for spk in speakers:
            if len(held) >= target or len(held) + len(spk2utt[spk]) >= len(data):
                break
            held.extend(spk2utt[spk])
    else:
        for spk in sorted(spk2utt):
            utts = list(spk2utt[spk])
            rng.shuffle(utts)
            held.extend(utts[: round(fraction * len(utts))])
    if not held or len(held) == len(data):
        raise DataDirError(f"split of {len(data)} utterances at fraction {fraction} leaves one side empty")
    held_set = set(held)
    rest = [u for u in data.text if u not in held_set]
    return data.subset(rest), data.subset(held_set)


def combine_data_dirs(parts: list["DataDir"], names: list[str] | None = None) -> "DataDir":
    """One data dir holding every utterance of ``parts`` (as Kaldi's utils/combine_data.sh); an
    utterance, recording or speaker id in two parts with different content is an error."""
    out = DataDir()
    out.segments = {} if any(p.segments is not None for p in parts) else None
    for index, part in enumerate(parts):
        where = names[index] if names else f"part {index + 1}"
        if (part.segments is None) != (out.segments is None):
            raise DataDirError(f"{where}: cannot combine data dirs with and without segments")
        clash = next((u for u in part.text if u in out.text), None)
        if clash is not None:
            raise DataDirError(f"{where}: utterance {clash!r} is also in an earlier data dir")
        for table in ("wav_scp", "text", "utt2spk", "utt2dur", "spk2gender"):
            mine, theirs = getattr(out, table), getattr(part, table)
            for key, value in theirs.items():
                if mine.get(key, value) != value:
                    raise DataDirError(f"{where}: {table.replace('_', '.')} entry {key!r} differs from an earlier "
                                       "data dir's")
                mine[key] = value
        if part.segments is not None:
            out.segments.update(part.segments)
    return out


def save_splits(parts: dict[str, "DataDir"], out_dir: str | Path) -> dict[str, int]:
    """Write each data dir under ``out_dir/<name>``, validate what was written, return the counts."""
    counts = {}
    for name, data in parts.items():
        data.save(Path(out_dir) / name)
        DataDir.load(Path(out_dir) / name)
        counts[name] = len(data)
    return counts
