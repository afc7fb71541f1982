"""CTC forced alignment: the single best path through the CTC topology for a known token sequence.

The label ``y`` is expanded to ``- y1 - y2 - ... - yL -`` (``-`` = blank); a
path may stay on a state, step to the next, or skip a blank between two
different tokens. Viterbi over that graph gives every token's frames; the
frames of the tokens between word separators give word start and end times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asrkit.errors import DecodeError
from asrkit.search.types import as_array


@dataclass
class TokenSpan:
    token: int
    start: int  # first encoder frame (inclusive)
    end: int  # last encoder frame + 1
    log_prob: float  # mean log-posterior of the token over its frames


@dataclass
class WordSpan:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # geometric mean of its tokens' frame posteriors, in [0, 1]


def forced_align(log_probs, tokens: list[int], blank_id: int = 0) -> tuple[list[TokenSpan], float]:
    """Best CTC alignment of ``tokens`` to ``log_probs`` (T, V) (a numpy array or a torch tensor):
    the token spans and the path's log-probability.

    Raises DecodeError when the label cannot fit (T shorter than the tokens plus
    the blanks needed between repeats).
    """
    lp = as_array(log_probs, np.float32)
    num_frames = lp.shape[0]
    if np.isnan(lp).any():
        raise DecodeError("log-probabilities contain NaN")
    needed = len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    if needed > num_frames:
        raise DecodeError(f"{len(tokens)} tokens need {needed} frames, the utterance has {num_frames}")
    if not tokens:
        return [], float(lp[:, blank_id].sum())
    states = np.full(2 * len(tokens) + 1, blank_id, dtype=np.int64)
    states[1::2] = tokens
    num_states = states.size
    # a skip from s-2 to s is allowed into a token that differs from the token two states back
    can_skip = np.zeros(num_states, dtype=bool)
    can_skip[3::2] = states[3::2] != states[1:-2:2]
    score = np.full(num_states, -math.inf, dtype=np.float32)
    score[0] = lp[0, blank_id]
    score[1] = lp[0, states[1]]
    back = np.zeros((num_frames, num_states), dtype=np.int8)  # 0 stay, 1 step, 2 skip
    emit = lp[:, states]  # (T, S)
    moves = np.full((3, num_states), -math.inf, dtype=np.float32)
    for t in range(1, num_frames):
        moves[0] = score
        moves[1, 1:] = score[:-1]
        moves[2, 2:] = np.where(can_skip[2:], score[:-2], -math.inf)
        choice = moves.argmax(0)
        back[t] = choice
        score = moves[choice, np.arange(num_states)] + emit[t]
    # end in the last token or the final blank
    final = 2 * len(tokens) if score[-1] >= score[-2] else 2 * len(tokens) - 1
    total = float(score[final])
    path = [0] * num_frames
    state = final
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans: list[TokenSpan] = []
    for t, s in enumerate(path):
        if s % 2 == 0:
            continue
        index = s // 2
        if len(spans) <= index:
            spans.append(TokenSpan(tokens[index], t, t + 1, 0.0))
        spans[index].end = t + 1
    for span, index in zip(spans, range(len(spans))):
        frames = lp[span.start:span.end, span.token]
        span.log_prob = float(frames.mean())
    return spans, total


def word_spans(spans: list[TokenSpan], tokenizer, seconds_per_frame: float) -> list[WordSpan]:
    """Group token spans into words where the tokenizer says words begin and end (a separator
    token, or a word-start piece); times in seconds."""
    tokens = [span.token for span in spans]
    words: list[WordSpan] = []
    for positions in tokenizer.split_words(tokens):
        members = [spans[p] for p in positions]
        confidence = math.exp(sum(s.log_prob for s in members) / len(members))
        words.append(WordSpan(tokenizer.decode([s.token for s in members]), members[0].start * seconds_per_frame,
                              members[-1].end * seconds_per_frame, confidence))
    return words


__all__ = ["TokenSpan", "WordSpan", "forced_align", "word_spans"]
