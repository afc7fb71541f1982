"""Streaming recognition: audio in as it arrives, partial results after every chunk, final results at
the end of each utterance.

A ``StreamingSession`` chains the streaming parts: features of the samples so far
(``data.features.StreamingFeatures``), the encoder chunk by chunk with its state
(``AsrModel.forward_chunk``), and the search advanced frame by frame
(``search.prefix.PrefixSearch``; greedy keeps the log-probs), the encoder being the
recognizer's backend (a checkpoint's torch model, or a bundle's streaming graph on ONNX
Runtime: this module imports no torch); at an utterance's end the
attention decoder, if the model has one, rescores the n-best once (two passes, as in WeNet).
Without endpointing a stream is one utterance, and its final result is what ``transcribe``
gives for the whole file. With ``EndpointRules`` (k2 and sherpa's rules) trailing silence or
length ends an utterance: its final result comes out, the encoder and the search start
again, and times stay those of the whole stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asrkit.data.audio import StreamResampler, leading_zeros
from asrkit.data.features import StreamingFeatures
from asrkit.errors import ConfigError, DecodeError
from asrkit.model.stream_plan import merge_states, split_state, state_signature
from asrkit.recognize.align import WordSpan
from asrkit.search.greedy import greedy_search
from asrkit.search.options import SearchOptions
from asrkit.search.prefix import PrefixSearch
from asrkit.search.rescore import attention_rescore
from asrkit.search.types import Hypothesis


@dataclass(frozen=True)
class EndpointRules:
    """When an utterance ends (seconds; "silence" = frames whose most probable token is the blank)."""

    silence_after_speech: float = 1.2  # trailing silence once something was decoded
    silence_alone: float = 2.4  # silence with nothing decoded: dropped, the stream goes on
    max_utterance: float = 20.0  # an utterance this long ends whatever it holds

    def __post_init__(self) -> None:
        for key in ("silence_after_speech", "silence_alone", "max_utterance"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"endpoint.{key} must be a positive number of seconds, not {value}")


@dataclass
class StreamResult:
    text: str
    hypothesis: Hypothesis  # timesteps: encoder frames from the stream's start
    start: float  # seconds from the stream's start (its first sample, digital silence included)
    end: float
    final: bool
    words: list[WordSpan] | None = None


class StreamingSession:
    """One stream through a ``Recognizer``'s streaming model: ``accept(samples)`` (mono float32 at
    ``rate``, by default the model's) returns the results the new audio produced (a partial after each chunk, a
    final at each endpoint), ``finish()`` the last final. ``chunk_ms`` is the encoder's chunk (a
    whole number of its frames); the algorithmic latency is that plus the model's lookahead."""

    def __init__(self, recognizer, search: SearchOptions | None = None, chunk_ms: float = 320.0,
                 endpoint: EndpointRules | None = None, with_words: bool = False, context=None,
                 rate: int | None = None) -> None:
        """``context``: a hotword graph of this stream's own (a server request's); else
        ``search.hotwords``' graph, if any. ``rate``: the audio's sample rate, if not the model's
        (resampled as it comes, sample for sample as ``transcribe`` resamples the whole file)."""
        self.recognizer, self.backend = recognizer, recognizer.backend
        self.context = context
        self.search = search or SearchOptions()
        if self.search.mode == "rescore" and recognizer.decoder is None:
            raise DecodeError(f"{recognizer.path} has no attention decoder: use --mode greedy or beam")
        cfg = recognizer.config
        frame_ms = cfg.feature.frame_shift_ms * cfg.model.time_reduction
        frames = chunk_ms / cfg.feature.frame_shift_ms
        if chunk_ms <= 0 or abs(chunk_ms / frame_ms - round(chunk_ms / frame_ms)) > 1e-6:
            raise DecodeError(f"--chunk-ms {chunk_ms:g} is not a whole number of the model's {frame_ms:g} ms "
                              f"frames; use e.g. {4 * frame_ms:g}, {8 * frame_ms:g} or {16 * frame_ms:g}")
        self.chunk_frames = int(round(frames))
        self.backend.stream_start()  # a model that cannot stream says so now
        self.features = StreamingFeatures(cfg.feature)
        self.endpoint, self.with_words = endpoint, with_words
        self.seconds_per_frame = recognizer.seconds_per_frame
        self.lm, self.lexicon = recognizer.word_resources(self.search)
        self.pending = np.zeros((0, cfg.feature.dim), dtype=np.float32)  # features short of a chunk
        self.skipped, self.heard = 0, False  # digital silence before the first sound (samples); any sound yet
        self.rate = rate or recognizer.sample_rate
        self.resample = StreamResampler(self.rate, recognizer.sample_rate)
        self.frames = 0  # encoder frames of the stream so far
        self.finals = 0  # utterances ended by an endpoint
        self._start_utterance()

    def _start_utterance(self) -> None:
        self.state = self.backend.stream_start()
        self.start_frame = self.frames
        self.log_probs: list[np.ndarray] = []
        self.enc: list = []
        self.silent = 0  # trailing encoder frames whose best token is the blank
        self.spoke = False
        self.prefix = None
        if self.search.mode != "greedy":
            opts = self.search
            boundary = self.recognizer.tokenizer.boundary
            self.prefix = PrefixSearch(1, len(self.recognizer.tokenizer), opts.beam, opts.beam_keeps,
                                       blank_id=self.recognizer.tokenizer.blank_id, lm=self.lm,
                                       token_min_logp=opts.token_min_logp, lexicon=self.lexicon,
                                       space_id=boundary.separator, word_starts=boundary.starts,
                                       context=self.context or self.recognizer.context(opts))

    def accept(self, samples: np.ndarray) -> list[StreamResult]:
        self.feed(samples)
        results = []
        while (chunk := self.take_chunk()) is not None:
            results += self.consume(*self.backend.stream_step(chunk, self.state, False))
        return results

    def feed(self, samples: np.ndarray) -> None:
        """New audio's features, held until they fill a chunk (``take_chunk``). Digital silence (exact
        zeros) before the first sound is counted, not heard, as ``transcribe`` does for a file: a
        browser's microphone opens with 10-20 ms of it, and the page's stream and the file it plays
        are then heard from the same sample."""
        if not self.heard:
            skip = leading_zeros(samples)
            self.skipped += skip
            if skip == len(samples):
                return
            self.heard, samples = True, samples[skip:]
        self.pending = np.concatenate([self.pending, self.features.accept(self.resample(samples))])

    @property
    def offset(self) -> float:
        """Seconds of digital silence skipped at the stream's start (added to every time)."""
        return self.skipped / self.rate

    def take_chunk(self) -> np.ndarray | None:
        """The next whole chunk of (normalised) features for the encoder, or None: the caller runs the
        encoder on it (alone, or batched with other streams: ``step_streams``) and hands the result
        to ``consume``."""
        if len(self.pending) < self.chunk_frames:
            return None
        chunk, self.pending = self.pending[:self.chunk_frames], self.pending[self.chunk_frames:]
        return self.recognizer.cmvn(chunk).astype(np.float32)

    def finish(self) -> list[StreamResult]:
        """The end of the stream: the last features and frames, and the last utterance's final result
        (none when an endpoint ended the last words and only silence came after; an empty one for a
        stream of nothing but digital silence, which ``transcribe`` does not decode either)."""
        if not self.heard:
            start = self.offset
            return [StreamResult("", Hypothesis([], 0.0, []), start, start, True, [] if self.with_words else None)]
        tail = self.features.accept(self.resample(np.zeros(0, np.float32), last=True))
        self.pending = np.concatenate([self.pending, tail, self.features.finish()])
        chunk, self.pending = self.pending, self.pending[:0]
        return self._run(chunk, final=True)

    def _run(self, feats: np.ndarray, final: bool) -> list[StreamResult]:
        step = self.backend.stream_step(self.recognizer.cmvn(feats).astype(np.float32), self.state, final)
        return self.consume(*step, final=final)

    def consume(self, log_probs: np.ndarray, enc, state, final: bool = False) -> list[StreamResult]:
        """A chunk's encoder output (its CTC log-probs (t', V), frames and the new state) through the
        search and the endpoint rules: the results it gives."""
        self.state = state
        self.enc.append(enc)
        self.log_probs.append(log_probs)
        self.frames += len(log_probs)
        if self.prefix is not None:
            self.prefix.advance(log_probs[None])
        for best in log_probs.argmax(-1):
            self.silent = self.silent + 1 if best == self.recognizer.tokenizer.blank_id else 0
            self.spoke = self.spoke or best != self.recognizer.tokenizer.blank_id
        if final:  # the stream's end: its last utterance, unless an endpoint left nothing after it
            result = self._final()
            return [result] if result.text or not self.finals else []
        ended = self._endpoint()
        if ended == "drop":
            self._flush_encoder()
            self._start_utterance()
            return []
        if ended == "end":
            self._flush_encoder()
            result = self._final()
            self.finals += 1
            self._start_utterance()
            return [result]
        return [self._partial()]

    def _endpoint(self) -> str | None:
        if self.endpoint is None:
            return None
        seconds = self.seconds_per_frame
        if not self.spoke and self.silent * seconds >= self.endpoint.silence_alone:
            return "drop"
        if self.spoke and self.silent * seconds >= self.endpoint.silence_after_speech:
            return "end"
        if (self.frames - self.start_frame) * seconds >= self.endpoint.max_utterance:
            return "end"
        return None

    def _flush_encoder(self) -> None:
        """The encoder's held frames (its lookahead) at an endpoint, into the search."""
        empty = np.zeros((0, self.recognizer.config.feature.dim), np.float32)
        log_probs, enc, self.state = self.backend.stream_step(empty, self.state, final=True)
        self.enc.append(enc)
        self.log_probs.append(log_probs)
        self.frames += len(log_probs)
        if self.prefix is not None and len(log_probs):
            self.prefix.advance(log_probs[None])

    def _utterance_log_probs(self) -> np.ndarray:
        return np.concatenate(self.log_probs) if self.log_probs else np.zeros((0, len(self.recognizer.tokenizer)))

    def _partial(self) -> StreamResult:
        if self.prefix is not None:
            hyp = self.prefix.partial()[0]
        else:
            log_probs = self._utterance_log_probs()
            hyp = greedy_search(log_probs[None], np.array([len(log_probs)]))[0]
        return self._result(hyp, final=False)

    def _final(self) -> StreamResult:
        log_probs = self._utterance_log_probs()
        if self.prefix is None:
            hyp = greedy_search(log_probs[None], np.array([len(log_probs)]))[0]
        else:
            nbest = self.prefix.finish()
            if self.search.mode == "rescore":
                enc = self.backend.concat_enc(self.enc)
                nbest = attention_rescore(self.recognizer.decoder, enc, np.array([enc.shape[1]]), nbest,
                                          self.search.ctc_weight)
            hyp = nbest[0][0]
        return self._result(hyp, final=True, log_probs=log_probs)

    def _result(self, hyp: Hypothesis, final: bool, log_probs: np.ndarray | None = None) -> StreamResult:
        shift = self.start_frame
        skipped = self.offset  # the digital silence before the stream's first sound
        steps = shift + int(round(skipped / self.seconds_per_frame))
        absolute = Hypothesis(hyp.tokens, hyp.score, [t + steps for t in hyp.timesteps], hyp.ctc_score,
                              hyp.lm_score, hyp.att_score)
        start, end = skipped + shift * self.seconds_per_frame, skipped + self.frames * self.seconds_per_frame
        words = None
        if final and self.with_words and len(log_probs) and hyp.tokens:
            offset = skipped + shift * self.seconds_per_frame
            words = [WordSpan(w.word, w.start + offset, w.end + offset, w.confidence)
                     for w in self.recognizer.align_words(None, hyp.tokens, log_probs)]
        elif final and self.with_words:
            words = []
        return StreamResult(self.recognizer.tokenizer.decode(hyp.tokens), absolute, start, end, final, words)


def step_streams(backend, chunks: list[np.ndarray], states: list) -> list[tuple]:
    """One encoder step for several streams (each one chunk of equal length, its own state), batched:
    streams whose states agree (``state_signature``) go through the encoder as one batch, and come
    back as each stream's (log_probs, enc, state), in order, as ``backend.stream_step`` gives them."""
    groups: dict[tuple, list[int]] = {}
    for index, state in enumerate(states):
        key = (state_signature(state, backend.absolute_position), chunks[index].shape)
        groups.setdefault(key, []).append(index)
    out: list = [None] * len(states)
    for rows in groups.values():
        before = [states[i] for i in rows]
        merged = merge_states(before, backend.cat) if len(rows) > 1 else before[0]
        log_probs, enc, merged = backend.stream_step_many(np.stack([chunks[i] for i in rows]), merged, False)
        split = split_state(merged, before) if len(rows) > 1 else [merged]
        for k, index in enumerate(rows):
            out[index] = (log_probs[k], enc[k:k + 1], split[k])
    return out


__all__ = ["EndpointRules", "StreamResult", "StreamingSession", "step_streams"]
