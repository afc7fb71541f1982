"""Attention decoder: an LSTM that reads the encoder output through (location-aware) additive attention.

Trained jointly with CTC (``loss = λ·CTC + (1-λ)·CE``) and used to rescore the
CTC n-best under teacher forcing. Token 0 (the CTC blank, never a label) is
its start and end symbol, so the token table is shared with the CTC head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from asrkit.config import ModelConfig
from asrkit.model.recurrent import run_rnn
from asrkit.tokenizer import SOS_EOS


class Attention(nn.Module):
    """e = vᵀ tanh(W enc + U s + L conv(α_prev)); α = softmax over valid frames (Bahdanau; + location, Chorowski)."""

    def __init__(self, enc_dim: int, dec_dim: int, att_dim: int, location: bool, channels: int = 10,
                 kernel: int = 15) -> None:
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, att_dim)
        self.dec_proj = nn.Linear(dec_dim, att_dim, bias=False)
        self.score = nn.Linear(att_dim, 1, bias=False)
        self.location = location
        self.fold_location = True  # False: the plain convolution + projection (what an ONNX graph can hold)
        if location:
            self.conv = nn.Conv1d(1, channels, kernel, padding=kernel // 2, bias=False)
            self.loc_proj = nn.Linear(channels, att_dim, bias=False)

    def forward(self, enc: torch.Tensor, enc_keys: torch.Tensor, mask: torch.Tensor, state: torch.Tensor,
                previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc: (B, T, D), enc_keys: (B, T, A), mask: (B, T) True on frames, state: (B, H), previous: (B, T)."""
        energy = enc_keys + self.dec_proj(state)[:, None, :]
        if self.location:
            energy = self.add_location(energy, previous)
        scores = self.score(torch.tanh(energy)).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return torch.bmm(weights[:, None, :], enc).squeeze(1), weights

    def add_location(self, energy: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """energy + loc_proj(conv(previous)), with the convolution and the projection folded
        into one (A, K) matrix applied to each frame's window of ``previous``: one matmul
        instead of a 10-channel convolution, a transpose and a K=10 matmul at every decoder
        step (attention forward + backward ~30% faster on the CPU, the whole AN4 1a training
        step 2-5%); the same parameters, so checkpoints are unchanged. With ``fold_location`` off it
        is the plain form, a convolution then the projection: an exported graph cannot hold ``unfold``
        over a length it does not know."""
        if not self.fold_location:
            return energy + self.loc_proj(self.conv(previous[:, None, :]).transpose(1, 2))
        folded = self.loc_proj.weight @ self.conv.weight[:, 0, :]  # (A, channels) @ (channels, K)
        kernel = folded.size(1)
        windows = F.pad(previous, (kernel // 2, kernel // 2)).unfold(1, kernel, 1)  # (B, T, K)
        flat = torch.addmm(energy.reshape(-1, energy.size(-1)), windows.reshape(-1, kernel), folded.t())
        return flat.view_as(energy)


class Memory(nn.Module):
    """What the decoder attends to when ``model.decoder_memory_layers`` > 0: bidirectional GRU layers
    over the encoder output (B, T, D) -> (B, T, 2·size), each utterance read to its own length (the
    backward direction starts at its last frame), so padding changes nothing. Over a streaming
    encoder's output it is the second pass of cascaded encoders: run once, at the endpoint."""

    def __init__(self, enc_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.rnn = nn.GRU(enc_dim, cfg.decoder_memory_size, num_layers=cfg.decoder_memory_layers, batch_first=True,
                          bidirectional=True, dropout=cfg.dropout if cfg.decoder_memory_layers > 1 else 0.0)
        self.output_dim = 2 * cfg.decoder_memory_size

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        return run_rnn(self.rnn, enc, enc_lens.clamp(min=1))


class AttentionDecoder(nn.Module):
    """forward(enc: (B, T, D), enc_lens: (B,), ys_in: (B, L)) -> logits: (B, L, V) (teacher forcing).
    With ``model.decoder_memory_layers`` it reads ``Memory(enc)`` in place of ``enc``."""

    def __init__(self, enc_dim: int, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.decoder_hidden_size
        self.vocab_size = vocab_size
        self.memory = Memory(enc_dim, cfg) if cfg.decoder_memory_layers else None
        if self.memory is not None:
            enc_dim = self.memory.output_dim
        self.embed = nn.Embedding(vocab_size, cfg.decoder_embed_dim)
        self.cell = nn.LSTMCell(cfg.decoder_embed_dim + enc_dim, hidden)
        self.attention = Attention(enc_dim, hidden, cfg.attention_dim, cfg.attention == "location")
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(hidden + enc_dim, vocab_size)

    def read(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        """What the decoder attends to: ``enc``, or its ``Memory`` (computed once per utterance)."""
        return enc if self.memory is None else self.memory(enc, enc_lens)

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor,
                return_attention: bool = False):
        return self.attend(self.read(enc, enc_lens), enc_lens, ys_in, return_attention)

    def attend(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor, return_attention: bool = False):
        """``forward`` on what ``read`` gave."""
        batch, frames, enc_dim = enc.shape
        mask = torch.arange(frames, device=enc.device)[None, :] < enc_lens[:, None]
        keys = self.attention.enc_proj(enc)
        h = enc.new_zeros(batch, self.cell.hidden_size)
        c = enc.new_zeros(batch, self.cell.hidden_size)
        context = enc.new_zeros(batch, enc_dim)
        weights = mask.to(enc.dtype) / enc_lens.clamp(min=1)[:, None].to(enc.dtype)  # uniform start
        embedded = self.dropout(self.embed(ys_in))
        outputs, attentions = [], []
        for step in range(ys_in.size(1)):
            h, c = self.cell(torch.cat([embedded[:, step], context], -1), (h, c))
            context, weights = self.attention(enc, keys, mask, h, weights)
            outputs.append(torch.cat([h, context], -1))
            if return_attention:
                attentions.append(weights)
        logits = self.output(self.dropout(torch.stack(outputs, 1)))
        if return_attention:
            return logits, torch.stack(attentions, 1)
        return logits

    @torch.no_grad()
    def score_sequences(self, enc: torch.Tensor, enc_lens, rows: list[int], tokens: list[list[int]]):
        """log P(tokens[i] + <eos> | enc[rows[i]]) for every i, teacher-forced in one batch: a numpy
        array (the ``SequenceScorer`` that ``asrkit.search.rescore.attention_rescore`` calls)."""
        device = enc.device
        index = torch.tensor(rows, device=device)
        lens = torch.tensor([len(t) for t in tokens], device=device)
        targets = torch.zeros((len(tokens), max(max(len(t) for t in tokens), 1)), dtype=torch.long, device=device)
        for i, seq in enumerate(tokens):
            targets[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        ys_in, ys_out = decoder_io(targets, lens)
        enc_lens = torch.as_tensor(enc_lens, device=device)
        memory = self.read(enc, enc_lens)  # once per utterance, not per hypothesis
        logits = self.attend(memory.index_select(0, index), enc_lens.index_select(0, index), ys_in)
        return sequence_log_probs(logits, ys_out).cpu().numpy()


def decoder_io(targets: torch.Tensor, target_lens: torch.Tensor, ignore_id: int = -1):
    """(ys_in: <sos> + y, ys_out: y + <eos> padded with ``ignore_id``) from CTC-style padded targets (B, L)."""
    batch, length = targets.shape
    positions = torch.arange(length + 1, device=targets.device)[None, :]
    ys_in = torch.full((batch, length + 1), SOS_EOS, dtype=torch.long, device=targets.device)
    ys_in[:, 1:] = targets
    ys_in = ys_in.masked_fill(positions > target_lens[:, None], SOS_EOS)
    ys_out = torch.full((batch, length + 1), ignore_id, dtype=torch.long, device=targets.device)
    ys_out[:, :length] = targets
    ys_out = ys_out.masked_fill(positions >= target_lens[:, None], ignore_id)
    ys_out.scatter_(1, target_lens[:, None].long(), SOS_EOS)  # <eos> after the last label
    return ys_in, ys_out


def attention_loss(logits: torch.Tensor, ys_out: torch.Tensor, label_smoothing: float,
                   ignore_id: int = -1) -> torch.Tensor:
    """Cross-entropy summed over each utterance's tokens (incl. <eos>) and over the batch."""
    return F.cross_entropy(logits.float().transpose(1, 2), ys_out, ignore_index=ignore_id,
                           label_smoothing=label_smoothing, reduction="sum")


def sequence_log_probs(logits: torch.Tensor, ys_out: torch.Tensor, ignore_id: int = -1) -> torch.Tensor:
    """log P(y + <eos>) per row: the sum of each target token's log-probability. (B,)"""
    log_probs = logits.float().log_softmax(-1)
    picked = log_probs.gather(2, ys_out.clamp(min=0)[..., None]).squeeze(-1)
    return picked.masked_fill(ys_out == ignore_id, 0.0).sum(1)


__all__ = ["AttentionDecoder", "Memory", "SOS_EOS", "attention_loss", "decoder_io", "sequence_log_probs"]
