"""Transcript output formats: plain text, JSON with word times, SRT subtitles, NIST CTM."""

from __future__ import annotations

import json
from pathlib import Path

from asrkit.recognize.align import WordSpan

FORMATS = ("txt", "json", "srt", "ctm")


def to_json(key: str, text: str, words: list[WordSpan]) -> str:
    return json.dumps({"file": key, "text": text,
                       "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                                  "confidence": round(w.confidence, 3)} for w in words]}, ensure_ascii=False)


def to_ctm(key: str, words: list[WordSpan], channel: str = "1") -> str:
    """``<recording> <channel> <start> <duration> <word> <confidence>`` per word (NIST CTM)."""
    return "".join(f"{key} {channel} {w.start:.2f} {max(w.end - w.start, 0.01):.2f} {w.word} {w.confidence:.2f}\n"
                   for w in words)


def _srt_time(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(words: list[WordSpan], max_words: int = 12, max_seconds: float = 6.0, max_gap: float = 0.8) -> str:
    """Subtitle cues: a new cue after a pause, or when one would grow too long."""
    cues: list[list[WordSpan]] = []
    for word in words:
        if (not cues or len(cues[-1]) >= max_words or word.start - cues[-1][-1].end > max_gap
                or word.end - cues[-1][0].start > max_seconds):
            cues.append([])
        cues[-1].append(word)
    return "".join(f"{i}\n{_srt_time(cue[0].start)} --> {_srt_time(cue[-1].end)}\n{' '.join(w.word for w in cue)}\n\n"
                   for i, cue in enumerate(cues, start=1))


def recording_key(path: str | Path) -> str:
    return Path(path).stem


__all__ = ["FORMATS", "recording_key", "to_ctm", "to_json", "to_srt"]
