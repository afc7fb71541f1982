"""Robustness: WER on altered copies of a test set, beside the clean WER.

Builds its own copies of DATA_DIR's audio, altered the way real recordings are,
each as a data dir under --work (made once, reused): white noise at 20 and
10 dB SNR, 30 and 45 dB quieter, 20 dB louder and clipped (16-bit files), stereo with
a silent second channel, resampled to 8 kHz (telephone rate), FLAC at
44.1 kHz, OGG Vorbis; and rooms and talkers: reverberation in simulated rooms
(asrkit.data.rooms: RT60 0.3, 0.5 and 0.8 s, the talker 0.7 m from the
microphone or 4 m away; each copy's mean direct-to-reverberant ratio is
printed), three competing talkers (other speakers' utterances of the same set)
at 10 and 5 dB, the same words 0.8x and 1.2x as fast (pitch kept, librosa's
phase vocoder), a 3 kHz low-pass (a muffled microphone), G.711 mu-law at 8 kHz
(a real WAV of that format), mains hum with a DC offset. Decodes each with
MODEL and prints WER, the ratio to the clean WER, and the issues' target ratio
(none where an issue asks only for the figure). ``--conditions`` also takes
points of curves, any level of noise, babble, tempo or reverberation:
``babble_20db,babble_0db,tempo_0.7,tempo_1.3,reverb_1.2_near``.

    python benchmarks/robustness.py MODEL DATA_DIR [--mode rescore --beam 20 --lexicon L]
                                    [--work DIR] [--max-utts N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from asrkit.data.audio import read_audio
from asrkit.data.augment import add_noise
from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer
from asrkit.scoring import score
from asrkit.search.options import SearchOptions

# condition -> (target ratio to the clean WER, description)
CONDITIONS = {
    "clean": (1.0, "clean (16-bit WAV copy)"),
    "noise_20db": (1.5, "white noise at 20 dB SNR"),
    "noise_10db": (3.0, "white noise at 10 dB SNR"),
    "quiet_30db": (1.2, "30 dB quieter (16-bit)"),
    "loud_20db_clipped": (1.2, "+20 dB, clipped (16-bit)"),
    "stereo_silent": (1.2, "stereo, second channel silent"),
    "stereo_antiphase": (1.2, "stereo, channels in anti-phase"),
    "rate_8k": (2.0, "resampled to 8 kHz"),
    "flac_44k": (1.2, "FLAC at 44.1 kHz"),
    "ogg": (1.2, "OGG Vorbis"),
    "quiet_45db": (None, "45 dB quieter (16-bit)"),
    "reverb_0.3_near": (1.4, "RT60 0.3 s, talker at 0.7 m"),
    "reverb_0.5_near": (2.0, "RT60 0.5 s, talker at 0.7 m"),
    "reverb_0.8_near": (None, "RT60 0.8 s, talker at 0.7 m"),
    "reverb_0.3_far": (None, "RT60 0.3 s, talker at 4 m"),
    "reverb_0.5_far": (None, "RT60 0.5 s, talker at 4 m"),
    "reverb_0.8_far": (None, "RT60 0.8 s, talker at 4 m"),
    "babble_10db": (1.8, "3 competing talkers at 10 dB"),
    "babble_5db": (None, "3 competing talkers at 5 dB"),
    "tempo_0.8": (1.4, "tempo 0.8 (slower, pitch kept)"),
    "tempo_1.2": (1.4, "tempo 1.2 (faster, pitch kept)"),
    "lowpass_3k": (None, "3 kHz low-pass"),
    "mulaw_8k": (None, "G.711 mu-law at 8 kHz"),
    "hum_dc": (None, "50 Hz hum + harmonics, DC offset"),
}
ROOM_DISTANCE = {"near": 0.7, "far": 4.0}  # metres from the microphone
# the curves: any level of these (e.g. babble_0db, tempo_1.3, reverb_1.2_far), no target
CURVES = [
    (re.compile(r"noise_(\d+(?:\.\d+)?)db"), "white noise at {} dB SNR"),
    (re.compile(r"babble_(-?\d+(?:\.\d+)?)db"), "3 competing talkers at {} dB"),
    (re.compile(r"tempo_(\d*\.?\d+)"), "tempo {}"),
    (re.compile(r"reverb_(\d*\.?\d+)_(near|far)"), "RT60 {} s, talker {}"),
]


def describe(condition: str) -> tuple[float | None, str]:
    """(target ratio, description) of a condition: a named one of CONDITIONS, or a point of a
    curve (CURVES). ValueError for anything else."""
    if condition in CONDITIONS:
        return CONDITIONS[condition]
    for pattern, text in CURVES:
        match = pattern.fullmatch(condition)
        if match:
            values = match.groups()
            if condition.startswith(("tempo_", "reverb_")) and not float(values[0]) > 0:
                raise ValueError(f"{condition}: the factor must be above 0")
            if condition.startswith("reverb_"):
                return None, text.format(values[0], f"at {ROOM_DISTANCE[values[1]]} m")
            return None, text.format(*values)
    raise ValueError(condition)


def alter(condition: str, samples: np.ndarray, rate: int, rng: np.random.Generator, others=None):
    """(samples, rate, suffix, soundfile subtype) of one altered copy; ``others`` draws another
    speaker's utterance (for competing talkers)."""
    import librosa

    if condition.startswith(("reverb_", "babble_", "tempo_", "lowpass", "mulaw", "hum", "quiet_45")):
        return alter_room_or_talker(condition, samples, rate, rng, others)
    if condition == "clean":
        return samples, rate, "wav", "PCM_16"
    if condition.startswith("noise_"):
        snr = float(condition.split("_")[1][:-2])
        noisy = add_noise(samples, rng.standard_normal(len(samples)), snr)
        return np.clip(noisy, -1, 1), rate, "wav", "PCM_16"
    if condition == "quiet_30db":
        return samples * 10 ** (-30 / 20), rate, "wav", "PCM_16"
    if condition == "loud_20db_clipped":
        return np.clip(samples * 10, -1, 1), rate, "wav", "PCM_16"
    if condition == "stereo_silent":
        return np.stack([samples, np.zeros_like(samples)], axis=1), rate, "wav", "PCM_16"
    if condition == "stereo_antiphase":  # a miswired balanced cable, a phase-inverted channel
        return np.stack([samples, -samples], axis=1), rate, "wav", "PCM_16"
    if condition == "rate_8k":
        return librosa.resample(samples, orig_sr=rate, target_sr=8000, res_type="soxr_hq"), 8000, "wav", "PCM_16"
    if condition == "flac_44k":
        return librosa.resample(samples, orig_sr=rate, target_sr=44100, res_type="soxr_hq"), 44100, "flac", "PCM_16"
    if condition == "ogg":
        return samples, rate, "ogg", "VORBIS"
    raise ValueError(condition)


