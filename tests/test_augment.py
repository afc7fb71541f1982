"""Real recordings: level invariance, stereo downmix, waveform augmentation, input warnings."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import yaml

from asrkit.config import AugmentConfig, FeatureConfig, load_config
from asrkit.data.audio import active_level, downmix, input_warnings, read_audio
from asrkit.data.augment import AudioFolder, Augmenter, add_noise, apply_gain, coloured_noise, reverberate, telephone
from asrkit.data.features import compute_features
from asrkit.errors import ConfigError

from conftest import TINY_CONFIG, run_cli, tone_words

RATE = 16000


def speech_like(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """Tone bursts with pauses and a little noise, at 16 kHz."""
    return tone_words(["a", "b", "a"], RATE, seed)[: int(seconds * RATE)]


def power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


# ---------------------------------------------------------------- level invariance

def test_features_do_not_depend_on_the_recording_level():
    cfg = FeatureConfig()  # level_norm: active, utterance_cmn: true
    x = speech_like()
    clean = compute_features(x, cfg)
    for gain_db in (-30.0, -10.0, 6.0):
        other = compute_features(x * np.float32(10 ** (gain_db / 20)), cfg)
        assert np.abs(other - clean).max() < 1e-3, gain_db


def test_without_level_invariance_a_quiet_copy_shifts_the_features():
    cfg = FeatureConfig(level_norm="none", utterance_cmn=False)  # what models before it did
    x = speech_like()
    shift = compute_features(x * np.float32(10 ** (-30 / 20)), cfg) - compute_features(x, cfg)
    assert -6.9 < shift.mean() < -3.0  # log power 30 dB (6.9) down, partly hidden by the log floor


def test_utterance_cmn_removes_each_dimensions_mean():
    feats = compute_features(speech_like(), FeatureConfig(level_norm="none", utterance_cmn=True))
    assert np.abs(feats.mean(axis=0)).max() < 1e-4


def test_active_level_ignores_pauses():
    x = speech_like()
    padded = np.concatenate([np.zeros(RATE * 2, np.float32), x, np.zeros(RATE * 2, np.float32)])
    assert active_level(padded) == pytest.approx(active_level(x), rel=0.1)


def test_level_norm_value_is_checked():
    with pytest.raises(ConfigError, match="feature.level_norm must be 'active', 'running' or 'none'"):
        load_config(None, ["feature.level_norm=peak"])


# ---------------------------------------------------------------- stereo

def test_a_silent_channel_is_left_out_of_the_downmix(tmp_path):
    x = speech_like()
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([x, np.zeros_like(x)], axis=1), RATE)
    mono, _ = read_audio(path)
    assert power_db(mono) == pytest.approx(power_db(x), abs=0.1)  # a plain average would be 6 dB down


def test_live_channels_are_averaged():
    left, right = speech_like(1.0, seed=1), speech_like(1.0, seed=2)
    both = np.stack([left, right], axis=1)
    assert np.allclose(downmix(both), (left + right) / 2)


# ---------------------------------------------------------------- augmentation kinds

def test_noise_is_added_at_the_drawn_snr():
    rng = np.random.default_rng(0)
    x = speech_like()
    for snr in (0.0, 10.0, 20.0):
        noisy = add_noise(x, coloured_noise(rng, len(x)), snr)
        assert power_db(x) - power_db(noisy - x) == pytest.approx(snr, abs=0.01)


def test_short_noise_is_tiled_to_the_utterance():
    x = speech_like()
    noisy = add_noise(x, np.ones(100, np.float32), 10.0)
    assert noisy.shape == x.shape


def test_gain_clips_at_full_scale():
    x = speech_like()
    loud = apply_gain(x, 20.0)
    assert np.abs(loud).max() == pytest.approx(1.0) and np.mean(np.abs(loud) >= 1.0) > 0.05
    assert np.allclose(apply_gain(x, -20.0), x * 0.1, atol=1e-6)


def test_telephone_band_keeps_the_length_and_nothing_above_4_khz():
    rng = np.random.default_rng(0)
    white = rng.standard_normal(RATE).astype(np.float32) * 0.1
    narrow = telephone(white, RATE)
    assert narrow.shape == white.shape
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    freqs = np.fft.rfftfreq(len(narrow), 1 / RATE)
    assert spectrum[freqs > 4200].sum() < 1e-3 * spectrum[freqs < 3800].sum()


def test_reverberation_keeps_length_level_and_timing():
    x = speech_like()
    rir = np.zeros(4000, np.float32)
    rir[200] = 1.0  # direct path after 200 samples of travel
    rir[1200] = 0.5
    wet = reverberate(x, rir)
    assert wet.shape == x.shape
    assert power_db(wet) == pytest.approx(power_db(x), abs=0.01)
    onset = lambda s: int(np.argmax(np.abs(s) > 0.1))  # noqa: E731
    assert abs(onset(wet) - onset(x)) <= 2  # aligned on the direct path: labels keep their times


def test_augmenter_draws_by_probability():
    rng = np.random.default_rng(0)
    never = Augmenter(AugmentConfig(noise_prob=0, gain_prob=0, telephone_prob=0), RATE)
    assert not never.cfg.enabled and never.draw(rng) == []
    always = Augmenter(AugmentConfig(noise_prob=1, gain_prob=1, telephone_prob=1, reverb_prob=1), RATE)
    assert always.draw(rng) == ["noise", "telephone", "gain"]  # reverberation needs rir_dir
    draws = [Augmenter(AugmentConfig(noise_prob=0.4, gain_prob=0, telephone_prob=0), RATE).draw(rng)
             for _ in range(2000)]
    assert sum(d == ["noise"] for d in draws) / 2000 == pytest.approx(0.4, abs=0.04)
    x = speech_like()
    assert always.apply(x, always.draw(rng), rng).shape == x.shape


def test_noise_and_rir_folders_are_read_in_any_format_and_rate(tmp_path):
    noises, rirs = tmp_path / "noise" / "free-sound", tmp_path / "rirs"
    noises.mkdir(parents=True)
    rirs.mkdir()
    rng = np.random.default_rng(0)
    soundfile.write(noises / "hum.flac", 0.1 * rng.standard_normal(8000 * 3), 8000)
    soundfile.write(noises / "fan.wav", 0.1 * rng.standard_normal(44100), 44100)
    rir = np.zeros(1600)
    rir[10], rir[800] = 1.0, 0.3
    soundfile.write(rirs / "room.wav", rir, RATE)
    cfg = AugmentConfig(noise_prob=1, gain_prob=0, telephone_prob=0, noise_dir=str(tmp_path / "noise"),
                        reverb_prob=1, rir_dir=str(rirs), snr_min_db=5, snr_max_db=5)
    augmenter = Augmenter(cfg, RATE)
    assert len(augmenter.noises) == 2 and "2 files" in augmenter.describe()
    x = speech_like()
    kinds = augmenter.draw(rng)
    assert kinds == ["reverb", "noise"]
    out = augmenter.apply(x, kinds, rng)
    assert out.shape == x.shape and np.isfinite(out).all()


def _bad_folder(root, kind: str):
    if kind == "file":
        (root / "file.wav").write_bytes(b"x")
        return root / "file.wav"
    folder = root / kind
    folder.mkdir()
    if kind == "unreadable":
        soundfile.write(folder / "fine.wav", np.zeros(800), 8000)
        (folder / "n.wav").write_bytes(b"RIFF junk")
    return folder


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"), ("file", "is a file, not a folder"), ("empty", "holds no audio files"),
    ("unreadable", "n.wav is not readable audio"),
])
def test_a_bad_noise_folder_is_a_one_line_error_naming_it(tmp_path, kind, message):
    folder = tmp_path / "nowhere" if kind == "missing" else _bad_folder(tmp_path, kind)
    with pytest.raises(ConfigError, match=message) as info:
        AudioFolder(folder, "train.augment.noise_dir")
    assert "train.augment.noise_dir" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override, key", [
    ("train.augment.noise_prob=1.5", "train.augment.noise_prob"),
    ("train.augment.gain_prob=-0.1", "train.augment.gain_prob"),
    ("train.augment.telephone_prob=2", "train.augment.telephone_prob"),
    ("train.augment.reverb_prob=-1", "train.augment.reverb_prob"),
    ("train.augment.snr_min_db=31", "train.augment.snr_min_db=31.0 and train.augment.snr_max_db=30.0"),
    ("train.augment.snr_max_db=-5", "train.augment.snr_min_db=5.0 and train.augment.snr_max_db=-5.0"),
    ("train.augment.snr_max_db=.inf", "train.augment.snr_max_db=inf"),
    ("train.augment.snr_min_db=-60", "train.augment.snr_min_db/snr_max_db"),
    ("train.augment.gain_min_db=30", "train.augment.gain_min_db=30.0 and train.augment.gain_max_db=25.0"),
    ("train.augment.gain_max_db=90", "train.augment.gain_min_db/gain_max_db"),
    ("train.augment.babble_prob=1.2", "train.augment.babble_prob"),
    ("train.augment.tempo_prob=-0.5", "train.augment.tempo_prob"),
    ("train.augment.rt60_min=1.0", "train.augment.rt60_min=1.0 and train.augment.rt60_max=0.9"),
    ("train.augment.rt60_min=0", "train.augment.rt60_min=0.0"),
    ("train.augment.rir_distance_max=50", "train.augment.rir_distance_min=0.5 and train.augment.rir_distance_max=50"),
    ("train.augment.babble_snr_min_db=30", "train.augment.babble_snr_min_db=30.0 and train.augment.babble_snr_max_db"),
    ("train.augment.tempo_min=0", "train.augment.tempo_min=0.0"),
    ("train.augment.tempo_min=-1", "train.augment.tempo_min=-1.0"),
    ("train.augment.tempo_max=0.5", "train.augment.tempo_min=0.8 and train.augment.tempo_max=0.5"),
    ("train.augment.babble_talkers=0", "train.augment.babble_talkers must be at least 1"),
    ("train.augment.simulated_rirs=-3", "train.augment.simulated_rirs"),
])
def test_an_impossible_augmentation_setting_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_training_with_a_missing_noise_folder_fails_before_features(tone_corpus, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_CONFIG)
    code, _, err = run_cli(["train", "--train", tone_corpus["train"], "--out", tmp_path / "exp", "--config", config,
                            "--set", "train.augment.noise_prob=0.5", "--set",
                            f"train.augment.noise_dir={tmp_path / 'musan'}"], capsys)
    assert code != 0 and "train.augment.noise_dir" in err and "does not exist" in err
    assert not (tmp_path / "exp" / "last.pt").exists()


def test_training_reads_altered_audio_when_drawn(tone_corpus, tmp_path, capsys):
    """Every item altered (noise_prob 1): training runs from the audio, and the items differ from the
    stored features; one epoch, then the model decodes."""
    import torch

    from asrkit.checkpoint import load_checkpoint

    config = tmp_path / "c.yaml"
    data = yaml.safe_load(TINY_CONFIG)
    data["train"].update(epochs=1, augment={"noise_prob": 1.0, "snr_min_db": 10, "snr_max_db": 10,
                                            "gain_prob": 0.5, "telephone_prob": 0.0})
    config.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(["train", "--train", tone_corpus["train"], "--out", tmp_path / "exp", "--config",
                            config], capsys)
    assert code == 0, err
    assert "augmentation: noise 1 at 10-10 dB SNR (coloured noise), gain 0.5" in (tmp_path / "exp" / "train.log").read_text()
    saved = load_checkpoint(tmp_path / "exp" / "last.pt").config["train"]["augment"]
    assert saved["noise_prob"] == 1.0

    from asrkit.data.augment import Augmenter
    from asrkit.data.datadir import DataDir
    from asrkit.data.dataset import WaveformAugment
    from asrkit.data.featstore import FeatureStore

    cfg = load_config(config)
    train = DataDir.load(tone_corpus["train"])
    store = FeatureStore(tone_corpus["train"])
    source = WaveformAugment({u.utt_id: u for u in train.utterances()}, Augmenter(cfg.train.augment, 8000),
                             cfg.feature)
    utt = train.utt_ids()[0]
    torch.manual_seed(0)
    altered = source.features(utt)
    assert altered.shape == store[utt].shape and not np.allclose(altered, store[utt])


# ---------------------------------------------------------------- telling the user

def test_input_warnings_name_what_is_far_from_training():
    x = speech_like()
    assert input_warnings(x, RATE, RATE) == []
    assert "clipped" in input_warnings(apply_gain(x, 20.0), RATE, RATE)[0]
    assert "very low" in input_warnings(x * np.float32(10 ** (-45 / 20)), RATE, RATE)[0]
    assert "8000 Hz" in input_warnings(x[::2], 8000, RATE)[0]
    assert "digital silence" in input_warnings(np.zeros(RATE, np.float32), RATE, RATE)[0]


def test_transcribe_warns_once_per_file_and_still_transcribes(trained_exp, tmp_path, capsys):
    quiet, clipped, fine = tmp_path / "quiet.wav", tmp_path / "clipped.wav", tmp_path / "fine.wav"
    x = tone_words(["a", "b"], 8000)
    soundfile.write(quiet, x * 10 ** (-45 / 20), 8000)
    soundfile.write(clipped, np.clip(x * 10, -1, 1), 8000)
    soundfile.write(fine, x, 8000)
    code, out, err = run_cli(["transcribe", trained_exp, quiet, clipped, fine], capsys)
    assert code == 0
    assert len(out.strip().splitlines()) == 3  # all three transcribed
    warned = [line for line in err.splitlines() if "the transcript may suffer" in line]
    assert len(warned) == 2
    assert any("quiet.wav" in w and "very low" in w for w in warned)
    assert any("clipped.wav" in w and "clipped" in w for w in warned)


# ---------------------------------------------------------------- what older models meant

def test_saved_configs_without_the_new_keys_keep_their_old_meaning(tmp_path):
    from asrkit.config import ExperimentConfig, save_config
    from asrkit.training.expdir import resolve_config

    out = tmp_path / "exp"
    out.mkdir()
    data = ExperimentConfig().to_dict()
    del data["feature"]["level_norm"], data["feature"]["utterance_cmn"], data["train"]["augment"]
    (out / "config.yaml").write_text(yaml.safe_dump(data))
    old = resolve_config(None, [], out, resume=True)
    assert old.feature.level_norm == "none" and not old.feature.utterance_cmn and not old.train.augment.enabled
    new = tmp_path / "new.yaml"
    save_config(ExperimentConfig(), new)
    assert load_config(new).feature.level_norm == "active" and load_config(new).train.augment.enabled


def test_a_feature_store_of_older_features_is_refused_for_the_new_config(tmp_path):
    """Features stored before level invariance hold none of it: the new config asks for a recompute
    (naming the key) instead of mixing the two."""
    import json

    from asrkit.data.datadir import DataDir
    from asrkit.data.featstore import compute_missing
    from asrkit.errors import DataDirError

    from conftest import make_tone_data_dir

    root = make_tone_data_dir(tmp_path / "d", 3, seed=5)
    legacy = FeatureConfig(sample_rate=8000, num_mel_bins=23, level_norm="none", utterance_cmn=False)
    compute_missing(DataDir.load(root), legacy)
    record = json.loads((root / "feats.json").read_text())
    del record["feature_config"]["level_norm"], record["feature_config"]["utterance_cmn"]  # as written then
    (root / "feats.json").write_text(json.dumps(record))
    compute_missing(DataDir.load(root), legacy)  # still the same config: nothing to redo, no error
    with pytest.raises(DataDirError, match="level_norm='none' \\(asked: 'active'\\)"):
        compute_missing(DataDir.load(root), FeatureConfig(sample_rate=8000, num_mel_bins=23))


def test_altered_items_come_from_dataloader_workers(tone_corpus):
    """On a GPU the DataLoader's workers read and alter the audio while the model computes."""
    import torch

    from asrkit.data.datadir import DataDir
    from asrkit.data.dataset import AsrDataset, WaveformAugment, collate
    from asrkit.data.featstore import FeatureStore, compute_missing

    cfg = load_config(None, ["feature.sample_rate=8000", "feature.num_mel_bins=23", "train.augment.noise_prob=1",
                             "train.augment.snr_min_db=5", "train.augment.snr_max_db=5"])
    train = DataDir.load(tone_corpus["train"])
    compute_missing(train, cfg.feature)
    store = FeatureStore(tone_corpus["train"])
    ids = train.utt_ids()[:4]
    source = WaveformAugment({u.utt_id: u for u in train.utterances()}, Augmenter(cfg.train.augment, 8000), cfg.feature)
    dataset = AsrDataset(ids, store, {u: [1] for u in ids}, waveforms=source)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate, num_workers=1)
    (batch,) = list(loader)
    for row, utt in enumerate(batch.utt_ids):
        frames = int(batch.feat_lens[row])
        assert frames == store[utt].shape[0]
        assert not np.allclose(batch.feats[row, :frames].numpy(), store[utt])


