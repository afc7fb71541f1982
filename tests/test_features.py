import numpy as np
import torch

from asrkit.config import FeatureConfig, SpecAugmentConfig
from asrkit.features import GlobalCMVN, compute_features, spec_augment


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


def test_spec_augment_masks():
    feats = torch.ones(200, 40)
    cfg = SpecAugmentConfig(num_freq_masks=2, max_freq_width=8, num_time_masks=2, max_time_ratio=0.1)
    torch.manual_seed(0)
    out = spec_augment(feats, cfg)
    assert out.shape == feats.shape and feats.eq(1).all()  # input untouched
    assert (out == 0).any()
    assert spec_augment(feats, SpecAugmentConfig(enabled=False)) is feats


def test_speed_perturbation(tmp_path, tone_corpus):
    import soundfile

    from asrkit.datadir import DataDir
    from asrkit.perturb import speed_perturb

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
