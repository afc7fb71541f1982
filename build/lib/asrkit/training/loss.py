"""The training objective and its evaluation: which utterances CTC can align, the joint
CTC/attention loss of a batch, and the dev loss and greedy WER (summed per process, so that
torchrun's shares add up).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch.nn.parallel import DistributedDataParallel

from asrkit.config import ExperimentConfig
from asrkit.data.datadir import DataDir
from asrkit.data.dataset import Batch
from asrkit.model import AsrModel, output_length
from asrkit.model.decoder import attention_loss, decoder_io
from asrkit.scoring import score
from asrkit.search.greedy import greedy_search
from asrkit.tokenizer import Tokenizer


def min_ctc_frames(tokens: list[int]) -> int:
    """Frames CTC needs for a label: one per token plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def select_trainable(data: DataDir, num_frames: Mapping[str, int], tokenizer: Tokenizer,
                     cfg: ExperimentConfig, max_duration: float | None) -> tuple[list[str], dict[str, list[int]], dict[str, int]]:
    """Utterance ids CTC can align, their token ids, and counts of what was dropped and why
    (plus ``unknown_chars``: characters outside the token table, mapped to <unk>).
    ``num_frames`` gives each utterance's feature frames (``utt2num_frames``)."""
    shift = cfg.feature.frame_shift_ms / 1000
    keep, tokens = [], {}
    dropped = {"too_long_label": 0, "too_long_audio": 0, "unknown_chars": 0}
    for utt in data.utt_ids():
        ids = tokenizer.encode(data.text[utt])
        dropped["unknown_chars"] += tokenizer.count_unknown(data.text[utt])
        frames = num_frames[utt]
        if max_duration is not None and frames * shift > max_duration:
            dropped["too_long_audio"] += 1
            continue
        if output_length(frames, cfg.model) < min_ctc_frames(ids):
            dropped["too_long_label"] += 1
            continue
        keep.append(utt)
        tokens[utt] = ids
    return keep, tokens, dropped


def compute_loss(model: torch.nn.Module, batch: Batch, ctc_loss: torch.nn.CTCLoss) -> torch.Tensor:
    """The batch's loss summed over utterances: CTC, or λ·CTC + (1-λ)·CE with an attention decoder.

    Both terms are per-utterance negative log-likelihoods (CTC summed over
    alignments, CE summed over the label tokens and <eos>), so λ weighs like for like.
    """
    return _loss_and_log_probs(model, batch, ctc_loss)[0]


def _loss_and_log_probs(model: torch.nn.Module, batch: Batch, ctc_loss: torch.nn.CTCLoss):
    core: AsrModel = model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[assignment]
    if core.decoder is None:
        log_probs, enc_lens = model(batch.feats, batch.feat_lens)
        return ctc_loss(log_probs.transpose(0, 1), batch.targets, enc_lens, batch.target_lens), log_probs, enc_lens
    ys_in, ys_out = decoder_io(batch.targets, batch.target_lens)
    log_probs, enc_lens, logits = model(batch.feats, batch.feat_lens, ys_in)
    loss = ctc_loss(log_probs.transpose(0, 1), batch.targets, enc_lens, batch.target_lens)
    att = attention_loss(logits, ys_out, core.label_smoothing)
    return core.ctc_weight * loss + (1 - core.ctc_weight) * att, log_probs, enc_lens


def autocast(device: torch.device, enabled: bool, dtype: str = "bf16"):
    return torch.autocast(device_type=device.type, dtype=torch.float16 if dtype == "fp16" else torch.bfloat16,
                          enabled=enabled and device.type == "cuda")


@torch.no_grad()
def validation_sums(model: AsrModel, loader, tokenizer: Tokenizer, refs: dict[str, str], device: torch.device,
                    amp: bool, amp_dtype: str = "bf16", check: Callable[[], None] | None = None) -> list[float]:
    """[summed dev loss, utterances, word errors, reference words] over the batches ``loader``
    yields (under torchrun: this process's share; the sums of all shares give the whole dev set's
    figures). ``check`` is called after each batch: a place to stop on a signal."""
    model.eval()
    ctc_loss = torch.nn.CTCLoss(blank=tokenizer.blank_id, reduction="sum", zero_infinity=True)
    total, count, hyps = 0.0, 0, {}
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, amp, amp_dtype):
            loss, log_probs, out_lens = _loss_and_log_probs(model, batch, ctc_loss)  # the training objective
        total += float(loss)
        count += len(batch.utt_ids)
        for utt, hyp in zip(batch.utt_ids, greedy_search(log_probs, out_lens, tokenizer.blank_id)):
            hyps[utt] = tokenizer.decode(hyp.tokens)
        if check is not None:
            check()
    if not hyps:
        return [total, count, 0, 0]
    report = score({u: refs[u] for u in hyps}, hyps)
    return [total, count, report.word.errors, report.word.ref_len]


def validate(model: AsrModel, loader, tokenizer: Tokenizer, refs: dict[str, str], device: torch.device,
             amp: bool, amp_dtype: str = "bf16", check: Callable[[], None] | None = None) -> tuple[float, float]:
    """Dev loss (per utterance) and greedy WER on the utterances the loader yields."""
    return dev_figures(validation_sums(model, loader, tokenizer, refs, device, amp, amp_dtype, check))


def dev_figures(sums: list[float]) -> tuple[float, float]:
    total, count, errors, words = sums
    return total / max(count, 1), errors / max(words, 1)


__all__ = ["compute_loss", "min_ctc_frames", "select_trainable", "validate", "validation_sums"]
