"""The browser page in a real browser: Debian's chromium, headless, driven by Playwright, its
microphone a WAV file (Chrome's fake capture device). The text the page shows for the file equals
what ``transcribe --stream --endpoint`` prints for it; a dropped file shows ``transcribe``'s text.
Skips only where chromium is not installed (``apt-get install -y chromium``; .ci/run installs it).

Two microphones: spoken digits (the digits recipe's test voices) into that recipe's streaming
model, trained here, and tone words into the tone model.

Chrome's fake microphone runs at its own rate (44.1 kHz) and converts a file at any other rate with
its own resampler, so each WAV is written at the device's rate: the page then sends the file's own
samples (checked, from the socket's frames), which the server resamples as ``transcribe`` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkit.data.datadir import DataDir

from conftest import run_cli, tone_words

pytest.importorskip("uvicorn", reason="the server's packages: pip install 'asrkit[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra has it)")

CHROMIUM = os.environ.get("ASRKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

DIGITS_STREAM = Path(__file__).resolve().parents[1] / "recipes" / "digits" / "conf" / "unilstm_stream.yaml"
SPOKEN = ["en-gb-x-rp_f3-000", "en-gb-x-rp_f3-002", "en-gb-x-rp_f3-005"]  # test voices, never heard in training

def browser(playwright, wav: Path | None = None):
    capture = [f"--use-file-for-fake-audio-capture={wav}%noloop"] if wav else []
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", *capture,
        "--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])


def device_rate(url: str, probe: Path) -> int:
    """The sample rate of chromium's fake microphone when it plays a file, opened as the page opens
    it (44.1 kHz here, whatever the file's rate; with echo cancellation on it would be 48 kHz), which
    must be its AudioContext's (the page's) rate for the file to pass unchanged."""
    soundfile.write(probe, np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    with sync_api.sync_playwright() as playwright:
        chrome = browser(playwright, probe)
        page = chrome.new_page()
        page.goto(url + "/healthz")
        rate = page.evaluate("""async () => {  // as the page opens them: no processing, the context's rate
            const stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1,
                echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
            const rates = [stream.getAudioTracks()[0].getSettings().sampleRate, new AudioContext().sampleRate];
            stream.getTracks().forEach((track) => track.stop());
            return rates; }""")
        assert rate[0] == rate[1], f"chromium's fake microphone at {rate[0]} Hz, its AudioContext at {rate[1]} Hz"
        rate = rate[1]
        chrome.close()
    return int(rate)


def write_at(path: Path, pieces: list[np.ndarray], rate: int, device: int) -> Path:
    """The pieces (float32 at ``rate``) joined, resampled to the device's rate, as a 16-bit WAV that
    starts with 100 ms of digital silence: chromium's fake device zeroes a file's first 10-20 ms
    (and sends some zeros of its own first), so the file's own sound must begin later to arrive
    whole."""
    import soxr

    audio = np.concatenate([np.zeros(rate // 10, np.float32), *pieces])
    soundfile.write(path, np.clip(soxr.resample(audio, rate, device, quality="VHQ"), -1, 1), device,
                    subtype="PCM_16")
    return path


def speak_to_the_page(url: str, wav: Path, screenshot: str | None = None) -> tuple[list[str], str, np.ndarray]:
    """Open the page at ``url`` in chromium with ``wav`` as its microphone: start, let the file play,
    stop; then pick the file in the drop zone. Returns (the final lines shown, the file's text, the
    PCM16 samples the page sent on its socket)."""
    seconds = soundfile.info(wav).duration
    sent: list[bytes] = []
    with sync_api.sync_playwright() as playwright:
        chrome = browser(playwright, wav)
        page = chrome.new_page(viewport={"width": 900, "height": 520})
        page.on("websocket", lambda socket: socket.on(
            "framesent", lambda payload: sent.append(payload) if isinstance(payload, bytes) else None))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=yes]", timeout=15000)
        page.click("#mic")
        page.wait_for_selector("body[data-state=live]", timeout=15000)
        page.wait_for_timeout(int(seconds * 1000) + 500)  # the file plays in real time, then silence
        page.click("#mic")  # stop: the last final comes, then the server closes the socket
        page.wait_for_selector("body[data-state=done]", timeout=20000)
        shown = [t.strip() for t in page.locator("#finals .text").all_inner_texts()]
        page.set_input_files("#file", str(wav))  # the file picker (the drop zone's other way in)
        page.wait_for_function("document.querySelector('#file-result').className === 'file-result'",
                               timeout=30000)
        dropped = page.locator("#file-result").inner_text().strip()
        if screenshot:
            page.screenshot(path=screenshot)
        chrome.close()
    return shown, dropped, np.frombuffer(b"".join(sent), dtype="<i2")


def assert_sent_the_file(sent: np.ndarray, wav: Path) -> None:
    """The page sent the file's samples unchanged, after some digital silence of the device's own."""
    samples, _ = soundfile.read(wav, dtype="int16")
    offset = int(np.flatnonzero(sent)[0]) - int(np.flatnonzero(samples)[0])
    assert offset >= 0 and np.array_equal(sent[offset:offset + len(samples)], samples), (
        f"the page did not send {wav.name}'s samples ({len(sent)} sent, {len(samples)} in the file)")


def page_equals_cli(exp: Path, wav: Path, capsys, screenshot: str | None = None) -> list[str]:
    from test_serve import Server

    code, out, _ = run_cli(["transcribe", exp, wav, "--stream", "--endpoint"], capsys)
    assert code == 0
    want = [line.split("\t", 1)[1] for line in out.splitlines()]
    server = Server(exp)
    try:
        shown, dropped, sent = speak_to_the_page(server.url, wav, screenshot)
    finally:
        server.stop()
    assert_sent_the_file(sent, wav)
    assert shown == want, f"page: {shown!r}, transcribe --stream: {want!r}"
    assert dropped == run_cli(["transcribe", exp, wav], capsys)[1].strip()
    return want


@pytest.fixture(scope="module")
def rate(stream_exp, tmp_path_factory) -> int:
    from test_serve import Server

    server = Server(stream_exp)
    try:
        return device_rate(server.url, tmp_path_factory.mktemp("probe") / "silence.wav")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def digits_stream(tmp_path_factory):
    """The digits recipe's streaming model (conf/unilstm_stream.yaml: a unidirectional LSTM with 2
    frames of lookahead; dev WER 0% after its 25 epochs, about 60 s here) and its test data dir."""
    pytest.importorskip("espeakng_loader", reason="the digits corpus is synthesised: pip install 'asrkit[demo]'")
    from asrkit.cli import main

    root = tmp_path_factory.mktemp("digits_stream")
    # in a process of its own: eSpeak initialised twice in one process does not start from scratch,
    # and test_corpora checks that the corpus is the same from run to run
    args = ["-q", "prepare", "digits", "--out", str(root / "data")]
    subprocess.run([sys.executable, "-c", f"from asrkit.cli import main; raise SystemExit(main({args!r}))"], check=True)
    assert main(["-q", "train", "--train", str(root / "data/train"), "--dev", str(root / "data/dev"),
                 "--config", str(DIGITS_STREAM), "--out", str(root / "exp")]) == 0
    return root / "exp", DataDir.load(root / "data/test")


def test_the_page_shows_what_transcribe_stream_prints_for_spoken_digits(digits_stream, rate, capsys, tmp_path):
    """Three test utterances of the digits corpus (voices the model never heard), 2 s apart: the
    page's lines equal ``transcribe --stream --endpoint``'s."""
    from asrkit.data.audio import read_audio, resample

    exp, test = digits_stream
    pieces = []
    for utt in SPOKEN:
        samples, file_rate = read_audio(test.wav_scp[utt])
        pieces += [resample(samples, file_rate, 16000), np.zeros(32000, np.float32)]
    want = page_equals_cli(exp, write_at(tmp_path / "digits.wav", pieces, 16000, rate), capsys)
    assert len(want) == len(SPOKEN) and all(want), want  # one line per utterance (right or wrong: ~5% WER)


def test_the_page_shows_what_transcribe_stream_prints_for_tones(stream_exp, rate, capsys, tmp_path):
    """Two utterances of tones, 2 s apart (the endpoint cuts there), with silence after them."""
    pieces = [tone_words(["a", "b", "a"], seed=71), np.zeros(16000, np.float32),
              tone_words(["b", "a"], seed=72), np.zeros(8000, np.float32)]
    want = page_equals_cli(stream_exp, write_at(tmp_path / "tones.wav", pieces, 8000, rate), capsys,
                           str(tmp_path / "page.png"))
    assert len(want) == 2


if __name__ == "__main__":  # the README's screenshot: python tests/test_browser.py EXP WAV OUT.png
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_serve import Server

    running = Server(Path(sys.argv[1]))
    try:
        print(speak_to_the_page(running.url, Path(sys.argv[2]).resolve(), sys.argv[3])[:2])
    finally:
        running.stop()
