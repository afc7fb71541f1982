"""What a training run trains on: its features, token table, CMVN statistics and data loaders.

``asrkit.training.trainer.Trainer`` calls these while it sets up; they hold no state of
their own. Features are computed here if missing (one process; under torchrun
they must exist already), the token table and CMVN come from a resumed
checkpoint, an ``--init`` model or the training set, and the loaders batch by
frames (``BucketBatchSampler``), one shard per torchrun process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from asrkit.checkpoint import Checkpoint
from asrkit.config import ExperimentConfig, FeatureConfig
from asrkit.data.augment import Augmenter
from asrkit.data.datadir import DataDir
from asrkit.data.dataset import AsrDataset, BucketBatchSampler, WaveformAugment, collate
from asrkit.data.featstore import FeatureStore, compute_missing, up_to_date
from asrkit.data.features import GlobalCMVN
from asrkit.errors import TrainingError
from asrkit.progress import track
from asrkit.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer, from_checkpoint, train_sentencepiece
from asrkit.training import distributed
from asrkit.training.distributed import DistInfo
from asrkit.training.interrupt import ignore_stop_signals
from asrkit.training.loss import select_trainable

log = logging.getLogger("asrkit")


def features_for_training(data: DataDir, cfg: ExperimentConfig, info: DistInfo, description: str) -> FeatureStore:
    """The data dir's feature store, computing what is missing or stale in a single process. Under
    torchrun the features must exist already (no rank computes while the others wait)."""
    if info.enabled and not up_to_date(data, cfg.feature):
        raise TrainingError(f"{data.path} has no up-to-date features for this config; compute them before "
                            f"launching torchrun: asrkit features {data.path} --config CONFIG --nj N")
    return compute_missing(data, cfg.feature, description=description)  # checks a foreign store's dimension


def tokens_and_cmvn(cfg: ExperimentConfig, train_data: DataDir, train_feats: FeatureStore, out_dir: Path,
                    info: DistInfo, checkpoint: Checkpoint | None, init: Checkpoint | None,
                    init_path: str) -> tuple[Tokenizer, GlobalCMVN]:
    """From the checkpoint on resume; from the --init model (plus the training text's new
    characters) when fine-tuning; else built from the training set (``tokenizer`` config)."""
    if checkpoint is not None:
        return from_checkpoint(checkpoint), GlobalCMVN.from_dict(checkpoint.cmvn)
    if init is None:
        streamed = (train_feats[u] for u in track(train_data.utt_ids(), "CMVN statistics"))
        return new_tokenizer(cfg, train_data, out_dir, info), GlobalCMVN.from_features(streamed)
    old = from_checkpoint(init)
    if not isinstance(old, CharTokenizer):
        log.info("--init %s: weights, CMVN and sentencepiece units from it, fresh optimizer and schedule",
                 init_path)
        return old, GlobalCMVN.from_dict(init.cmvn)
    tokenizer = old.extended(train_data.text.values())
    added = tokenizer.symbols[len(old):]
    log.info("--init %s: weights and CMVN from it, fresh optimizer and schedule; %d new characters%s",
             init_path, len(added), f" ({' '.join(added)}) get fresh output rows" if added else "")
    return tokenizer, GlobalCMVN.from_dict(init.cmvn)


def new_tokenizer(cfg: ExperimentConfig, train_data: DataDir, out_dir: Path, info: DistInfo) -> Tokenizer:
    """Characters of the training text, or sentencepiece units: the configured model, else one
    trained on the training text (by rank 0, into the exp dir, which the other ranks then read)."""
    tcfg = cfg.tokenizer
    if tcfg.type == "char":
        return CharTokenizer.build(train_data.text.values())
    if tcfg.model:
        path = Path(tcfg.model)
        tokenizer = SentencePieceTokenizer.load(path / "tokenizer.model" if path.is_dir() else path)
        log.info("tokenizer: sentencepiece %s, %d pieces", path, len(tokenizer))
        return tokenizer
    if info.is_main:
        train_sentencepiece(train_data.text.values(), out_dir, tcfg.vocab_size, tcfg.model_type)
    distributed.barrier(info)
    tokenizer = SentencePieceTokenizer.load(out_dir / "tokenizer.model")
    log.info("tokenizer: sentencepiece %s of %d pieces trained on %s's text", tcfg.model_type, len(tokenizer),
             train_data.path)
    return tokenizer


@dataclass
class Loaders:
    sampler: BucketBatchSampler  # the training batches (its epoch is set before each)
    train: torch.utils.data.DataLoader
    dev: torch.utils.data.DataLoader | None


def make_loaders(cfg: ExperimentConfig, tokenizer: Tokenizer, cmvn: GlobalCMVN, info: DistInfo,
                 device: torch.device, train_data: DataDir, train_feats: FeatureStore, dev_data: DataDir | None,
                 dev_feats: FeatureStore | None, augmenter: Augmenter | None) -> Loaders:
    """The training and dev loaders; utterances CTC cannot align (or too long) are counted and left out."""
    tcfg = cfg.train
    train_frames = {u: train_feats.num_frames(u) for u in train_data.utt_ids()}
    train_ids, train_tokens, dropped = select_trainable(train_data, train_frames, tokenizer, cfg, tcfg.max_duration)
    log.info("train: %d utterances, %d dropped (label longer than the subsampled input: %d, longer than %.1f s: %d)",
             len(train_ids), dropped["too_long_label"] + dropped["too_long_audio"], dropped["too_long_label"],
             tcfg.max_duration, dropped["too_long_audio"])
    if dropped["unknown_chars"]:
        log.warning("train: %d characters are not in the token table and map to <unk>", dropped["unknown_chars"])
    if not train_ids:
        raise TrainingError(f"{train_data.path}: no utterance is usable for training")
    train_set = AsrDataset(train_ids, train_feats, train_tokens, tcfg.spec_augment, cmvn, train_frames,
                           waveform_augment(augmenter, train_data, train_feats, cfg.feature))
    sampler = BucketBatchSampler([train_set.num_frames(i) for i in range(len(train_set))],
                                 tcfg.max_frames_per_batch, tcfg.max_utts_per_batch, shuffle=True,
                                 seed=tcfg.seed, num_replicas=info.world_size, rank=info.rank)
    cuda = device.type == "cuda"
    workers = tcfg.num_workers if tcfg.num_workers >= 0 else (2 if cuda else 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate,
                                               num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0,
                                               worker_init_fn=ignore_stop_signals if workers > 0 else None)
    if dev_data is None:
        return Loaders(sampler, train_loader, None)
    dev_frames = {u: dev_feats.num_frames(u) for u in dev_data.utt_ids()}
    dev_ids, dev_tokens, dev_dropped = select_trainable(dev_data, dev_frames, tokenizer, cfg, None)
    if dev_dropped["too_long_label"]:
        log.info("dev: %d utterances cannot be aligned by CTC and are left out of dev loss/WER",
                 dev_dropped["too_long_label"])
    if dev_dropped["unknown_chars"]:
        log.warning("dev: %d characters are not in the token table (built from train) and map to <unk>",
                    dev_dropped["unknown_chars"])
    if not dev_ids:
        raise TrainingError(f"{dev_data.path}: no dev utterance can be aligned by CTC; check the dev set")
    dev_set = AsrDataset(dev_ids, dev_feats, dev_tokens, None, cmvn, dev_frames)
    dev_sampler = BucketBatchSampler([dev_set.num_frames(i) for i in range(len(dev_set))],
                                     tcfg.max_frames_per_batch, tcfg.max_utts_per_batch, shuffle=False,
                                     num_replicas=info.world_size, rank=info.rank, drop_uneven=False)
    return Loaders(sampler, train_loader,
                   torch.utils.data.DataLoader(dev_set, batch_sampler=dev_sampler, collate_fn=collate))


def waveform_augment(augmenter: Augmenter | None, train_data: DataDir, train_feats: FeatureStore,
                     feature: FeatureConfig) -> WaveformAugment | None:
    """``train.augment`` for the training set (None when off, or on foreign features, which asrkit
    cannot recompute from altered audio)."""
    if augmenter is None:
        return None
    if train_feats.external:
        log.warning("train.augment is ignored: %s has foreign features, which asrkit cannot compute from "
                    "altered audio", train_data.path)
        return None
    augmenter.use_training_talkers(train_data.utterances())
    log.info("augmentation: %s", augmenter.describe())
    return WaveformAugment({u.utt_id: u for u in train_data.utterances()}, augmenter, feature)


__all__ = ["Loaders", "features_for_training", "make_loaders", "new_tokenizer", "tokens_and_cmvn", "waveform_augment"]
