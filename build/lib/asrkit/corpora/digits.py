"""A small multi-voice spoken-digit corpus synthesised on the spot with eSpeak NG.

It needs no network: the ``espeakng-loader`` wheel (GPL-3, hence an optional
extra: ``pip install -e '.[demo]'``) carries the library and its voices. Each
"speaker" is an eSpeak voice and variant; every utterance is 1-4 digit words
("three one four") spoken at a random rate and pitch, padded with a little
silence and low noise, written as 22.05 kHz WAV (models at 16 kHz resample on
load). Test speakers are voices never heard in training.
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import numpy as np
import soundfile

from asrkit.data.datadir import DataDir
from asrkit.errors import CorpusError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_VOICES = ["en+m1", "en+m3", "en+f2", "en+f4", "en-us+m2", "en-us+f3", "en-gb-scotland+m4",
                "en-gb-x-rp+m5", "en-us+m7", "en+f1"]
DEV_VOICES = ["en-us+f5"]
TEST_VOICES = ["en+m6", "en-gb-x-rp+f3"]
_ESPEAK_PARAM_RATE, _ESPEAK_PARAM_PITCH = 1, 3


class Espeak:
    """Minimal ctypes binding: synchronous synthesis into a numpy array."""

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise CorpusError("the digits corpus needs eSpeak NG: pip install 'asrkit[demo]' "
                              "(or pip install espeakng-loader)") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        synchronous = 2
        self.sample_rate = self.lib.espeak_Initialize(synchronous, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise CorpusError("eSpeak NG failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._set_seed = getattr(self.lib, "espeak_ng_SetRandSeed", None)  # eSpeak NG >= 1.52
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]

        def on_audio(wav, num_samples, events):  # called by eSpeak for each buffer
            if num_samples > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            return 0

        self._callback = self._CALLBACK(on_audio)  # keep a reference: eSpeak holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def say(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        # Some variants (the female ones) add breath noise from eSpeak's own random
        # generator, which differs from run to run unless seeded: seeding makes every run the same.
        if self._set_seed is not None:
            self._set_seed(seed)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise CorpusError(f"eSpeak NG has no voice {voice!r}")
        self.lib.espeak_SetParameter(_ESPEAK_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PARAM_PITCH, pitch, 0)
        self._chunks = []
        raw = text.encode()
        if self.lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, 0, None, None) != 0:
            raise CorpusError(f"eSpeak NG failed to say {text!r}")
        if not self._chunks:
            raise CorpusError(f"eSpeak NG produced no audio for {text!r}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def prepare(corpus_dir: Path | None, out_dir: Path, utts_per_voice: int = 60, seed: int = 0) -> dict[str, int]:
    """Synthesise into ``out_dir/audio`` and write train/dev/test data dirs.

    ``corpus_dir`` is ignored (the corpus is made, not read); it is accepted so
    that every corpus has the same ``prepare`` signature.
    """
    engine = Espeak()
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    audio_dir = (out_dir / "audio").resolve()
    audio_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, voices in (("train", TRAIN_VOICES), ("dev", DEV_VOICES), ("test", TEST_VOICES)):
        data = DataDir()
        for voice in voices:
            speaker = voice.replace("+", "_")
            for index in range(utts_per_voice):
                words = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
                text = " ".join(words)
                samples = engine.say(text, voice, rate=rng.randint(130, 200), pitch=rng.randint(25, 75),
                                     seed=seed * 100_003 + 1000 * voices.index(voice) + index)
                lead, tail = (int(engine.sample_rate * rng.uniform(0.05, 0.3)) for _ in range(2))
                samples = np.concatenate([np.zeros(lead, np.float32), samples, np.zeros(tail, np.float32)])
                samples += noise.normal(0, 10 ** (-rng.uniform(35, 50) / 20), samples.shape).astype(np.float32)
                utt = f"{speaker}-{index:03d}"
                path = audio_dir / f"{utt}.wav"
                soundfile.write(path, np.clip(samples, -1, 1), engine.sample_rate, subtype="PCM_16")
                data.wav_scp[utt] = str(path)
                data.text[utt] = text
                data.utt2spk[utt] = speaker
        data.save(out_dir / split)
        DataDir.load(out_dir / split)
        counts[split] = len(data)
    return counts