# ---------------------------------------------------------------- rooms and talkers


def test_simulated_rooms_are_made_once_and_kept_in_the_experiment_dir(tmp_path, caplog):
    from asrkit.data.augment import SimulatedRooms

    cfg = AugmentConfig(simulated_rirs=6, rt60_min=0.3, rt60_max=0.5)
    first = SimulatedRooms(cfg, 8000, tmp_path / "rirs.npz", seed=1)
    assert len(first) == 6 and (tmp_path / "rirs.npz").is_file()
    again = SimulatedRooms(cfg, 8000, tmp_path / "rirs.npz", seed=1)  # read back: the same rooms
    assert all(np.array_equal(a, b) for a, b in zip(first.responses, again.responses))
    other = SimulatedRooms(AugmentConfig(simulated_rirs=6, rt60_min=0.6, rt60_max=0.8), 8000, tmp_path / "rirs.npz", 1)
    assert not np.array_equal(other.responses[0], first.responses[0])  # other settings: made again
    (tmp_path / "rirs.npz").write_bytes(b"not a numpy archive")
    with caplog.at_level("WARNING", logger="asrkit"):
        rebuilt = SimulatedRooms(other.responses and AugmentConfig(simulated_rirs=6, rt60_min=0.6, rt60_max=0.8),
                                 8000, tmp_path / "rirs.npz", 1)
    assert len(rebuilt) == 6 and "is damaged" in caplog.text and "simulating the rooms again" in caplog.text
    assert np.load(tmp_path / "rirs.npz")["ends"].size == 6  # and written again


