"""benchmarks/robustness.py at a small size: the digits test set (synthesised, 2 utterances per
voice) altered every way the benchmark knows, decoded with the session's tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import soundfile

from asrkit.data.datadir import DataDir

ROOT = Path(__file__).resolve().parents[1]


def test_robustness_benchmark_builds_every_copy_and_prints_every_row(trained_exp, tmp_path):
    from asrkit.corpora import digits

    digits.prepare(None, tmp_path / "digits", utts_per_voice=2)
    test = tmp_path / "digits" / "test"
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"), str(trained_exp / "best.pt"),
                           str(test), "--work", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    import importlib.util

    spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert list(figures) == list(benchmark.CONDITIONS)
    assert {"reverb_0.3_near", "reverb_0.8_far", "babble_10db", "tempo_1.2", "mulaw_8k"} <= set(figures)
    reference_words = sum(len(line.split()) - 1 for line in (test / "text").read_text().splitlines())
    clean = figures["clean"]["wer"]
    rows = {line[:46].strip(): line[46:].split() for line in done.stdout.splitlines()[2:]}
    for name, row in figures.items():
        target, description = benchmark.CONDITIONS[name]
        assert row["words"] == reference_words, name  # every copy holds every utterance of the test set
        assert row["wer"] == row["errors"] / row["words"] and row["target"] == target, name
        assert row["ratio"] == (row["wer"] / clean if clean > 0 else (float("inf") if row["wer"] > 0 else 1.0))
        if name.startswith("reverb_"):  # the copy's mean direct-to-reverberant ratio, printed with it
            description += f" (DRR {row['drr_db']:+.0f} dB)"
        printed = rows[description]  # the printed row says what the JSON says
        assert printed[0] == f"{100 * row['wer']:.2f}%" and printed[2] == f"{row['ratio']:.2f}x", (name, printed)
        if target is None:
            assert printed[-1] == "-", (name, printed)  # a figure only: no target
        elif name != "clean":
            assert printed[-1] == ("met" if row["ratio"] <= target else "MISSED"), (name, printed)
    for rt60 in ("0.3", "0.5", "0.8"):  # the talker near the microphone: more direct sound than far away
        assert figures[f"reverb_{rt60}_near"]["drr_db"] > figures[f"reverb_{rt60}_far"]["drr_db"] + 5

    def info(condition):
        copy = DataDir.load(tmp_path / "work" / condition)
        return soundfile.info(next(iter(copy.wav_scp.values())))
    assert info("stereo_silent").channels == 2
    assert info("rate_8k").samplerate == 8000
    assert info("flac_44k").samplerate == 44100 and info("flac_44k").format == "FLAC"
    assert info("ogg").format == "OGG"
    assert info("mulaw_8k").samplerate == 8000 and info("mulaw_8k").subtype == "ULAW"
    assert info("tempo_1.2").duration < info("clean").duration < info("tempo_0.8").duration
    assert len(done.stdout.strip().splitlines()) == 2 + len(figures)  # header lines + one row per condition


def _benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curve_points_are_conditions_and_nonsense_is_refused(trained_exp, tmp_path):
    benchmark = _benchmark()
    assert benchmark.describe("babble_0db") == (None, "3 competing talkers at 0 dB")
    assert benchmark.describe("babble_-5db") == (None, "3 competing talkers at -5 dB")
    assert benchmark.describe("tempo_1.3") == (None, "tempo 1.3")
    assert benchmark.describe("reverb_1.2_far") == (None, "RT60 1.2 s, talker at 4.0 m")
    assert benchmark.describe("tempo_1.2") == benchmark.CONDITIONS["tempo_1.2"]  # a named one keeps its target
    for bad in ("tempo_0", "tempo_x", "babble_10", "reverb_0.5_mid", "wobble"):
        try:
            benchmark.describe(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    from asrkit.corpora import digits

    digits.prepare(None, tmp_path / "digits", utts_per_voice=1)
    test = tmp_path / "digits" / "test"
    out = tmp_path / "figures.json"
    run = [sys.executable, str(ROOT / "benchmarks" / "robustness.py"), str(trained_exp / "best.pt"), str(test),
           "--work", str(tmp_path / "work"), "--json", str(out)]
    done = subprocess.run(run + ["--conditions", "babble_0db,tempo_1.3"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert list(figures) == ["clean", "babble_0db", "tempo_1.3"]
    assert any(line.startswith("tempo 1.3 ") for line in done.stdout.splitlines())
    assert soundfile.info(next(iter(DataDir.load(tmp_path / "work" / "tempo_1.3").wav_scp.values()))).duration < \
        soundfile.info(next(iter(DataDir.load(tmp_path / "work" / "clean").wav_scp.values()))).duration
    refused = subprocess.run(run + ["--conditions", "tempo_0,babble_0db"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "unknown conditions tempo_0" in refused.stderr
