"""What every endpoint shares: the server's settings, errors in OpenAI's shape, and the search
fields a request may set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from asrkit.errors import AsrkitError
from asrkit.search.options import MODES, SearchOptions


@dataclass(frozen=True)
class Settings:
    model_id: str = "asrkit"
    max_upload_mb: float = 25.0  # OpenAI's own limit
    request_timeout: float = 30.0  # seconds an upload may stall between two pieces of its body
    idle_timeout: float = 60.0  # seconds a stream may send nothing
    max_seconds: float = 20.0  # longer files are cut at pauses (as transcribe)
    chunk_ms: float = 320.0  # a stream's encoder chunk
    api_keys: tuple[str, ...] = ()  # empty: no key needed

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def search_from(fields: dict[str, str], default: SearchOptions) -> SearchOptions:
    """The server's search options with a request's fields applied: mode, beam, lm_weight,
    word_bonus, ctc_weight, token_min_logp, and lm/lexicon "false" to leave out the server's own
    (a request cannot name files)."""
    changes: dict = {}
    numbers = {"beam": int, "lm_weight": float, "word_bonus": float, "ctc_weight": float, "token_min_logp": float,
               "hotword_score": float}
    for name, kind in numbers.items():
        if fields.get(name, "") != "":
            try:
                changes[name] = kind(fields[name])
            except ValueError:
                raise HttpError(400, f"{name} must be a number, not {fields[name]!r}", param=name) from None
    if fields.get("mode"):
        if fields["mode"] not in MODES:
            raise HttpError(400, f"mode must be one of {', '.join(MODES)}, not {fields['mode']!r}", param="mode")
        changes["mode"] = fields["mode"]
    for name in ("lm", "lexicon"):
        value = fields.get(name, "").lower()
        if value in ("false", "0", "no", "off"):
            changes[name] = None
        elif value not in ("", "true", "1", "yes", "on"):
            raise HttpError(400, f"{name} may be true or false (the server's own), not a name", param=name)
    if "beam" in changes and "nbest" not in changes:
        changes["nbest"] = min(default.nbest, changes["beam"]) if changes["beam"] >= 1 else 1
    try:
        return dataclasses.replace(default, **changes)
    except AsrkitError as exc:
        raise HttpError(400, str(exc)) from None


MAX_HOTWORDS = 2000  # phrases a request may bring


def request_context(recognizer, fields: dict[str, str], search: SearchOptions):
    """The hotword graph of a request's ``hotwords`` field (phrases, one per line, optionally
    <TAB>weight), with the server's own list (--hotwords) if it has one; None without the field."""
    text = fields.get("hotwords", "")
    if not text.strip():
        return None
    from asrkit.search.context import ContextGraph, parse_hotwords

    if search.mode == "greedy":
        raise HttpError(400, "hotwords need mode beam or rescore (greedy search cannot be biased)", param="hotwords")
    try:
        phrases = parse_hotwords(text, recognizer.tokenizer, search.hotword_score, "hotwords")
        if len(phrases) > MAX_HOTWORDS:
            raise HttpError(400, f"at most {MAX_HOTWORDS} hotword phrases per request, not {len(phrases)}",
                            param="hotwords")
        if search.hotwords is not None:  # the server's own list, read once when it started
            phrases = recognizer.context(search).phrases + phrases
    except AsrkitError as exc:
        raise HttpError(400, str(exc), param="hotwords") from None
    boundary = recognizer.tokenizer.boundary
    return ContextGraph(phrases, len(recognizer.tokenizer), boundary.separator, boundary.starts)


__all__ = ["HttpError", "Settings", "error_body", "request_context", "search_from"]
