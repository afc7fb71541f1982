"""Loading a trained model from its checkpoint or export bundle alone, and running it on audio or data dirs.

Torch-free: a checkpoint's model comes through ``asrkit.recognize.torch_backend``, imported only
when a checkpoint is given, so that a bundle is transcribed with no PyTorch installed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from asrkit.data.audio import input_warnings, leading_zeros, read_audio, resample
from asrkit.data.datadir import DataDir
from asrkit.data.featstore import FeatureStore, compute_missing, is_foreign
from asrkit.data.features import compute_features
from asrkit.errors import AudioError, CheckpointError, DecodeError, LmError
from asrkit.progress import track
from asrkit.recognize.align import WordSpan, forced_align, word_spans
from asrkit.recognize.bundle import OnnxBackend, is_bundle
from asrkit.recognize.longform import split_on_silence
from asrkit.search.context import ContextGraph, read_hotwords, read_utterance_hotwords
from asrkit.search.ctc import search_batch
from asrkit.search.lexicon import Lexicon
from asrkit.search.lm import ArpaLM, LmFusion
from asrkit.search.options import SearchOptions
from asrkit.search.rescore import attention_rescore
from asrkit.search.types import Hypothesis
from asrkit.tokenizer import Tokenizer


@dataclass
class Result:
    key: str
    text: str
    hypothesis: Hypothesis | None  # None when the file failed
    words: list[WordSpan] | None = None  # with times, when asked for
    error: str | None = None  # why the file could not be transcribed (a one-line reason naming it)


log = logging.getLogger("asrkit")


class Recognizer:
    """Everything needed to decode, rebuilt from one checkpoint or one export bundle: no model flags
    repeated. The acoustic model is the one seam between the two (``acoustic``): a torch model, or
    a bundle's graph on ONNX Runtime; features, search, alignment and formats are common."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", threads: int = 0) -> None:
        """``threads``: the acoustic model's (0: its library's default)."""
        self._search_cache: dict = {}
        if not Path(checkpoint).exists():  # before torch is needed to say so
            raise CheckpointError(f"checkpoint {checkpoint} does not exist")
        self.is_bundle = is_bundle(checkpoint)
        if self.is_bundle:  # ONNX Runtime's CPU provider, whatever ``device`` says
            self.backend = OnnxBackend.open(checkpoint, threads)
        else:
            from asrkit.recognize.torch_backend import TorchBackend

            self.backend = TorchBackend(checkpoint, device, threads)
        self.path, self.config = self.backend.path, self.backend.config
        self.tokenizer, self.cmvn = self.backend.tokenizer, self.backend.cmvn
        self.external_features = self.backend.external_features

    @property
    def model(self):
        """The torch model of a checkpoint (None for a bundle)."""
        return self.backend.model

    @property
    def device(self):
        """Where a checkpoint's model runs (a torch device; "cpu" for a bundle)."""
        return getattr(self.backend, "device", "cpu")

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def decoder(self):
        """The attention decoder that rescoring calls: the torch module, or the bundle's graphs."""
        return self.backend.decoder

    def acoustic(self, feats: np.ndarray, feat_lens: np.ndarray):
        """(log_probs (B, T', V) and out_lens (B,), numpy arrays; the encoder output, in the form the
        decoder reads: a tensor, or a numpy array from a bundle) for CMVN-normalised padded
        features (B, T, F) and lengths (B,): the one seam between a checkpoint and a bundle."""
        return self.backend.run(feats, feat_lens)

    def lm_fusion(self, search: SearchOptions):
        """The LM scorer for ``search`` (None without --lm), loaded once per file and weights."""
        if search.lm is None:
            return None
        key = (str(search.lm), search.lm_weight, search.word_bonus)
        if key not in self._search_cache:
            lm = ArpaLM.load(search.lm)
            fusion = LmFusion(lm, self.tokenizer, search.lm_weight, search.word_bonus)
            if fusion.spellable == 0:
                raise LmError(f"{search.lm}: none of its {len(lm.words)} words can be spelt with the model's "
                              f"{len(self.tokenizer)} tokens (another language or letter case?)")
            log.info("LM %s: %d-gram, %d of %d words spellable, weight %g, word bonus %g", search.lm, lm.order,
                     fusion.spellable, len(lm.words), search.lm_weight, search.word_bonus)
            self._search_cache[key] = fusion
        return self._search_cache[key]

    def word_resources(self, search: SearchOptions):
        """(LM scorer, lexicon) of ``search``, each None when not asked for; loaded once and kept,
        so that a bad --lm, --lexicon or --hotwords fails before any audio is read."""
        self.context(search)
        return self.lm_fusion(search), self.lexicon(search)

    def context(self, search: SearchOptions):
        """The hotwords' context graph for ``search`` (None without --hotwords), built once per file
        and score, for the model's tokens and word boundary."""
        if search.hotwords is None:
            return None
        key = ("hotwords", str(search.hotwords), search.hotword_score)
        if key not in self._search_cache:
            phrases = read_hotwords(search.hotwords, self.tokenizer, search.hotword_score)
            self._warn_outside_lexicon(phrases, search, str(search.hotwords))
            boundary = self.tokenizer.boundary
            self._search_cache[key] = ContextGraph(phrases, len(self.tokenizer), boundary.separator, boundary.starts)
            log.info("hotwords %s: %d phrases, %g per token", search.hotwords, len(phrases), search.hotword_score)
        return self._search_cache[key]

    def _warn_outside_lexicon(self, phrases, search: SearchOptions, source: str) -> None:
        """Hotwords with a word the --lexicon lacks can never be recognised: said once, with a count."""
        lexicon = self.lexicon(search)
        if lexicon is None:
            return
        words = {w for phrase in phrases for w in self.tokenizer.decode(list(phrase.tokens)).split()}
        missing = sorted(w for w in words if not lexicon.has(self.tokenizer.encode(w)))
        if missing:
            log.warning("%s: %d hotword(s) are not in --lexicon %s and can never be recognised (e.g. %s)", source,
                        len(missing), search.lexicon, ", ".join(missing[:3]))

    def lexicon(self, search: SearchOptions):
        """The word constraint for ``search`` (None without --lexicon), loaded once per file."""
        if search.lexicon is None:
            return None
        key = ("lexicon", str(search.lexicon))
        if key not in self._search_cache:
            lexicon = Lexicon.load(search.lexicon, self.tokenizer)
            log.info("lexicon %s: %d words spellable%s", search.lexicon, lexicon.size,
                     f", {len(lexicon.skipped)} left out (characters the model lacks)" if lexicon.skipped else "")
            self._search_cache[key] = lexicon
        return self._search_cache[key]

    @property
    def sample_rate(self) -> int:
        return self.config.feature.sample_rate

    @property
    def seconds_per_frame(self) -> float:
        """Duration of one encoder frame (the CTC output rate)."""
        return self.config.feature.frame_shift_ms / 1000 * self.config.model.time_reduction

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """CTC log-posteriors (T', V) of one utterance's raw (un-normalised) features."""
        x = self.cmvn(feats).astype(np.float32)[None]
        log_probs, out_lens, _ = self.acoustic(x, np.array([x.shape[1]]))
        return log_probs[0, :int(out_lens[0])]

    def align_words(self, feats: np.ndarray, tokens: list[int], log_probs: np.ndarray | None = None) -> list[WordSpan]:
        """Word start/end times (seconds) and confidences: CTC forced alignment of ``tokens``
        (to ``log_probs`` when the model has already run on ``feats``)."""
        log_probs = self.log_probs(feats) if log_probs is None else log_probs
        spans, _ = forced_align(log_probs, tokens, self.tokenizer.blank_id)
        return word_spans(spans, self.tokenizer, self.seconds_per_frame)

    def decode_features(self, feats: list[np.ndarray], search: SearchOptions | None = None,
                        batch_size: int = 32, keep_log_probs: list | None = None,
                        contexts: list | None = None) -> list[list[Hypothesis]]:
        """n-best hypotheses (best first) for raw (un-normalised) feature matrices, in input order.

        ``keep_log_probs``, a list, receives each utterance's CTC log-posteriors (T', V) in
        input order, for alignment without running the model again. ``contexts``: each
        utterance's own hotword graph (None: ``search.hotwords``' graph, if any)."""
        search = search or SearchOptions()
        if search.mode == "rescore" and not self.has_decoder:
            raise DecodeError(f"{self.path} has no attention decoder (trained with model.ctc_weight=1): "
                              "use --mode greedy or beam, or train with model.ctc_weight < 1")
        fusion, lexicon = self.word_resources(search)
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
        hyps: list[list[Hypothesis] | None] = [None] * len(feats)
        kept: list[np.ndarray | None] = [None] * len(feats)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            matrices = [self.cmvn(feats[i]).astype(np.float32) for i in idx]
            lens = np.array([m.shape[0] for m in matrices], dtype=np.int64)
            padded = np.zeros((len(matrices), int(lens.max()), matrices[0].shape[1]), dtype=np.float32)
            for row, matrix in enumerate(matrices):
                padded[row, :len(matrix)] = matrix
            log_probs, out_lens, enc = self.acoustic(padded, lens)
            context = self.context(search)
            if contexts is not None and any(contexts[i] is not None for i in idx):
                context = [contexts[i] if contexts[i] is not None else context for i in idx]
            found = search_batch(log_probs, out_lens, search, blank_id=self.tokenizer.blank_id,
                                 boundary=self.tokenizer.boundary, lm=fusion, lexicon=lexicon, context=context)
            if search.mode == "rescore":
                found = attention_rescore(self.decoder, enc, out_lens, found, search.ctc_weight)
                found = [hyps[:search.nbest] for hyps in found]
            for row, (i, nbest) in enumerate(zip(idx, found)):
                hyps[i] = nbest
                if keep_log_probs is not None:
                    kept[i] = log_probs[row, :int(out_lens[row])]
        if keep_log_probs is not None:
            keep_log_probs.extend(kept)
        return hyps  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str | Path], search: SearchOptions | None = None,
                         with_words: bool = False, max_seconds: float = 20.0) -> list[Result]:
        """Transcripts of audio files, in order; the first file that cannot be read raises its
        ``AudioError`` (``transcripts`` goes on past it instead)."""
        results = []
        for result in self.transcripts(paths, search, with_words, max_seconds):
            if result.error is not None:
                raise AudioError(result.error)
            results.append(result)
        return results

    def transcripts(self, paths: Iterable[str | Path], search: SearchOptions | None = None,
                    with_words: bool = False, max_seconds: float = 20.0, batch_size: int = 32) -> Iterator[Result]:
        """Transcripts of audio files, in input order, as each batch of them is decoded: memory holds
        one batch of segments (about ``batch_size``), however many files there are. A file that
        cannot be read or is too short yields a ``Result`` with ``error`` set (a one-line reason
        naming it), and the others are transcribed all the same. A file longer than ``max_seconds``
        is cut at its pauses (``longform.split_on_silence``) and its segments decoded as utterances."""
        if self.external_features:
            raise DecodeError(f"{self.path} was trained on foreign features (a feats.scp asrkit did not write), "
                              "which asrkit cannot compute from audio; decode a data dir with such a feats.scp")
        pending: list[tuple[str, list[np.ndarray], list[float]]] = []  # read, not yet decoded
        for path in paths:
            try:
                feats, offsets = self._segments(path, max_seconds)
            except AudioError as exc:
                yield from self.decode_segments(pending, search, with_words)
                pending = []
                message = str(exc)
                yield Result(str(path), "", None, error=message if str(path) in message else f"{path}: {message}")
                continue
            pending.append((str(path), feats, offsets))
            if sum(len(f) for _, f, _ in pending) >= batch_size:
                yield from self.decode_segments(pending, search, with_words)
                pending = []
        yield from self.decode_segments(pending, search, with_words)

    def _segments(self, path: str | Path, max_seconds: float) -> tuple[list[np.ndarray], list[float]]:
        """A file's features, one matrix per segment, and each segment's start (seconds)."""
        samples, file_rate = read_audio(path)
        return self.segments(samples, file_rate, str(path), max_seconds)

    def segments(self, samples: np.ndarray, rate: int, name: str,
                 max_seconds: float = 20.0) -> tuple[list[np.ndarray], list[float]]:
        """Audio's features (mono float32 ``samples`` at ``rate``; ``name`` in messages), one matrix
        per segment of at most ``max_seconds`` cut at pauses, and each segment's start (seconds)."""
        found = input_warnings(samples, rate, self.sample_rate)
        if found:  # once per file, one line; it is transcribed all the same
            log.warning("%s: %s; the transcript may suffer", name, "; ".join(found))
        skip = leading_zeros(samples)  # digital silence at the start is not heard (as in a stream)
        feats, offsets = [], []
        if skip == len(samples):  # nothing but digital silence: nothing to decode, no words
            return feats, offsets
        samples = resample(samples[skip:], rate, self.sample_rate)
        for start, end in split_on_silence(samples, self.sample_rate, max_seconds):
            try:
                feats.append(compute_features(samples[start:end], self.config.feature))
            except AudioError as exc:
                raise AudioError(f"{name}: {exc}") from None
            offsets.append(skip / rate + start / self.sample_rate)
        return feats, offsets

    def decode_segments(self, files: list[tuple[str, list[np.ndarray], list[float]]], search: SearchOptions | None,
                        with_words: bool, contexts: list | None = None) -> Iterator[Result]:
        """Decode the segments of ``files`` ((name, features, offsets), as ``segments`` gives) as one
        set of utterances, batched, and join each file's back up. ``contexts``: each file's own
        hotword graph (a server request's), or None."""
        if not files:
            return
        feats = [f for _, segments, _ in files for f in segments]
        if not feats:  # digital silence only
            yield from (self._joined(key, [], [], [] if with_words else None) for key, _, _ in files)
            return
        per_segment = None if contexts is None else [c for c, (_, segments, _) in zip(contexts, files)
                                                      for _ in segments]
        log_probs: list[np.ndarray] = []
        hyps = self.decode_features(feats, search, keep_log_probs=log_probs if with_words else None,
                                    contexts=per_segment)
        first = 0
        for key, segments, offsets in files:
            pieces = range(first, first + len(segments))
            first += len(segments)
            yield self._joined(key, [hyps[i][0] for i in pieces], offsets,
                               [(feats[i], log_probs[i]) for i in pieces] if with_words else None)

    def _joined(self, key: str, best: list[Hypothesis], offsets: list[float], aligned) -> Result:
        """One file's result from its segments' best hypotheses (word times shifted to the file's
        clock when ``aligned``, the segments' (features, log-probs), is given)."""
        tokens, score, steps = [], 0.0, []
        words: list[WordSpan] = []
        for i, hyp in enumerate(best):
            shift = int(round(offsets[i] / self.seconds_per_frame))
            joined = self.tokenizer.join(tokens, hyp.tokens)  # segments meet between words
            steps.extend([shift] * (len(joined) - len(tokens) - len(hyp.tokens)))
            tokens = joined
            steps.extend(shift + t for t in hyp.timesteps)
            score += hyp.score
            if aligned is not None:
                feats, log_probs = aligned[i]
                words.extend(WordSpan(w.word, w.start + offsets[i], w.end + offsets[i], w.confidence)
                             for w in self.align_words(feats, hyp.tokens, log_probs))
        hypothesis = Hypothesis(tokens, score, steps) if len(best) != 1 else best[0]
        return Result(key, self.tokenizer.decode(hypothesis.tokens), hypothesis,
                      words if aligned is not None else None)

    def decode_data_dir(self, data_dir: str | Path, search: SearchOptions | None = None) -> dict[str, list[Hypothesis]]:
        """n-best hypotheses for every utterance of a data dir; with a ``context`` file there (lines
        ``utt-id phrase[<TAB>weight]``) and a beam search, each utterance is biased towards its own
        phrases (and ``search.hotwords``, if any)."""
        search = search or SearchOptions()
        data = DataDir.load(data_dir)
        feats = self.features_of(data)
        ids = data.utt_ids()
        contexts = self.utterance_contexts(data, search)
        hyps: list[list[Hypothesis]] = []
        chunk = 256  # utterances read from the arks at a time: memory stays flat in corpus size
        for start in track(range(0, len(ids), chunk), "decoding"):
            part = ids[start:start + chunk]
            hyps.extend(self.decode_features([feats[u] for u in part], search,
                                             contexts=None if contexts is None else [contexts.get(u) for u in part]))
        return dict(zip(ids, hyps))

    def utterance_contexts(self, data: DataDir, search: SearchOptions) -> dict | None:
        """Each utterance's hotword graph from the data dir's ``context`` file (None without one, or
        for greedy search, which cannot be biased: said once)."""
        path = data.path / "context"
        if not path.is_file():
            return None
        if search.mode == "greedy":
            log.warning("%s: greedy search cannot be biased; the hotwords are left out (use --mode beam)", path)
            return None
        own, unknown = read_utterance_hotwords(path, self.tokenizer, search.hotword_score, set(data.utt_ids()))
        if unknown:
            log.warning("%s: %d line(s) name utterances that %s does not hold; left out", path, unknown, data.path)
        shared = self.context(search).phrases if search.hotwords else []  # read once, kept with its graph
        boundary = self.tokenizer.boundary
        return {utt: ContextGraph(shared + phrases, len(self.tokenizer), boundary.separator, boundary.starts)
                for utt, phrases in own.items()}

    def features_of(self, data: DataDir):
        """The data dir's feature store for this model (computed and stored where missing or stale);
        a model trained on foreign features decodes only data dirs with a foreign feats.scp."""
        foreign = is_foreign(data.path)
        if self.external_features and not foreign:
            raise DecodeError(f"{self.path} was trained on foreign features: {data.path} needs a feats.scp of the "
                              "same kind (asrkit cannot compute them)")
        if foreign and not self.external_features:
            raise DecodeError(f"{data.path} has a feats.scp asrkit did not write, but {self.path} was trained on "
                              "asrkit's own features; move that feats.scp away to decode from the audio")
        store: FeatureStore = compute_missing(data, self.config.feature)
        return store


