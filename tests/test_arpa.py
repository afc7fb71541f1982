"""The compact ARPA table: gzip input, exact back-off against a plain reference, bad files."""

import gzip
import random

import pytest

from asrkit.errors import LmError
from asrkit.search.arpa import OOV_LOG10, ArpaLM
from asrkit.search.lm import build_arpa


def reference_tables(text: str):
    """(order, {ngram words: (log10 p, back-off)}) read the obvious way."""
    entries, order = {}, 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1:-7])
        elif order and line and line != "\\end\\":
            parts = line.split()
            entries[tuple(parts[1:order + 1])] = (float(parts[0]), float(parts[order + 1]) if len(parts) > order + 1 else 0.0)
    return max(len(k) for k in entries), entries


def reference_score(order, entries, history: tuple[str, ...], word: str) -> float:
    """log10 P(word | history) by the ARPA back-off rule, on word tuples."""
    history = history[len(history) - (order - 1):] if order > 1 else ()
    penalty = 0.0
    for start in range(len(history) + 1):
        context = history[start:]
        if context + (word,) in entries:
            return entries[context + (word,)][0] + penalty
        penalty += entries.get(context, (0.0, 0.0))[1]
    raise AssertionError("every word has a 1-gram")


def random_sentences(seed: int, vocab: str = "abcdef") -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(vocab) * rng.randint(1, 2) for _ in range(rng.randint(1, 6))] for _ in range(25)]


@pytest.mark.parametrize("seed", range(4))
def test_every_score_matches_the_back_off_rule_on_words(seed):
    text = build_arpa(random_sentences(seed), order=1 + seed % 3 + (seed == 3))
    lm = ArpaLM.parse(text.splitlines())
    order, entries = reference_tables(text)
    words = [w for w in lm.words if w != "<s>"]
    rng = random.Random(seed)
    for _ in range(300):
        history = tuple(rng.choice(lm.words) for _ in range(rng.randint(0, order)))
        word = rng.choice(words)
        logp, _ = lm.score(tuple(lm.index[w] for w in history), lm.index[word])
        assert logp == pytest.approx(reference_score(order, entries, history, word), abs=1e-9)
    assert sorted(tuple(lm.words[i] for i in ngram) for ngram in lm.ngrams()) == sorted(entries)
    assert lm.num_ngrams == len(entries)


def test_the_context_cache_stays_bounded_and_scores_stay_right(monkeypatch):
    text = build_arpa(random_sentences(7, vocab="abcdefghij"), order=3)
    lm = ArpaLM.parse(text.splitlines())
    monkeypatch.setattr(lm, "context_cache_size", 5)
    order, entries = reference_tables(text)
    rng = random.Random(7)
    words = [w for w in lm.words if w != "<s>"]
    for _ in range(400):
        history = tuple(rng.choice(lm.words) for _ in range(rng.randint(0, order)))
        word = rng.choice(words)
        logp, _ = lm.score(tuple(lm.index[w] for w in history), lm.index[word])
        assert logp == pytest.approx(reference_score(order, entries, history, word), abs=1e-9)
        assert len(lm._rows) <= 5


def test_gzipped_arpa_reads_like_the_plain_file(tmp_path):
    text = build_arpa(random_sentences(7), order=3)
    (tmp_path / "lm.arpa").write_text(text)
    with gzip.open(tmp_path / "lm.arpa.gz", "wt") as handle:
        handle.write(text)
    plain, zipped = ArpaLM.load(tmp_path / "lm.arpa"), ArpaLM.load(tmp_path / "lm.arpa.gz")
    assert plain.words == zipped.words and list(plain.ngrams()) == list(zipped.ngrams())
    for sentence in random_sentences(8):
        assert plain.sentence_log10(sentence) == zipped.sentence_log10(sentence)


def test_truncated_gzip_is_one_clear_error(tmp_path):
    data = gzip.compress(build_arpa(random_sentences(1), order=2).encode())
    (tmp_path / "lm.arpa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LmError, match=r"lm.arpa.gz line \d+: cannot be read, truncated or corrupt") as error:
        ArpaLM.load(tmp_path / "lm.arpa.gz")
    assert "\n" not in str(error.value)


def test_wrong_counts_in_a_gzipped_arpa_name_the_count_line(tmp_path):
    text = build_arpa(random_sentences(2), order=2).replace("ngram 2=", "ngram 2=1", 1)
    with gzip.open(tmp_path / "lm.arpa.gz", "wt") as handle:
        handle.write(text)
    with pytest.raises(LmError, match=r"lm.arpa.gz line 3: \\data\\ announces 1\d+ 2-grams, the file has"):
        ArpaLM.load(tmp_path / "lm.arpa.gz")


def test_an_n_gram_without_its_context_is_left_out_as_the_back_off_rule_never_reaches_it(caplog):
    text = ("\\data\\\nngram 1=4\nngram 2=1\nngram 3=2\n\n\\1-grams:\n-1 </s>\n-99 <s> -0.1\n-0.5 a -0.2\n"
            "-0.6 b -0.3\n\n\\2-grams:\n-0.4 <s> a -0.05\n\n\\3-grams:\n-0.1 <s> a b\n-0.2 a a b\n\\end\\\n")
    lm = ArpaLM.parse(text.splitlines(), "gap.arpa")
    assert "1 3-grams left out" in caplog.text
    a, b, bos = lm.index["a"], lm.index["b"], lm.index["<s>"]
    assert lm.score((bos, a), b)[0] == pytest.approx(-0.1)
    assert lm.score((a, a), b)[0] == pytest.approx(-0.2 - 0.6)  # 'a a' is no entry: back-off of 'a', P(b)
    assert lm.score((), -1) == (OOV_LOG10, ())


@pytest.mark.parametrize("text,message", [
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1 a\n-1 a\n\\end\\\n", "1-gram 'a' listed twice"),
    ("\\data\\\nngram 1=1\nngram 2=2\n\n\\1-grams:\n-1 a\n\n\\2-grams:\n-1 a a\n-2 a a\n\\end\\\n",
     "2-gram is listed twice"),
    ("\\data\\\n\\1-grams:\n-1 a\n\\end\\\n", "must list ngram 1="),
])
def test_malformed_tables_are_one_clear_error(text, message):
    with pytest.raises(LmError, match=message):
        ArpaLM.parse(text.splitlines(), "bad.arpa")
