"""Pictures: what the model heard (spectrogram, CTC posteriorgram, aligned words), its attention, its training.

matplotlib is an optional dependency (``pip install asrkit[plot]``), imported
only here and only when a picture is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from asrkit.config import load_config
from asrkit.data.audio import load_audio
from asrkit.data.datadir import DataDir
from asrkit.data.features import compute_features
from asrkit.errors import AsrkitError
from asrkit.model import build_model
from asrkit.model.decoder import decoder_io


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
    posteriors = np.exp(log_probs).T  # (V, T')
    used = sorted(set(tokens) | {recognizer.tokenizer.blank_id})
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, seconds * 2.5), 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 1]})
    axes[0].imshow(feats.T, origin="lower", aspect="auto", extent=(0, seconds, 0, feats.shape[1]), cmap="magma")
    axes[0].set_ylabel(f"{recognizer.config.feature.kind} bin")
    axes[0].set_title(f"{Path(audio_path).name}: {recognizer.tokenizer.decode(tokens)!r}")
    end = log_probs.shape[0] * recognizer.seconds_per_frame
    axes[1].imshow(posteriors[used], origin="lower", aspect="auto", extent=(0, end, -0.5, len(used) - 0.5),
                   cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_yticks(range(len(used)))
    axes[1].set_yticklabels(["-" if i == recognizer.tokenizer.blank_id else recognizer.tokenizer.display(i)
                             for i in used])
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
    if recognizer.model is None:
        raise AsrkitError(f"{recognizer.path} is an export bundle; the attention plot needs the checkpoint it came from")
    if not recognizer.has_decoder:
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
    labels = [recognizer.tokenizer.display(t) for t in tokens] + ["</s>"]
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
    steps_path = exp / "steps.jsonl"
    steps = [json.loads(line) for line in steps_path.read_text(encoding="utf-8").splitlines()
             if line.strip()] if steps_path.is_file() else []
    steps = [r for r in steps if "grad_norm" in r]
    fig, axes = plt.subplots(1, 4 if steps else 3, figsize=(19 if steps else 14, 3.8))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    axes[0].plot(epochs, [r["dev_loss"] for r in rows], label="dev")
    axes[0].set_title("loss per utterance")
    axes[0].legend()
    axes[1].plot(epochs, [100 * r["dev_wer"] for r in rows], color="tab:red")
    axes[1].set_title("dev WER (greedy), %")
    axes[2].plot(epochs, [r["lr"] for r in rows], color="tab:green")
    axes[2].set_title("learning rate (end of epoch)")
    for axis in axes[:3]:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    if steps:  # the spikes that clipping cuts, with the threshold drawn in
        clip = _grad_clip(exp)
        norms = [r["grad_norm"] for r in steps]
        axes[3].semilogy([r["step"] for r in steps], norms, linewidth=0.7, color="tab:purple")
        if clip:
            axes[3].axhline(clip, color="tab:red", linestyle="--", label=f"grad_clip {clip:g}")
            clipped = sum(1 for n in norms if n > clip)
            axes[3].set_title(f"gradient norm before clipping ({100 * clipped / len(norms):.1f}% of steps clipped)")
            axes[3].legend()
        else:
            axes[3].set_title("gradient norm (no clipping)")
        axes[3].set_xlabel("step")
        axes[3].grid(alpha=0.3, which="both")
    fig.suptitle(str(exp), y=1.03)
    return _save(fig, Path(out))


def _grad_clip(exp: Path) -> float:
    """train.grad_clip of an experiment dir (its config.yaml), 0 when unknown."""
    try:
        return load_config(exp / "config.yaml", saved=True).train.grad_clip
    except AsrkitError:  # no or an unreadable config: no threshold line
        return 0.0


def gradients_through_time(model, feats: torch.Tensor) -> list[np.ndarray]:
    """‖∂s/∂h_t‖₂ for t = 1..T_k of every recurrent layer k, for one utterance.

    feats: (1, T, F), normalised. s is the log-probability of the most probable
    token at the last frame of the top layer's output; h_t is the layer's output
    at t in the forward direction (for an LSTM its output, not its cell), taken as
    the node that is also fed back, so the gradient counts every path from h_t to
    s: up through the layers above and forward through the recurrence. A gradient
    that shrinks with the distance from the last frame is a vanishing one.
    """
    model.eval()
    x, per_layer = model.encoder.unrolled(feats)
    for states in per_layer:
        for state in states:
            state.retain_grad()
    model.ctc_log_probs(x)[0, -1].max().backward()
    return [np.array([float(s.grad.norm()) if s.grad is not None else 0.0 for s in states]) for states in per_layer]


def plot_gradients(recognizer, data_dir: str | Path, out: str | Path, num_utts: int = 3) -> Path:
    """How gradients travel back through time, per layer, for untrained and trained weights:
    ‖∂s/∂h_t‖₂ against the distance from the last frame, log scale, on the ``num_utts``
    longest utterances of ``data_dir``."""
    cfg = recognizer.config.model
    if recognizer.model is None:
        raise AsrkitError(f"{recognizer.path} is an export bundle; gradients need the checkpoint it came from")
    if cfg.rnn_type not in ("lstm", "gru", "rnn", "jordan"):
        raise AsrkitError(f"plot gradients supports rnn_type lstm, gru, rnn and jordan, not {cfg.rnn_type!r}")
    data = DataDir.load(data_dir)
    store = recognizer.features_of(data)
    longest = sorted(data.utt_ids(), key=lambda u: -store.num_frames(u))[:num_utts]
    torch.manual_seed(0)
    untrained = build_model(recognizer.model.feat_dim, recognizer.model.vocab_size, cfg)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    shift = recognizer.config.feature.frame_shift_ms / 1000
    layer_seconds = [shift * cfg.layer_time_reduction(k) for k in range(cfg.num_layers)]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (title, model) in zip(axes, (("untrained", untrained), ("trained", recognizer.model.cpu()))):
        for number, utt in enumerate(longest):
            feats = torch.from_numpy(recognizer.cmvn(store[utt]).astype(np.float32))[None]
            for layer, norms in enumerate(gradients_through_time(model, feats)):
                distance = (len(norms) - 1 - np.arange(len(norms))) * layer_seconds[layer]
                axis.semilogy(distance, np.maximum(norms, 1e-30), color=colours[layer % len(colours)], alpha=0.7,
                              label=f"layer {layer + 1}" if number == 0 else None)
        axis.set_title(f"{title} weights")
        axis.set_xlabel("seconds before the last frame")
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    axes[0].set_ylabel("‖∂ log p(best token at T) / ∂h_t‖")
    direction = "bidirectional, forward half" if cfg.bidirectional else "unidirectional"
    fig.suptitle(f"gradients through time: {cfg.rnn_type} ({direction}), {len(longest)} utterances of {data_dir}",
                 y=1.02)
    recognizer.model.to(recognizer.device)
    return _save(fig, Path(out))


__all__ = ["gradients_through_time", "plot_attention", "plot_gradients", "plot_training", "plot_utterance"]
