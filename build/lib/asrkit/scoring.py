"""WER and CER with Levenshtein alignments, Kaldi-style per-utterance reports.

Normalisation is explicit: whitespace is collapsed, and nothing else changes
unless asked (``lowercase``, ``remove_punctuation``). CER counts every
character of the normalised string, spaces between words included (as jiwer).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

from asrkit.data.datadir import read_table
from asrkit.errors import DataDirError


@dataclass
class ErrorCounts:
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit; an empty reference counts as one unit (as jiwer 4 does)."""
        return self.errors / max(self.ref_len, 1)

    def __iadd__(self, other: "ErrorCounts") -> "ErrorCounts":
        self.hits += other.hits
        self.substitutions += other.substitutions
        self.deletions += other.deletions
        self.insertions += other.insertions
        return self


@dataclass
class Alignment:
    ops: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (C|S|D|I, ref, hyp)

    def counts(self) -> ErrorCounts:
        c = ErrorCounts()
        for op, _, _ in self.ops:
            if op == "C":
                c.hits += 1
            elif op == "S":
                c.substitutions += 1
            elif op == "D":
                c.deletions += 1
            else:
                c.insertions += 1
        return c


# Above this many table cells the alignment runs row by row in numpy, keeping one byte
# per cell (the move) instead of a Python int: a 12,000-word string then needs 144 MB, not ~9 GB.
_NUMPY_CELLS = 20_000


def align(ref: list[str], hyp: list[str]) -> Alignment:
    """Levenshtein alignment with unit costs; ties prefer hit/substitution, then deletion."""
    n, m = len(ref), len(hyp)
    if (n + 1) * (m + 1) > _NUMPY_CELLS:
        return _align_numpy(ref, hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        dist[i][0] = i
    for j in range(1, m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev = dist[i], dist[i - 1]
        r = ref[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if r == hyp[j - 1] else 1)
            row[j] = min(diag, prev[j] + 1, row[j - 1] + 1)

    def move(i: int, j: int) -> int:  # 0 diagonal, 1 deletion, 2 insertion, in that order of preference
        if dist[i][j] == dist[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 1):
            return 0
        return 1 if dist[i][j] == dist[i - 1][j] + 1 else 2

    return _backtrace(ref, hyp, move)


def _backtrace(ref: list[str], hyp: list[str], move) -> Alignment:
    """The ops from (len(ref), len(hyp)) back to (0, 0); ``move(i, j)`` for i, j > 0."""
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        step = move(i, j) if i > 0 and j > 0 else (1 if j == 0 else 2)
        if step == 0:
            ops.append(("C" if ref[i - 1] == hyp[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif step == 1:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return Alignment(ops)


def _align_numpy(ref: list[str], hyp: list[str]) -> Alignment:
    """``align`` for long strings: same result, one uint8 move per cell (0 diagonal, 1 deletion, 2 insertion).

    Each row is vectorised: with ``c[j]`` the best of the diagonal and deletion moves,
    insertions give ``row[j] = min(c[j], row[j-1] + 1)``, i.e. ``row[j] - j`` is the running
    minimum of ``c[k] - k``.
    """
    import numpy as np

    vocab: dict[str, int] = {}
    ref_ids = np.array([vocab.setdefault(w, len(vocab)) for w in ref], dtype=np.int64)
    hyp_ids = np.array([vocab.setdefault(w, len(vocab)) for w in hyp], dtype=np.int64)
    n, m = len(ref), len(hyp)
    steps = np.arange(m + 1, dtype=np.int64)
    moves = np.empty((n + 1, m + 1), dtype=np.uint8)
    moves[0, :] = 2
    moves[:, 0] = 1
    prev = steps.copy()
    for i in range(1, n + 1):
        diag = prev[:-1] + (hyp_ids != ref_ids[i - 1])
        dele = prev[1:] + 1
        best = np.empty(m + 1, dtype=np.int64)
        best[0] = i
        np.minimum(diag, dele, out=best[1:])
        row = np.minimum.accumulate(best - steps) + steps
        moves[i, 1:] = np.where(row[1:] == diag, 0, np.where(row[1:] == dele, 1, 2))
        prev = row
    return _backtrace(ref, hyp, lambda i, j: int(moves[i, j]))


def normalize(text: str, lowercase: bool = False, remove_punctuation: bool = False) -> str:
    if lowercase:
        text = text.lower()
    if remove_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def describe_normalization(lowercase: bool, remove_punctuation: bool) -> str:
    parts = ["whitespace collapsed", "lowercased" if lowercase else "case kept",
             "punctuation removed" if remove_punctuation else "punctuation kept"]
    return ", ".join(parts)


@dataclass
class ScoreReport:
    word: ErrorCounts
    char: ErrorCounts
    num_utts: int
    missing: list[str]  # reference ids with no hypothesis (scored as all deletions)
    extra: list[str]  # hypothesis ids with no reference (ignored)
    alignments: dict[str, Alignment]
    normalization: str

    @property
    def wer(self) -> float:
        return self.word.rate

    @property
    def cer(self) -> float:
        return self.char.rate


def score(refs: dict[str, str], hyps: dict[str, str], lowercase: bool = False,
          remove_punctuation: bool = False) -> ScoreReport:
    word, char = ErrorCounts(), ErrorCounts()
    alignments = {}
    missing = sorted(u for u in refs if u not in hyps)
    for utt in sorted(refs):
        ref = normalize(refs[utt], lowercase, remove_punctuation)
        hyp = normalize(hyps.get(utt, ""), lowercase, remove_punctuation)
        alignment = align(ref.split(), hyp.split())
        alignments[utt] = alignment
        word += alignment.counts()
        char += align(list(ref), list(hyp)).counts()
    extra = sorted(u for u in hyps if u not in refs)
    return ScoreReport(word, char, len(refs), missing, extra, alignments,
                       describe_normalization(lowercase, remove_punctuation))


def read_text_file(path: str | Path) -> dict[str, str]:
    """A Kaldi ``text`` file (any order; empty transcripts allowed) as a dict."""
    path = Path(path)
    if path.is_dir():
        if (path / "text").is_file():
            path = path / "text"
        else:
            raise DataDirError(f"{path} is a directory without a 'text' file")
    return {key: value for key, value, _ in read_table(path, check_sorted=False, allow_empty_value=True)}


def write_per_utt(report: ScoreReport, path: str | Path) -> None:
    """Kaldi ``per_utt`` format: ref / hyp / op / #csid lines for every utterance."""
    lines = []
    for utt, alignment in report.alignments.items():
        refs = [r if r is not None else "***" for _, r, _ in alignment.ops]
        hyps = [h if h is not None else "***" for _, _, h in alignment.ops]
        ops = [op for op, _, _ in alignment.ops]
        c = alignment.counts()
        lines.append(f"{utt} ref  {' '.join(refs)}")
        lines.append(f"{utt} hyp  {' '.join(hyps)}")
        lines.append(f"{utt} op   {' '.join(ops)}")
        lines.append(f"{utt} #csid {c.hits} {c.substitutions} {c.insertions} {c.deletions}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def summary_line(report: ScoreReport) -> str:
    w, c = report.word, report.char
    return (f"%WER {100 * report.wer:.2f} [ {w.errors} / {w.ref_len}, {w.insertions} ins, {w.deletions} del, "
            f"{w.substitutions} sub ] %CER {100 * report.cer:.2f} [ {c.errors} / {c.ref_len} ] "
            f"utts {report.num_utts} missing {len(report.missing)}")
