"""Training data: features read per item (from a store), length-bucketed batches capped by frames, padding collate."""

from __future__ import annotations

import math
import random
from typing import Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asrkit.config import SpecAugmentConfig
from asrkit.data.audio import load_audio
from asrkit.data.features import compute_features


def spec_augment(feats: torch.Tensor, cfg: SpecAugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frequency and time masks (Park et al., 2019) on a (T, F) normalised tensor; masks set to 0."""
    if not cfg.enabled:
        return feats
    feats = feats.clone()
    num_frames, dim = feats.shape

    def randint(high: int) -> int:
        return int(torch.randint(0, max(high, 1), (1,), generator=generator))

    for _ in range(cfg.num_freq_masks):
        width = randint(cfg.max_freq_width + 1)
        start = randint(dim - width + 1)
        feats[:, start:start + width] = 0.0
    max_width = int(math.floor(cfg.max_time_ratio * num_frames))
    for _ in range(cfg.num_time_masks):
        width = randint(max_width + 1)
        start = randint(num_frames - width + 1)
        feats[start:start + width, :] = 0.0
    return feats


class AsrDataset(Dataset):
    """Items are (feats: (T, F) float32 tensor, tokens: (L,) int64 tensor, utt_id).

    ``feats`` maps an utterance id to its raw matrix: a ``FeatureStore`` (read from
    the arks when an item is asked for, so no process holds the corpus) or a dict.
    ``cmvn`` normalises each matrix as it loads; ``num_frames`` gives the lengths
    without reading (``utt2num_frames``).
    """

    def __init__(self, utt_ids: list[str], feats: Mapping[str, np.ndarray], tokens: dict[str, list[int]],
                 spec_aug: SpecAugmentConfig | None = None, cmvn=None,
                 num_frames: Mapping[str, int] | None = None, waveforms: "WaveformAugment | None" = None) -> None:
        self.utt_ids = list(utt_ids)
        self.feats = feats
        self.tokens = [torch.tensor(tokens[u], dtype=torch.long) for u in self.utt_ids]
        self.spec_aug = spec_aug
        self.cmvn = cmvn
        self.lengths = [int(num_frames[u]) if num_frames is not None else int(np.shape(feats[u])[0])
                        for u in self.utt_ids]
        self.waveforms = waveforms

    def __len__(self) -> int:
        return len(self.utt_ids)

    def num_frames(self, index: int) -> int:
        return self.lengths[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        matrix = self.waveforms.features(self.utt_ids[index]) if self.waveforms is not None else None
        if matrix is None:
            matrix = self.feats[self.utt_ids[index]]
        if self.cmvn is not None:
            matrix = self.cmvn(matrix)
        feats = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        if self.spec_aug is not None:
            feats = spec_augment(feats, self.spec_aug)
        return feats, self.tokens[index], self.utt_ids[index]


class WaveformAugment:
    """Training items from altered audio (``asrkit.data.augment``): for each use of an utterance the
    augmenter draws what it gets; when that is nothing (``features`` returns None) the item comes
    from the feature store. Draws come from torch's generator, which training seeds per batch
    (and DataLoader workers per worker), so a resumed run draws what an unbroken one would."""

    def __init__(self, utterances: Mapping, augmenter, feature_cfg) -> None:
        self.utterances, self.augmenter, self.feature_cfg = utterances, augmenter, feature_cfg

    def features(self, utt_id: str) -> np.ndarray | None:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        kinds = self.augmenter.draw(rng)
        if not kinds:
            return None
        utt = self.utterances[utt_id]
        samples = load_audio(utt.audio_path, self.feature_cfg.sample_rate, utt.start, utt.end)
        return compute_features(self.augmenter.apply(samples, kinds, rng, utt.speaker), self.feature_cfg)


class Batch:
    def __init__(self, feats, feat_lens, targets, target_lens, utt_ids) -> None:
        self.feats: torch.Tensor = feats  # (B, T, F)
        self.feat_lens: torch.Tensor = feat_lens  # (B,)
        self.targets: torch.Tensor = targets  # (B, L) padded with 0
        self.target_lens: torch.Tensor = target_lens  # (B,)
        self.utt_ids: list[str] = utt_ids

    def to(self, device: torch.device) -> "Batch":
        nb = device.type == "cuda"
        return Batch(self.feats.to(device, non_blocking=nb), self.feat_lens.to(device, non_blocking=nb),
                     self.targets.to(device, non_blocking=nb), self.target_lens.to(device, non_blocking=nb),
                     self.utt_ids)

    def pin_memory(self) -> "Batch":
        return Batch(self.feats.pin_memory(), self.feat_lens.pin_memory(), self.targets.pin_memory(),
                     self.target_lens.pin_memory(), self.utt_ids)


def collate(items: list[tuple[torch.Tensor, torch.Tensor, str]]) -> Batch:
    feats = torch.nn.utils.rnn.pad_sequence([f for f, _, _ in items], batch_first=True)
    targets = torch.nn.utils.rnn.pad_sequence([t for _, t, _ in items], batch_first=True)
    return Batch(feats, torch.tensor([f.shape[0] for f, _, _ in items]), targets,
                 torch.tensor([t.shape[0] for _, t, _ in items]), [u for _, _, u in items])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length whose padded size (longest × count) stays under ``max_frames``.

    Utterances are sorted by length with a little per-epoch jitter, cut into
    batches, and the batch order is shuffled; ``set_epoch`` makes each epoch
    different but reproducible from the seed. For distributed training every
    process builds the same batches and takes every ``num_replicas``-th one from
    ``rank`` on; all take the same number (the last few batches of an epoch are
    dropped), so no process waits on the others at the end of the epoch.
    """

    def __init__(self, lengths: list[int], max_frames: int, max_utts: int, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, drop_uneven: bool = True) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_uneven = drop_uneven  # False (evaluation): every batch used, shares may differ by one
        self.lengths = lengths
        self.max_frames = max_frames
        self.max_utts = max_utts
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches (computed once per epoch: ``len`` and iteration share them)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._make_batches())
        return self._cache[1]

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        if self.shuffle:
            order = sorted(range(len(self.lengths)), key=lambda i: self.lengths[i] * (1 + 0.1 * rng.random()))
        else:
            order = sorted(range(len(self.lengths)), key=lambda i: self.lengths[i])
        batches, current, longest = [], [], 0
        for i in order:
            new_longest = max(longest, self.lengths[i])
            if current and (new_longest * (len(current) + 1) > self.max_frames or len(current) >= self.max_utts):
                batches.append(current)
                current, new_longest = [], self.lengths[i]
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def local_batches(self) -> list[list[int]]:
        """The batches this process trains on (all of them unless distributed)."""
        batches = self.batches()
        if self.num_replicas == 1:
            return batches
        usable = len(batches) // self.num_replicas * self.num_replicas if self.drop_uneven else len(batches)
        return batches[self.rank:usable:self.num_replicas]

    def longest_share(self) -> int:
        """How many batches the process with the most takes (rank 0's share): with ``drop_uneven``
        off the shares differ by one, and a process with fewer can match the others' collectives."""
        batches = len(self.batches())
        usable = batches // self.num_replicas * self.num_replicas if self.drop_uneven else batches
        return -(-usable // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.local_batches())

    def __len__(self) -> int:
        return len(self.local_batches())