def test_simulated_reverberation_keeps_length_level_and_timing():
    from asrkit.data.augment import SimulatedRooms

    augmenter = Augmenter(AugmentConfig(simulated_rirs=4, reverb_prob=1.0, noise_prob=0, gain_prob=0,
                                        telephone_prob=0), 8000)
    assert isinstance(augmenter.rirs, SimulatedRooms) and "4 simulated rooms" in augmenter.describe()
    click = np.zeros(8000, dtype=np.float32)
    click[4000] = 1.0
    wet = augmenter.apply(click, ["reverb"], np.random.default_rng(0))
    assert len(wet) == len(click)
    assert np.flatnonzero(np.abs(wet) > 1e-6)[0] == 4000  # nothing before the direct path: labels keep their times
    speech = speech_like()
    wet = augmenter.apply(speech, ["reverb"], np.random.default_rng(1))
    assert abs(power_db(wet) - power_db(speech)) < 0.5


def test_competing_talkers_come_from_other_speakers_at_the_drawn_snr(tmp_path):
    from asrkit.data.augment import TalkerPool
    from asrkit.data.datadir import Utterance

    voices, pitch = {}, {"alice": 300.0, "bob": 700.0}  # each speaker a tone of their own
    for speaker, hz in pitch.items():
        voices[speaker] = tmp_path / f"{speaker}.wav"
        soundfile.write(voices[speaker], 0.2 * np.sin(2 * np.pi * hz * np.arange(12000) / 8000), 8000)
    utts = [Utterance(f"{s}-1", str(path), "a", s) for s, path in voices.items()]
    augmenter = Augmenter(AugmentConfig(babble_prob=1.0, babble_talkers=1, babble_snr_min_db=10,
                                        babble_snr_max_db=10, noise_prob=0, gain_prob=0, telephone_prob=0), 8000)
    augmenter.use_training_talkers(utts)
    assert "babble 1, 1-1 talkers at 10-10 dB (the training set)" in augmenter.describe()
    alice = read_audio(voices["alice"])[0]
    for seed in range(5):  # alice's utterance only ever gets bob's voice
        mixed = augmenter.apply(alice, ["babble"], np.random.default_rng(seed), speaker="alice")
        added = mixed - alice
        assert abs(power_db(alice) - power_db(added) - 10) < 0.2
        peak = np.fft.rfftfreq(len(added), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(added)))]
        assert peak == pytest.approx(pitch["bob"], abs=5)
    with pytest.raises(ConfigError, match="at least two speakers"):
        TalkerPool(utts[:1], 8000)


