"""Transcript output formats: plain text, JSON with word times, SRT subtitles, NIST CTM."""

from __future__ import annotations

import json
from pathlib import Path

from asrkit.recognize.align import WordSpan

FORMATS = ("txt", "json", "srt", "ctm")


def word_dicts(words: list[WordSpan]) -> list[dict]:
    """Words as JSON objects: word, start and end (seconds), confidence (the CLI's json and the server's)."""
    return [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "confidence": round(w.confidence, 3)}
            for w in words]


def to_json(key: str, text: str, words: list[WordSpan]) -> str:
    return json.dumps({"file": key, "text": text, "words": word_dicts(words)}, ensure_ascii=False)


def to_ctm(key: str, words: list[WordSpan], channel: str = "1") -> str:
    """``<recording> <channel> <start> <duration> <word> <confidence>`` per word (NIST CTM)."""
    return "".join(f"{key} {channel} {w.start:.2f} {max(w.end - w.start, 0.01):.2f} {w.word} {w.confidence:.2f}\n"
                   for w in words)


def _clock(seconds: float, comma: str = ",") -> str:
    """hh:mm:ss,mmm (SRT; WebVTT's has a dot)."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{comma}{millis:03d}"


def cues(words: list[WordSpan], max_words: int = 12, max_seconds: float = 6.0,
         max_gap: float = 0.8) -> list[list[WordSpan]]:
    """Subtitle cues: a new cue after a pause, or when one would grow too long."""
    found: list[list[WordSpan]] = []
    for word in words:
        if (not found or len(found[-1]) >= max_words or word.start - found[-1][-1].end > max_gap
                or word.end - found[-1][0].start > max_seconds):
            found.append([])
        found[-1].append(word)
    return found


def to_srt(words: list[WordSpan]) -> str:
    return "".join(f"{i}\n{_clock(cue[0].start)} --> {_clock(cue[-1].end)}\n{' '.join(w.word for w in cue)}\n\n"
                   for i, cue in enumerate(cues(words), start=1))


def to_vtt(words: list[WordSpan]) -> str:
    """WebVTT: the SRT cues under a WEBVTT header, with dots in the times."""
    return "WEBVTT\n\n" + "".join(f"{_clock(cue[0].start, '.')} --> {_clock(cue[-1].end, '.')}\n"
                                   f"{' '.join(w.word for w in cue)}\n\n" for cue in cues(words))


def recording_key(path: str | Path) -> str:
    return Path(path).stem


__all__ = ["FORMATS", "cues", "recording_key", "to_ctm", "to_json", "to_srt", "to_vtt", "word_dicts"]