def alter_room_or_talker(condition: str, samples: np.ndarray, rate: int, rng: np.random.Generator, others):
    """The rooms-and-talkers copies (see the module's docstring)."""
    import librosa
    from scipy.signal import butter, fftconvolve, sosfiltfilt

    from asrkit.data.rooms import random_room, simulate_rir

    if condition.startswith("reverb_"):
        _, rt60, where = condition.split("_")
        room = random_room(rng, (float(rt60), float(rt60)), (ROOM_DISTANCE[where],) * 2)
        rir = simulate_rir(room, rate, rng)
        wet = fftconvolve(samples, rir)[:len(samples)]  # the direct path is the response's first sample
        wet *= np.sqrt(np.mean(samples ** 2) / max(np.mean(wet ** 2), 1e-12))
        return np.clip(wet, -1, 1), rate, "wav", "PCM_16", rir
    if condition.startswith("babble_"):
        snr = float(condition.split("_")[1][:-2])
        babble = np.zeros_like(samples)
        for _ in range(3):
            talker = others(rng)
            start = int(rng.integers(0, max(1, len(talker) - len(samples) + 1)))
            talker = np.resize(talker[start:], len(samples))  # cut, or looped to length
            babble += talker / max(np.sqrt(np.mean(talker ** 2)), 1e-9)
        return np.clip(add_noise(samples, babble, snr), -1, 1), rate, "wav", "PCM_16"
    if condition.startswith("tempo_"):
        return librosa.effects.time_stretch(samples, rate=float(condition.split("_")[1])), rate, "wav", "PCM_16"
    if condition == "lowpass_3k":
        return sosfiltfilt(butter(8, 3000, fs=rate, output="sos"), samples), rate, "wav", "PCM_16"
    if condition == "mulaw_8k":
        narrow = librosa.resample(samples, orig_sr=rate, target_sr=8000, res_type="soxr_hq")
        return narrow, 8000, "wav", "ULAW"
    if condition == "hum_dc":
        t = np.arange(len(samples)) / rate
        hum = sum(0.02 / k * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3, 5))
        return np.clip(samples + hum + 0.05, -1, 1), rate, "wav", "PCM_16"
    if condition == "quiet_45db":
        return samples * 10 ** (-45 / 20), rate, "wav", "PCM_16"
    raise ValueError(condition)