def test_tempo_changes_the_duration_and_keeps_the_pitch():
    augmenter = Augmenter(AugmentConfig(tempo_prob=1.0, tempo_min=1.25, tempo_max=1.25, noise_prob=0,
                                        gain_prob=0, telephone_prob=0), 8000)
    t = np.arange(16000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    faster = augmenter.apply(tone, augmenter.draw(np.random.default_rng(0)), np.random.default_rng(0))
    assert len(faster) == pytest.approx(len(tone) / 1.25, rel=0.01)
    spectrum = np.abs(np.fft.rfft(faster))
    assert np.fft.rfftfreq(len(faster), 1 / 8000)[np.argmax(spectrum)] == pytest.approx(440, abs=5)


def test_the_new_kinds_draw_nothing_new_when_off():
    """Configs without babble or tempo draw exactly what they drew before these keys (a resumed run
    sees the same items)."""
    old = Augmenter(AugmentConfig(), 8000)
    draws = [old.draw(np.random.default_rng(seed)) for seed in range(200)]
    rngs = [np.random.default_rng(seed) for seed in range(200)]
    for rng, kinds in zip(rngs, draws):
        chances = rng.random(4)
        assert kinds == [k for k, p, u in zip(("reverb", "noise", "telephone", "gain"), (0.0, 0.15, 0.05, 0.1),
                                               chances) if u < p]


def test_training_with_rooms_talkers_and_tempo(tone_corpus, tmp_path, capsys):
    """One epoch with every new kind on: the rooms are simulated into the exp dir, the talkers come
    from the training set, and a resumed run reads the same rooms back."""
    config = tmp_path / "c.yaml"
    data = yaml.safe_load(TINY_CONFIG)
    data["train"].update(epochs=1, augment={"noise_prob": 0.0, "gain_prob": 0.0, "telephone_prob": 0.0,
                                            "reverb_prob": 0.5, "simulated_rirs": 8, "babble_prob": 0.5,
                                            "tempo_prob": 0.5})
    config.write_text(yaml.safe_dump(data))
    exp = tmp_path / "exp"
    code, _, err = run_cli(["train", "--train", tone_corpus["train"], "--out", exp, "--config", config], capsys)
    assert code == 0, err
    log = (exp / "train.log").read_text()
    assert "tempo 0.5 in 0.8..1.25, reverb 0.5 (8 simulated rooms, RT60 0.2-0.9 s, talker at 0.5-4 m), " \
           "babble 0.5, 1-3 talkers at 5-20 dB (the training set)" in log
    rooms = (exp / "rirs.npz").read_bytes()
    code, _, err = run_cli(["train", "--out", exp, "--resume", "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    assert (exp / "rirs.npz").read_bytes() == rooms
