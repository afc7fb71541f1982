import numpy as np
import torch

from asrkit.config import FeatureConfig, SpecAugmentConfig
from asrkit.data.dataset import spec_augment
from asrkit.data.features import GlobalCMVN, compute_features


def test_fbank_and_mfcc_shapes():
    samples = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    fbank = compute_features(samples, FeatureConfig())
    assert fbank.shape == (101, 80) and fbank.dtype == np.float32
    mfcc = compute_features(samples, FeatureConfig(kind="mfcc", num_ceps=13))
    assert mfcc.shape == (101, 13)
    eight = compute_features(samples[:8000], FeatureConfig(sample_rate=8000, num_mel_bins=40))
    assert eight.shape == (101, 40)


def test_cmvn_normalises():
    rng = np.random.default_rng(0)
    feats = [rng.normal(5, 3, (50, 4)).astype(np.float32) for _ in range(10)]
    cmvn = GlobalCMVN.from_features(feats)
    normed = np.concatenate([cmvn(f) for f in feats])
    assert np.allclose(normed.mean(0), 0, atol=1e-4) and np.allclose(normed.std(0), 1, atol=1e-3)
    again = GlobalCMVN.from_dict(cmvn.to_dict())
    assert np.allclose(again(feats[0]), cmvn(feats[0]))


def _masked_runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, current = [], 0
    for value in mask.tolist() + [False]:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_spec_augment_mask_widths_and_counts():
    num_frames, dim = 200, 40
    feats = torch.randn(num_frames, dim) + 3.0  # no value is 0 before masking
    cfg = SpecAugmentConfig(num_freq_masks=2, max_freq_width=8, num_time_masks=2, max_time_ratio=0.1)
    max_time = int(0.1 * num_frames)
    freq_widths, time_widths = [], []
    for seed in range(300):
        out = spec_augment(feats, cfg, torch.Generator().manual_seed(seed))
        zero = out == 0
        freq_masked, time_masked = zero.all(0), zero.all(1)
        # every zero lies in a masked column or row, and everything else is untouched
        assert torch.equal(zero, freq_masked[None, :] | time_masked[:, None])
        assert torch.equal(out[~zero], feats[~zero])
        freq_runs, time_runs = _masked_runs(freq_masked), _masked_runs(time_masked)
        assert len(freq_runs) <= 2 and sum(freq_runs) <= 2 * 8 and all(r <= 2 * 8 for r in freq_runs)
        assert len(time_runs) <= 2 and sum(time_runs) <= 2 * max_time
        single = spec_augment(feats, SpecAugmentConfig(num_freq_masks=1, max_freq_width=8, num_time_masks=1,
                                                      max_time_ratio=0.1), torch.Generator().manual_seed(seed))
        freq_widths.append(int((single == 0).all(0).sum()))
        time_widths.append(int((single == 0).all(1).sum()))
    assert set(freq_widths) == set(range(0, 9))  # one mask: any width 0..max_freq_width, never more
    assert set(time_widths) == set(range(0, max_time + 1))
    assert feats.ne(0).all()  # input untouched
    assert spec_augment(feats, SpecAugmentConfig(enabled=False)) is feats
    none = SpecAugmentConfig(num_freq_masks=0, num_time_masks=0)
    assert torch.equal(spec_augment(feats, none), feats)


def test_fbank_and_mfcc_values_equal_librosa_called_directly():
    import librosa

    rate = 16000
    t = np.arange(rate) / rate
    samples = (0.3 * np.sin(2 * np.pi * 1000 * t) + np.random.default_rng(1).normal(0, 0.01, rate)).astype(np.float32)
    # 25 ms frames every 10 ms, 80 mel bins from 20 Hz; the samples as given (the level steps are tested below)
    cfg = FeatureConfig(level_norm="none", utterance_cmn=False)
    power = np.abs(librosa.stft(samples, n_fft=512, hop_length=160, win_length=400, window="hann",
                                center=True)) ** 2
    mel = librosa.filters.mel(sr=rate, n_fft=512, n_mels=80, fmin=20.0, fmax=8000.0) @ power
    fbank = compute_features(samples, cfg)
    assert np.allclose(fbank, np.log(mel + 1e-6).T, atol=1e-4)
    # the 1 kHz tone is loudest in the mel band whose centre is nearest 1 kHz
    centres = librosa.mel_frequencies(n_mels=82, fmin=20.0, fmax=8000.0)[1:-1]
    assert int(np.argmax(fbank[50])) == int(np.argmin(np.abs(centres - 1000)))
    mfcc = compute_features(samples, FeatureConfig(kind="mfcc", num_ceps=13, level_norm="none", utterance_cmn=False))
    expected = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13).T
    assert np.allclose(mfcc, expected, atol=1e-3)
    # the defaults: the same maths on the samples brought to -20 dBFS active level, minus each bin's mean
    from asrkit.data.audio import active_level

    scaled = samples * np.float32(0.1 / active_level(samples))
    power = np.abs(librosa.stft(scaled, n_fft=512, hop_length=160, win_length=400, window="hann",
                                center=True)) ** 2
    logmel = np.log(librosa.filters.mel(sr=rate, n_fft=512, n_mels=80, fmin=20.0, fmax=8000.0) @ power + 1e-6).T
    assert np.allclose(compute_features(samples, FeatureConfig()), logmel - logmel.mean(axis=0), atol=1e-4)


def test_audio_shorter_than_one_frame_is_a_clear_error_and_no_library_warning():
    import warnings

    import pytest

    from asrkit.errors import AudioError

    cfg = FeatureConfig(sample_rate=8000, num_mel_bins=23)
    with pytest.raises(AudioError, match=r"audio is 10.0 ms long; features need at least 25 ms"):
        compute_features(np.zeros(80, np.float32), cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = compute_features(np.full(240, 0.1, np.float32), cfg)  # 30 ms: one frame, less than n_fft
    assert feats.shape == (4, 23) and not caught


def test_speed_perturbation(tmp_path, tone_corpus):
    import soundfile

    from asrkit.data.datadir import DataDir
    from asrkit.data.perturb import speed_perturb

    src = DataDir.load(tone_corpus["dev"]).subset(["spk0-02000", "spk1-02001"])
    src.path = tone_corpus["dev"]
    out = speed_perturb(src, tmp_path / "sp", [0.9, 1.0, 1.1])
    assert len(out) == 6
    loaded = DataDir.load(tmp_path / "sp")
    assert loaded.text["sp0.9-spk0-02000"] == loaded.text["spk0-02000"]
    assert loaded.utt2spk["sp1.1-spk1-02001"] == "sp1.1-spk1"
    original = soundfile.info(loaded.wav_scp["spk0-02000"]).frames
    slow = soundfile.info(loaded.wav_scp["sp0.9-spk0-02000"]).frames
    fast = soundfile.info(loaded.wav_scp["sp1.1-spk0-02000"]).frames
    assert abs(slow - original / 0.9) <= 2 and abs(fast - original / 1.1) <= 2