def other_speakers(data: DataDir, by_id: dict, utt_id: str):
    """A draw of another speaker's utterance of the set (its samples), for competing talkers."""
    speaker = data.utt2spk.get(utt_id, utt_id)
    pool = [u for u in by_id if data.utt2spk.get(u, u) != speaker]

    def draw(rng: np.random.Generator) -> np.ndarray:
        utt = by_id[pool[int(rng.integers(len(pool)))]]
        return read_audio(utt.audio_path, utt.start, utt.end)[0]
    return draw


def make_copy(data: DataDir, condition: str, root: Path, utts: list[str]) -> Path:
    """The altered data dir (written once; an existing complete one is reused)."""
    out = root / condition
    if (out / "text").is_file():
        return out
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    copy = DataDir()
    by_id = {u.utt_id: u for u in data.utterances()}
    drrs = []
    for index, utt_id in enumerate(utts):
        utt = by_id[utt_id]
        samples, rate = read_audio(utt.audio_path, utt.start, utt.end)
        rng = np.random.default_rng(index)
        altered, new_rate, suffix, subtype, *rir = alter(condition, samples, rate, rng,
                                                         other_speakers(data, by_id, utt_id))
        if rir:
            from asrkit.data.rooms import drr_db

            drrs.append(drr_db(rir[0], rate))
        path = audio_dir / f"{utt_id}.{suffix}"
        soundfile.write(path, np.asarray(altered, dtype=np.float32), new_rate, subtype=subtype)
        copy.wav_scp[utt_id] = str(path.resolve())
        copy.text[utt_id] = data.text[utt_id]
        copy.utt2spk[utt_id] = data.utt2spk.get(utt_id, utt_id)
    if drrs:
        (out / "drr_db").write_text(f"{np.mean(drrs):.1f}\n", encoding="utf-8")
    copy.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--mode", default="greedy", choices=["greedy", "beam", "rescore"])
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--lexicon")
    parser.add_argument("--work", type=Path, help="where the altered copies go (default: DATA_DIR_robustness)")
    parser.add_argument("--max-utts", type=int, default=0, help="the first N utterances only (0: all)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    data = DataDir.load(args.data_dir)
    utts = data.utt_ids()[: args.max_utts or None]
    work = args.work or args.data_dir.parent / f"{args.data_dir.name}_robustness"
    recognizer = Recognizer(args.model)
    search = SearchOptions(mode=args.mode, beam=args.beam, lexicon=args.lexicon)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = []
    for condition in conditions:
        try:
            describe(condition)
        except ValueError:
            unknown.append(condition)
    if unknown:
        sys.exit(f"unknown conditions {', '.join(unknown)} (known: {', '.join(CONDITIONS)}; and curves such as "
                 "babble_0db, tempo_1.3, reverb_1.2_far, noise_5db)")
    print(f"model {args.model}, {len(utts)} utterances of {args.data_dir}, {args.mode}"
          f"{f' beam {args.beam}' if args.mode != 'greedy' else ''}{' + lexicon' if args.lexicon else ''}; "
          f"{platform.machine()}, {platform.python_version()}")
    refs = {u: data.text[u] for u in utts}
    figures = {}
    for condition in ["clean"] + [c for c in conditions if c != "clean"]:
        started = time.perf_counter()
        copy = make_copy(data, condition, work, utts)
        hyps = recognizer.decode_data_dir(copy, search)
        text = {u: recognizer.tokenizer.decode(h[0].tokens) for u, h in hyps.items()}
        report = score(refs, text)
        figures[condition] = {"wer": report.wer, "cer": report.cer, "errors": report.word.errors,
                              "words": report.word.ref_len, "seconds": time.perf_counter() - started}
        if (copy / "drr_db").is_file():
            figures[condition]["drr_db"] = float((copy / "drr_db").read_text())
    clean = figures["clean"]["wer"]
    print(f"{'condition':46s} {'WER':>8s} {'CER':>7s} {'x clean':>8s} {'target':>7s}")
    for condition, f in figures.items():
        target, description = describe(condition)
        if "drr_db" in f:
            description += f" (DRR {f['drr_db']:+.0f} dB)"
        ratio = f["wer"] / clean if clean > 0 else float("inf") if f["wer"] > 0 else 1.0
        f["ratio"], f["target"] = ratio, target
        met = "" if condition == "clean" or target is None else ("met" if ratio <= target else "MISSED")
        shown = f"{target:6.1f}x" if target is not None else f"{'-':>7s}"
        print(f"{description:46s} {100 * f['wer']:7.2f}% {100 * f['cer']:6.2f}% {ratio:7.2f}x {shown} {met}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