def transcribe(checkpoint: str | Path, paths: list[str | Path], search: SearchOptions | None = None, *,
               with_words: bool = False, device: str = "cpu") -> list[Result]:
    """Load the model of ``checkpoint`` (an experiment dir or a .pt file) and transcribe audio files
    with it: ``Recognizer(checkpoint, device).transcribe_files(paths, search, with_words)``. To
    transcribe more than once, keep a ``Recognizer``: loading is the slow part."""
    return Recognizer(checkpoint, device).transcribe_files(list(paths), search, with_words=with_words)


def write_hyp(hyps: dict[str, str], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in sorted(hyps.items())), encoding="utf-8")


def write_nbest(nbest: dict[str, list[Hypothesis]], tokenizer: Tokenizer, path: str | Path) -> None:
    """One line per hypothesis: ``<utt> <rank> <score> <text>``, best first.

    The score is the one the search ranked by (CTC, + LM when fused, + attention
    when rescored); the parts are in ``hyp.ctc_score/lm_score/att_score``.
    """
    lines = []
    for utt in sorted(nbest):
        for rank, hyp in enumerate(nbest[utt], start=1):
            lines.append(f"{utt} {rank} {hyp.score:.4f} {tokenizer.decode(hyp.tokens)}".rstrip())
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Recognizer", "Result", "transcribe", "write_hyp", "write_nbest"]
