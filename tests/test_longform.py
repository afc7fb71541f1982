"""Long recordings: energy-based segmentation, and decoding a long file like its pieces."""

import numpy as np
import soundfile

from asrkit.recognize.longform import split_on_silence
from asrkit.scoring import score

from conftest import TONES, tone_words


def test_cuts_fall_in_pauses_and_segments_stay_short():
    rate = 8000
    rng = np.random.default_rng(0)
    pieces, pauses, position = [], [], 0
    for _ in range(46):
        pieces.append(rng.normal(0, 0.3, rate))
        position += rate
        pieces.append(rng.normal(0, 0.001, int(0.3 * rate)))
        pauses.append((position, position + int(0.3 * rate)))
        position += int(0.3 * rate)
    audio = np.concatenate(pieces)
    segments = split_on_silence(audio, rate, max_seconds=10, min_seconds=3)
    assert segments[0][0] == 0 and segments[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))  # no gap, no overlap
    assert all(end - start <= 10 * rate for start, end in segments)
    assert all(any(s <= end <= e for s, e in pauses) for _, end in segments[:-1])
    assert split_on_silence(audio[:rate], rate) == [(0, rate)]
    flat = split_on_silence(np.zeros(25 * rate, np.float32), rate, max_seconds=10, min_seconds=3)
    assert all(end - start <= 10 * rate for start, end in flat)  # silence everywhere still ends up cut


def test_long_file_decodes_like_its_pieces(trained_exp, tmp_path):
    from asrkit.recognize.recognizer import Recognizer

    rng = np.random.default_rng(7)
    words_list = [[str(rng.choice(list(TONES))) for _ in range(int(rng.integers(1, 4)))] for _ in range(24)]
    pieces, paths = [], []
    for i, words in enumerate(words_list):
        audio = tone_words(words, seed=100 + i)
        pieces.append(audio)
        paths.append(tmp_path / f"piece{i:02d}.wav")
        soundfile.write(paths[-1], audio, 8000)
    long_path = tmp_path / "long.wav"
    soundfile.write(long_path, np.concatenate(pieces), 8000)  # ~25 s
    recognizer = Recognizer(trained_exp)
    refs = {"all": " ".join(" ".join(w) for w in words_list)}
    one_by_one = " ".join(r.text for r in recognizer.transcribe_files(paths))
    # segments about as long as the training utterances (the tiny model saw 0.5-1 s)
    (long,) = recognizer.transcribe_files([long_path], max_seconds=2.0, with_words=True)
    pieces_wer = score(refs, {"all": one_by_one}).wer
    long_wer = score(refs, {"all": long.text}).wer
    # at most one word more: each segment is normalised on its own (feature.utterance_cmn), and
    # 2 s segments have other statistics than the pieces do
    assert long_wer <= pieces_wer + 1.01 / len(refs["all"].split()), (long_wer, pieces_wer)
    assert len(long.words) == len(long.text.split())
    starts = [w.start for w in long.words]
    assert starts == sorted(starts) and long.words[-1].end <= len(np.concatenate(pieces)) / 8000 + 0.1
    assert len(long.hypothesis.timesteps) == len(long.hypothesis.tokens)
