"""Pictures: what the model heard (spectrogram, CTC posteriorgram, aligned words), its attention, its training.

matplotlib is an optional dependency (``pip install asrkit[plot]``), imported
only here and only when a picture is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from asrkit.errors import AsrkitError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise AsrkitError("plots need matplotlib: pip install 'asrkit[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def plot_utterance(recognizer, audio_path: str | Path, out: str | Path, search=None) -> Path:
    """Log-mel spectrogram, CTC posteriorgram (tokens × frames) and the decoded words at their aligned times."""
    from asrkit.audio import load_audio
    from asrkit.features import compute_features

    plt = _pyplot()
    samples = load_audio(audio_path, recognizer.sample_rate)
    feats = compute_features(samples, recognizer.config.feature)
    kept: list = []
    (hyps,) = recognizer.decode_features([feats], search, keep_log_probs=kept)
    tokens = hyps[0].tokens
    log_probs = kept[0]
    words = recognizer.align_words(feats, tokens, log_probs)
    shift = recognizer.config.feature.frame_shift_ms / 1000
    seconds = feats.shape[0] * shift
    posteriors = log_probs.exp().numpy().T  # (V, T')
    used = sorted(set(tokens) | {recognizer.tokenizer.blank_id})
    symbols = recognizer.tokenizer.symbols
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, seconds * 2.5), 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 1]})
    axes[0].imshow(feats.T, origin="lower", aspect="auto", extent=(0, seconds, 0, feats.shape[1]), cmap="magma")
    axes[0].set_ylabel(f"{recognizer.config.feature.kind} bin")
    axes[0].set_title(f"{Path(audio_path).name}: {recognizer.tokenizer.decode(tokens)!r}")
    end = log_probs.size(0) * recognizer.seconds_per_frame
    axes[1].imshow(posteriors[used], origin="lower", aspect="auto", extent=(0, end, -0.5, len(used) - 0.5),
                   cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_yticks(range(len(used)))
    axes[1].set_yticklabels(["-" if i == recognizer.tokenizer.blank_id else ("␣" if symbols[i] == "<space>"
                                                                             else symbols[i]) for i in used])
    axes[1].set_ylabel("CTC posterior")
    for word in words:
        for axis in axes:
            axis.axvline(word.start, color="tab:green", linewidth=0.8)
            axis.axvline(word.end, color="tab:red", linewidth=0.8, linestyle="--")
        axes[2].text((word.start + word.end) / 2, 0.5, f"{word.word}\n{word.confidence:.2f}", ha="center",
                     va="center", fontsize=9)
    axes[2].set_yticks([])
    axes[2].set_ylabel("words")
    axes[2].set_xlabel("time (s)")
    axes[2].set_xlim(0, seconds)
    return _save(fig, Path(out))


@torch.no_grad()
def plot_attention(recognizer, audio_path: str | Path, out: str | Path, search=None) -> Path:
    """The attention decoder's weights over encoder frames for each output token of the best hypothesis."""
    from asrkit.audio import load_audio
    from asrkit.features import compute_features
    from asrkit.model.decoder import decoder_io

    if recognizer.model.decoder is None:
        raise AsrkitError(f"{recognizer.path} has no attention decoder (trained with model.ctc_weight=1)")
    plt = _pyplot()
    samples = load_audio(audio_path, recognizer.sample_rate)
    feats = compute_features(samples, recognizer.config.feature)
    (hyps,) = recognizer.decode_features([feats], search)
    tokens = hyps[0].tokens
    x = torch.from_numpy(recognizer.cmvn(feats).astype(np.float32))[None].to(recognizer.device)
    enc, enc_lens = recognizer.model.encode(x, torch.tensor([x.size(1)], device=recognizer.device))
    targets = torch.tensor([tokens or [0]], device=recognizer.device)
    ys_in, _ = decoder_io(targets, torch.tensor([len(tokens)], device=recognizer.device))
    _, weights = recognizer.model.decoder(enc, enc_lens, ys_in, return_attention=True)
    symbols = recognizer.tokenizer.symbols
    labels = [("␣" if symbols[t] == "<space>" else symbols[t]) for t in tokens] + ["</s>"]
    matrix = weights[0].float().cpu().numpy()
    fig, axis = plt.subplots(figsize=(max(6.0, matrix.shape[1] / 12), max(3.0, len(labels) / 3)))
    axis.imshow(matrix, aspect="auto", origin="upper", cmap="viridis",
                extent=(0, matrix.shape[1] * recognizer.seconds_per_frame, len(labels) - 0.5, -0.5))
    axis.set_yticks(range(len(labels)))
    axis.set_yticklabels(labels)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("output token")
    axis.set_title(f"attention: {recognizer.tokenizer.decode(tokens)!r}")
    return _save(fig, Path(out))


def plot_training(exp: str | Path, out: str | Path) -> Path:
    """Train and dev loss, dev greedy WER and learning rate per epoch, from ``metrics.jsonl``."""
    exp = Path(exp)
    path = exp / "metrics.jsonl"
    if not path.is_file():
        raise AsrkitError(f"{path} does not exist (is {exp} an experiment dir?)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise AsrkitError(f"{path} is empty: no epoch has finished yet")
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    axes[0].plot(epochs, [r["dev_loss"] for r in rows], label="dev")
    axes[0].set_title("loss per utterance")
    axes[0].legend()
    axes[1].plot(epochs, [100 * r["dev_wer"] for r in rows], color="tab:red")
    axes[1].set_title("dev WER (greedy), %")
    axes[2].plot(epochs, [r["lr"] for r in rows], color="tab:green")
    axes[2].set_title("learning rate (end of epoch)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    fig.suptitle(str(exp), y=1.03)
    return _save(fig, Path(out))


__all__ = ["plot_attention", "plot_training", "plot_utterance"]
