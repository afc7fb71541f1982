"""Experiment configuration: small dataclasses, YAML I/O, dotted overrides.

A config file has up to three sections, each optional::

    feature: {kind: fbank, sample_rate: 8000, num_mel_bins: 40}
    model:   {rnn_type: lstm, num_layers: 3, hidden_size: 256}
    train:   {epochs: 30, lr: 0.002, spec_augment: {num_time_masks: 2}}

Unknown keys and values of the wrong type are errors that name the key and
the file. Overrides use dotted paths: ``model.hidden_size=320``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asrkit.errors import ConfigError

# What a resumed run may change (``asrkit train --resume --set ...``); anything else would make it another run.
RESUMABLE_KEYS = ("train.epochs", "train.max_steps", "train.save_every_steps", "train.num_workers", "train.device",
                  "train.num_threads")  # threads change the speed (and float rounding), not the run


@dataclass
class FeatureConfig:
    kind: str = "fbank"  # fbank | mfcc
    sample_rate: int = 16000
    num_mel_bins: int = 80
    num_ceps: int = 13  # MFCC only
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    fmin: float = 20.0
    # level invariance (asrkit.data.features): "active" scales the waveform so that its loud frames
    # (the 95th percentile of 10 ms frame levels) sit at -20 dBFS before the mel analysis, so a
    # quiet microphone, a hot one and a half-silent stereo downmix give one level; "none" keeps
    # the samples as read (models trained before this key); "running" is the causal form, for
    # streaming (with causal_cmn): the log floor of each frame follows the peak level of the frames
    # up to it, which decays by e^-1 every 3 s (asrkit.data.features.running_level)
    level_norm: str = "active"
    utterance_cmn: bool = True  # subtract each utterance's own mean (per dimension) after the log
    # instead, a running mean: of the frames so far, over the last 3 s once there are that many;
    # causal, so it streams (a streaming model's; asrkit.data.features.running_mean)
    causal_cmn: bool = False

    @property
    def dim(self) -> int:
        return self.num_ceps if self.kind == "mfcc" else self.num_mel_bins

    def check(self) -> None:
        if self.kind not in ("fbank", "mfcc"):
            raise ConfigError(f"feature.kind must be 'fbank' or 'mfcc', not {self.kind!r}")
        if self.level_norm not in ("active", "running", "none"):
            raise ConfigError(f"feature.level_norm must be 'active', 'running' or 'none', not {self.level_norm!r}")
        if self.utterance_cmn and self.causal_cmn:
            raise ConfigError("feature.utterance_cmn and feature.causal_cmn are two ways to remove the mean: "
                              "choose one (causal_cmn streams)")
        if self.sample_rate <= 0 or self.frame_shift_ms <= 0 or self.frame_length_ms <= 0:
            raise ConfigError("feature.sample_rate and frame sizes must be positive")


@dataclass
class ModelConfig:
    subsampling: str = "stack"  # stack | conv2d (stacking escapes the CTC blank plateau sooner)
    subsampling_factor: int = 4
    conv_channels: int = 32
    rnn_type: str = "lstm"  # lstm | gru | rnn (Elman) | jordan (recurrence through the output)
    bidirectional: bool = True
    num_layers: int = 3
    hidden_size: int = 256
    dropout: float = 0.1
    # pBLSTM (Listen, Attend and Spell): after each of the first N recurrent layers, pairs of
    # consecutive frames are concatenated, halving the frame rate (0: none)
    pyramid_layers: int = 0
    projection_size: int = 0  # BLSTMP (ESPnet): a linear projection + tanh to this size between layers (0: none)
    # DeepSpeech 2's lookahead convolution over the top layer: each frame also hears this many later
    # frames (a unidirectional, streaming model's right context; 0: none)
    lookahead: int = 0
    # joint CTC/attention: loss = ctc_weight * CTC + (1 - ctc_weight) * CE; 1.0 = pure CTC, no decoder
    ctc_weight: float = 1.0
    attention: str = "location"  # location (Chorowski) | additive (Bahdanau)
    attention_dim: int = 128
    decoder_hidden_size: int = 256
    decoder_embed_dim: int = 64
    # a second pass for a streaming model's rescoring (cascaded encoders, Narayanan et al. 2021):
    # bidirectional GRU layers over the encoder output that only the attention decoder reads, so
    # that at the endpoint it rescores with the whole utterance in both directions (0: none)
    decoder_memory_layers: int = 0
    decoder_memory_size: int = 128  # each direction's width
    label_smoothing: float = 0.1

    @property
    def has_decoder(self) -> bool:
        return self.ctc_weight < 1.0

    @property
    def time_reduction(self) -> int:
        """Input frames per encoder frame: subsampling times the pyramid (its one owner; the
        rounding of lengths is the encoder's, ``RNNEncoder.output_lengths``)."""
        return self.layer_time_reduction(self.num_layers - 1)

    def layer_time_reduction(self, layer: int) -> int:
        """Input frames per output frame of recurrent layer ``layer`` (from 0): the subsampling,
        and a halving by each pyramid layer below it."""
        return self.subsampling_factor * 2 ** min(layer, self.pyramid_layers)

    @property
    def layered(self) -> bool:
        """Whether the encoder needs one module per layer (a pyramid or projections between layers)."""
        return self.pyramid_layers > 0 or self.projection_size > 0

    def check(self) -> None:
        if self.subsampling not in ("conv2d", "stack"):
            raise ConfigError(f"model.subsampling must be 'conv2d' or 'stack', not {self.subsampling!r}")
        if self.subsampling == "conv2d" and self.subsampling_factor not in (1, 2, 4, 8):
            raise ConfigError("model.subsampling_factor must be 1, 2, 4 or 8 with conv2d subsampling")
        if self.subsampling_factor < 1:
            raise ConfigError("model.subsampling_factor must be >= 1")
        if self.rnn_type not in ("lstm", "gru", "rnn", "jordan"):
            raise ConfigError(f"model.rnn_type must be lstm, gru, rnn (Elman) or jordan, not {self.rnn_type!r}")
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ConfigError("model.num_layers and model.hidden_size must be >= 1")
        if not 0 <= self.pyramid_layers < self.num_layers:
            raise ConfigError(f"model.pyramid_layers={self.pyramid_layers} is an impossible pyramid: it halves the "
                              f"frame rate between layers, so it must be 0 to num_layers - 1 ({self.num_layers - 1})")
        if self.projection_size < 0:
            raise ConfigError("model.projection_size must be 0 (none) or positive")
        if self.lookahead < 0 or (self.lookahead and self.bidirectional):
            raise ConfigError(f"model.lookahead={self.lookahead}: 0 (none) or a number of frames, for a "
                              "unidirectional encoder (bidirectional: false; a bidirectional one hears the future)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("model.dropout must be in [0, 1)")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ConfigError(f"model.ctc_weight must be in [0, 1] (1 = pure CTC), not {self.ctc_weight}")
        if self.attention not in ("location", "additive"):
            raise ConfigError(f"model.attention must be location or additive, not {self.attention!r}")
        if min(self.attention_dim, self.decoder_hidden_size, self.decoder_embed_dim) < 1:
            raise ConfigError("model.attention_dim, decoder_hidden_size and decoder_embed_dim must be >= 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("model.label_smoothing must be in [0, 1)")
        if self.decoder_memory_layers < 0 or self.decoder_memory_size < 1:
            raise ConfigError("model.decoder_memory_layers must be 0 (none) or more, and decoder_memory_size >= 1")
        if self.decoder_memory_layers and not self.has_decoder:
            raise ConfigError("model.decoder_memory_layers needs an attention decoder (model.ctc_weight < 1)")


@dataclass
class SpecAugmentConfig:
    enabled: bool = True
    num_freq_masks: int = 2
    max_freq_width: int = 8
    num_time_masks: int = 2
    max_time_ratio: float = 0.05  # each time mask at most this share of the utterance


@dataclass
class AugmentConfig:
    """Waveform corruption in training (asrkit.data.augment), each kind drawn per utterance with its
    own probability; an utterance that draws none is read from the feature store as it is."""
    noise_prob: float = 0.15  # additive noise at a random SNR
    snr_min_db: float = 5.0
    snr_max_db: float = 30.0
    noise_dir: str = ""  # folder of noise recordings (any audio format; e.g. MUSAN's noise/); "" = coloured noise
    gain_prob: float = 0.1  # a random gain; samples beyond +-1 are clipped, as a hot input does
    gain_min_db: float = -20.0
    gain_max_db: float = 25.0
    telephone_prob: float = 0.05  # through an 8 kHz channel and back: nothing above 4 kHz
    reverb_prob: float = 0.3  # only with rir_dir or simulated_rirs
    rir_dir: str = ""  # folder of room impulse responses (e.g. RIRS_NOISES/simulated_rirs)
    simulated_rirs: int = 0  # without rir_dir: this many simulated rooms (asrkit.data.rooms), made once per run
    rt60_min: float = 0.2  # seconds: the simulated rooms' reverberation time
    rt60_max: float = 0.9
    rir_distance_min: float = 0.5  # metres from the talker to the microphone in a simulated room
    rir_distance_max: float = 4.0
    babble_prob: float = 0.0  # competing talkers: other training utterances, never the same speaker's
    babble_snr_min_db: float = 5.0
    babble_snr_max_db: float = 20.0
    babble_talkers: int = 3  # 1 to this many talkers at once
    babble_dir: str = ""  # folder of speech recordings (e.g. MUSAN's speech/); "" = the training set
    tempo_prob: float = 0.0  # the same words faster or slower, pitch kept
    tempo_min: float = 0.8
    tempo_max: float = 1.25

    @property
    def enabled(self) -> bool:
        return (self.noise_prob > 0 or self.gain_prob > 0 or self.telephone_prob > 0 or self.reverb_active
                or self.babble_prob > 0 or self.tempo_prob > 0)

    @property
    def reverb_active(self) -> bool:
        return (bool(self.rir_dir) or self.simulated_rirs > 0) and self.reverb_prob > 0

    def check(self) -> None:
        for key in ("noise_prob", "gain_prob", "telephone_prob", "reverb_prob", "babble_prob", "tempo_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"train.augment.{key} must be a probability in [0, 1], not {value}")
        self._check_rooms_and_talkers()
        for low, high in (("snr_min_db", "snr_max_db"), ("gain_min_db", "gain_max_db")):
            a, b = getattr(self, low), getattr(self, high)
            if not (math.isfinite(a) and math.isfinite(b)) or a > b:
                raise ConfigError(f"train.augment.{low}={a} and train.augment.{high}={b} are an impossible "
                                  "range (both finite, min <= max)")
        if self.snr_min_db < -20 or self.snr_max_db > 100:
            raise ConfigError(f"train.augment.snr_min_db/snr_max_db must lie in [-20, 100] dB, not "
                              f"{self.snr_min_db}..{self.snr_max_db}")
        if self.gain_min_db < -80 or self.gain_max_db > 40:
            raise ConfigError(f"train.augment.gain_min_db/gain_max_db must lie in [-80, 40] dB, not "
                              f"{self.gain_min_db}..{self.gain_max_db}")

    def _check_rooms_and_talkers(self) -> None:
        if self.simulated_rirs < 0:
            raise ConfigError(f"train.augment.simulated_rirs must be 0 (none) or more, not {self.simulated_rirs}")
        if self.babble_talkers < 1:
            raise ConfigError(f"train.augment.babble_talkers must be at least 1, not {self.babble_talkers}")
        ranges = (("rt60_min", "rt60_max", 0.05, 3.0, "s"), ("rir_distance_min", "rir_distance_max", 0.1, 20.0, "m"),
                  ("babble_snr_min_db", "babble_snr_max_db", -20.0, 100.0, "dB"),
                  ("tempo_min", "tempo_max", 0.25, 4.0, "x"))
        for low, high, floor, ceiling, unit in ranges:
            a, b = getattr(self, low), getattr(self, high)
            if not (math.isfinite(a) and math.isfinite(b)) or not floor <= a <= b <= ceiling:
                raise ConfigError(f"train.augment.{low}={a} and train.augment.{high}={b} are an impossible range "
                                  f"(min <= max, within {floor:g}..{ceiling:g} {unit})")


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    final_lr_ratio: float = 0.05  # cosine decay ends at lr * final_lr_ratio
    grad_clip: float = 5.0  # max global gradient norm; 0 = no clipping
    accum_grad: int = 1  # batches per optimizer step (gradients summed over them)
    max_frames_per_batch: int = 20000  # input feature frames, padding included
    max_utts_per_batch: int = 64
    max_duration: float = 30.0  # seconds; longer utterances are dropped from training
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision (autocast) on CUDA
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 adds dynamic loss scaling)
    num_threads: int = 0  # torch CPU threads; 0 = leave PyTorch's default
    # DataLoader workers: -1 = auto (0 on CPU, where a worker reading the arks only competes for
    # the cores; 2 on CUDA, so that batches are read and collated while the GPU computes)
    num_workers: int = -1
    save_every_steps: int = 0  # also write last.pt every N steps (0: at the end of each epoch only)
    max_steps: int = 0  # stop after this many optimizer steps, saving last.pt (0: train all epochs)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        self.augment.check()
        if self.epochs < 1:
            raise ConfigError("train.epochs must be >= 1")
        if self.lr <= 0:
            raise ConfigError("train.lr must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, not {self.device!r}")
        if self.amp_dtype not in ("bf16", "fp16"):
            raise ConfigError(f"train.amp_dtype must be bf16 or fp16, not {self.amp_dtype!r}")
        if self.num_workers < -1:
            raise ConfigError("train.num_workers must be -1 (auto), 0 or more")
        if self.grad_clip < 0:
            raise ConfigError(f"train.grad_clip must be 0 (no clipping) or positive, not {self.grad_clip}")
        if self.accum_grad < 1:
            raise ConfigError(f"train.accum_grad must be >= 1, not {self.accum_grad}")
        if self.warmup_steps < 0 or self.save_every_steps < 0 or self.max_steps < 0:
            raise ConfigError("train.warmup_steps, train.save_every_steps and train.max_steps must be >= 0")
        if self.max_frames_per_batch < 1 or self.max_utts_per_batch < 1:
            raise ConfigError("train.max_frames_per_batch and train.max_utts_per_batch must be >= 1")


@dataclass
class TokenizerConfig:
    type: str = "char"  # char (characters and a separator token between words) | sentencepiece (BPE/unigram pieces)
    model_type: str = "bpe"  # sentencepiece: bpe | unigram
    vocab_size: int = 500  # sentencepiece: pieces, <blank> and <unk> included
    # sentencepiece: a tokenizer.model (or the folder 'asrkit tokenizer train' wrote it to);
    # empty: train trains one on its training text and keeps it in the exp dir
    model: str = ""

    def check(self) -> None:
        if self.type not in ("char", "sentencepiece"):
            raise ConfigError(f"tokenizer.type must be 'char' or 'sentencepiece', not {self.type!r}")
        if self.model_type not in ("bpe", "unigram"):
            raise ConfigError(f"tokenizer.model_type must be 'bpe' or 'unigram', not {self.model_type!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"tokenizer.vocab_size must be >= 3 (<blank>, <unk> and a piece), not {self.vocab_size}")


@dataclass
class ExperimentConfig:
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def check(self) -> None:
        self.feature.check()
        self.model.check()
        self.train.check()
        self.tokenizer.check()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, target_type: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field type; ints are accepted for floats."""
    type_name = target_type if isinstance(target_type, str) else target_type.__name__
    if type_name == "bool":
        if isinstance(value, bool):
            return value
    elif type_name == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif type_name == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif type_name == "str":
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - all fields are covered above
        return value
    raise ConfigError(f"{where}: expected {type_name}, got {value!r}")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key {key!r} (known keys: {known})")
        f = fields[key]
        sub = f"{where}.{key}"
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _from_dict(f.default_factory, value, sub)  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(value, f.type, sub)
    return cls(**kwargs)


# What a config saved before a key existed meant by its absence (the key's behaviour then).
# Saved configs (checkpoints, an exp dir's config.yaml, a feature record) hold every key of
# their time, so a missing one is filled with its old meaning, never with today's default.
LEGACY_VALUES: dict[str, dict[str, Any]] = {
    "feature": {"level_norm": "none", "utterance_cmn": False, "causal_cmn": False},
    "train": {"augment": {"noise_prob": 0.0, "gain_prob": 0.0, "telephone_prob": 0.0, "reverb_prob": 0.0}},
}


def with_legacy_values(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict with the keys it predates filled with their old meaning."""
    def fill(node: dict[str, Any], legacy: dict[str, Any]) -> dict[str, Any]:
        out = dict(node)
        for key, value in legacy.items():
            if key not in out:
                out[key] = value
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = fill(out[key], value)
        return out

    return fill(data or {}, LEGACY_VALUES)


def legacy_feature_values(feature: dict[str, Any]) -> dict[str, Any]:
    """A saved feature-config dict with the keys it predates filled (see ``LEGACY_VALUES``)."""
    return {**LEGACY_VALUES["feature"], **feature}


def config_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    cfg = _from_dict(ExperimentConfig, data or {}, source)
    cfg.check()
    return cfg


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config dict (in place)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, _, raw = item.partition("=")
        parts = path.strip().split(".")
        if len(parts) < 2:
            raise ConfigError(f"override {item!r} must name a section and a key, e.g. model.hidden_size=320")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_scalar(raw)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                saved: bool = False) -> ExperimentConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides. ``saved``: the
    file is one asrkit wrote (an exp dir's config.yaml); keys it predates keep their old meaning."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    if saved:
        data = with_legacy_values(data)
    apply_overrides(data, list(overrides or []))
    return config_from_dict(data, source)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
