"""Speed perturbation (Ko et al., 2015), as Kaldi's perturb_data_dir_speed.sh: offline copies.

A factor of 1.1 plays the audio 10% faster (shorter, higher pitched). Each
perturbed copy gets the prefix ``sp<factor>-`` on its utterance and speaker
ids, so that copies of one speaker are separate speakers, as in Kaldi; the
factor 1.0 keeps the original ids and audio files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from asrkit.data.audio import read_audio
from asrkit.data.datadir import DataDir
from asrkit.errors import AsrkitError, DataDirError
from asrkit.progress import track


def change_speed(samples: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """Resample as if recorded at ``rate * factor``: duration / factor, pitch * factor."""
    import librosa

    return librosa.resample(samples, orig_sr=rate * factor, target_sr=rate, res_type="soxr_hq").astype(np.float32)


def speed_perturb(data: DataDir, out_dir: str | Path, factors: list[float]) -> DataDir:
    """Write a data dir with one copy of every utterance per factor (FLAC files under ``out_dir/audio``)."""
    if not factors or any(f <= 0 for f in factors):
        raise DataDirError(f"speed factors must be positive, got {factors}")
    out_dir = Path(out_dir)
    audio_dir = (out_dir / "audio").resolve()
    audio_dir.mkdir(parents=True, exist_ok=True)
    data.check_pipes()
    out = DataDir()
    utterances = data.utterances()
    for utt in track(utterances, "speed perturbation"):
        samples = None
        for factor in factors:
            if factor == 1.0 and data.segments is None:
                new_id, path = utt.utt_id, utt.audio_path
                speaker = utt.speaker
            else:
                prefix = "" if factor == 1.0 else f"sp{factor:g}-"
                new_id, speaker = prefix + utt.utt_id, prefix + utt.speaker
                if samples is None:
                    try:
                        samples, rate = read_audio(utt.audio_path, utt.start, utt.end)
                    except AsrkitError as exc:
                        raise type(exc)(f"utterance {utt.utt_id!r}: {exc}") from None
                path = str(audio_dir / f"{new_id}.flac")
                soundfile.write(path, samples if factor == 1.0 else change_speed(samples, rate, factor), rate)
            out.wav_scp[new_id] = path
            out.text[new_id] = utt.text
            out.utt2spk[new_id] = speaker
            if utt.speaker in data.spk2gender:  # a perturbed speaker keeps the gender
                out.spk2gender[speaker] = data.spk2gender[utt.speaker]
            if utt.utt_id in data.utt2dur:
                out.utt2dur[new_id] = data.utt2dur[utt.utt_id] / factor
    out.save(out_dir)
    DataDir.load(out_dir)  # validate what was written
    return out
