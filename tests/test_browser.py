"""The browser page in a real browser: Debian's chromium, headless, driven by Playwright, its
microphone a WAV file (Chrome's fake capture device). The text the page shows for the file equals
what ``transcribe --stream --endpoint`` prints for it; a dropped file shows ``transcribe``'s text.
Skips only where chromium is not installed (``apt-get install -y chromium``; .ci/run installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import soundfile

from conftest import run_cli, tone_words

pytest.importorskip("uvicorn", reason="the server's packages: pip install 'asrkit[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra has it)")

CHROMIUM = os.environ.get("ASRKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> Path:
    """What the fake microphone says: two utterances of tones as a 16-bit WAV, 2 s apart (the
    endpoint cuts there), with silence after them."""
    import numpy as np

    path = tmp_path_factory.mktemp("browser") / "spoken.wav"
    audio = np.concatenate([tone_words(["a", "b", "a"], seed=71), np.zeros(16000, np.float32),
                            tone_words(["b", "a"], seed=72), np.zeros(8000, np.float32)])
    soundfile.write(path, audio, 8000, subtype="PCM_16")
    return path


def browser(playwright, wav: Path):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])


def speak_to_the_page(url: str, wav: Path, screenshot: str | None = None) -> tuple[list[str], str]:
    """Open the page at ``url`` in chromium with ``wav`` as its microphone: start, let the file play,
    stop; then pick the file in the drop zone. Returns (the final lines shown, the file's text)."""
    seconds = soundfile.info(wav).duration
    with sync_api.sync_playwright() as playwright:
        chrome = browser(playwright, wav)
        page = chrome.new_page(viewport={"width": 900, "height": 520})
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=yes]", timeout=15000)
        page.click("#mic")
        page.wait_for_selector("body[data-state=live]", timeout=15000)
        page.wait_for_timeout(int(seconds * 1000) + 2500)  # the file plays in real time, then silence
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
    return shown, dropped


def test_the_page_shows_what_transcribe_stream_prints(stream_exp, spoken, capsys, tmp_path):
    from test_serve import Server

    code, out, _ = run_cli(["transcribe", stream_exp, spoken, "--stream", "--endpoint"], capsys)
    assert code == 0
    want = [line.split("\t", 1)[1] for line in out.splitlines()]
    assert len(want) == 2
    server = Server(stream_exp)
    try:
        shown, dropped = speak_to_the_page(server.url, spoken, str(tmp_path / "page.png"))
    finally:
        server.stop()
    assert shown == want, f"page: {shown!r}, transcribe --stream: {want!r}"
    assert dropped == run_cli(["transcribe", stream_exp, spoken], capsys)[1].strip()


if __name__ == "__main__":  # the README's screenshot: python tests/test_browser.py EXP WAV OUT.png
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_serve import Server

    running = Server(Path(sys.argv[1]))
    try:
        print(speak_to_the_page(running.url, Path(sys.argv[2]).resolve(), sys.argv[3]))
    finally:
        running.stop()
