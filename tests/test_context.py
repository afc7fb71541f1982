"""The context graph (asrkit.search.context): its states, moved token by token, give the definition's
score (``context_score``: completed whole-word phrases, plus the match in progress) of every prefix
of random token sequences, for the three kinds of word boundary; and the hotword file's errors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from asrkit.errors import DecodeError
from asrkit.search.context import ContextGraph, Phrase, context_score, read_hotwords
from asrkit.tokenizer import CharTokenizer

SPACE = 1


def walk(graph: ContextGraph, tokens: list[int]) -> list[float]:
    """The graph's score after each prefix (completed + partial), and at the end the final score."""
    node, done, scores = np.array(0), 0.0, []
    for t in tokens:
        node, gain = graph.step(node, np.array(t))
        done += float(gain)
        scores.append(done + float(graph.partial[node]))
    scores.append(done + float(graph.final(node)))
    return scores


def random_phrases(rng: random.Random, mode: str, vocab: int, starts) -> list[Phrase]:
    letters = [t for t in range(2, vocab)]
    phrases = []
    for _ in range(rng.randint(1, 6)):
        words = []
        for _ in range(rng.randint(1, 3)):
            word = [rng.choice(letters) for _ in range(rng.randint(1, 3))]
            if mode == "starts":
                word[0] = rng.choice([t for t in letters if starts[t]])
                word[1:] = [rng.choice([t for t in letters if not starts[t]]) for _ in word[1:]]
            words.append(word)
        phrases.append(Phrase(tuple(joined(words, mode)), rng.choice([1.0, 1.5, 2.0])))
    return phrases


def joined(words: list[list[int]], mode: str) -> list[int]:
    """Words as one token sequence (a separator between them, where the boundary is one)."""
    tokens = []
    for i, word in enumerate(words):
        if mode == "separator" and i:
            tokens.append(SPACE)
        tokens += word
    return tokens


def random_text(rng: random.Random, mode: str, phrases: list[Phrase], vocab: int, starts) -> list[int]:
    """Words: often a phrase's words (or a start of them), sometimes other letters; never two
    separators in a row, none first or last (the search's own rules)."""
    words = []
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.6:
            phrase = list(rng.choice(phrases).tokens)
            cut = rng.randint(1, len(phrase)) if rng.random() < 0.3 else len(phrase)
            piece = phrase[:cut]
        else:
            piece = [rng.randint(2, vocab - 1) for _ in range(rng.randint(1, 3))]
            if mode == "starts" and not starts[piece[0]]:
                piece[0] = rng.choice([t for t in range(2, vocab) if starts[t]])
        if mode == "separator":
            piece = [t for t in piece if t != SPACE] or [2]
        words.append(piece)
    return joined(words, mode)


@pytest.mark.parametrize("mode", ["separator", "starts", "none"])
def test_the_graph_scores_every_prefix_as_the_definition(mode):
    rng = random.Random(5 + len(mode))
    checked = completed = 0
    for case in range(300):
        vocab = rng.randint(4, 9)
        starts = [False, False] + [rng.random() < 0.5 for _ in range(vocab - 2)]
        starts[2] = True
        if mode == "starts":
            starts[3] = False
        phrases = random_phrases(rng, mode, vocab, starts)
        graph = ContextGraph(phrases, vocab, space_id=SPACE if mode == "separator" else None,
                             word_starts=starts if mode == "starts" else None)
        tokens = random_text(rng, mode, phrases, vocab, starts)
        scores = walk(graph, tokens)
        for n in range(len(tokens)):
            want = context_score(tokens[:n + 1], graph, final=False)
            assert abs(scores[n] - want) < 1e-9, (case, tokens[:n + 1], phrases, scores[n], want)
            checked += 1
        final = context_score(tokens, graph, final=True)
        assert abs(scores[-1] - final) < 1e-9, (case, tokens, phrases, scores[-1], final)
        completed += final > 0
    assert checked > 1000 and completed > 50


def test_whole_words_only_and_a_failed_match_gives_back():
    tokenizer = CharTokenizer(["<blank>", "<unk>", "<space>"] + list("acnost"))
    cat = Phrase(tuple(tokenizer.encode("cat")), 1.0)
    graph = ContextGraph([cat], len(tokenizer), space_id=2)
    assert context_score(tokenizer.encode("a cat"), graph) == 3.0
    assert context_score(tokenizer.encode("a cats"), graph) == 0.0  # "cat" does not end a word there
    assert context_score(tokenizer.encode("concat"), graph) == 0.0  # nor begin one
    scores = walk(graph, tokenizer.encode("cats"))
    assert scores[:3] == [1.0, 2.0, 3.0] and scores[3] == 0.0 and scores[-1] == 0.0  # earned, then given back


def test_hotword_files_say_what_is_wrong_and_where(tmp_path):
    tokenizer = CharTokenizer(["<blank>", "<unk>", "<space>"] + list("abc"))
    good = tmp_path / "good"
    good.write_text("# names\nab c\t2.5\n\nba\n")
    phrases = read_hotwords(good, tokenizer, 1.0)
    assert [p.weight for p in phrases] == [2.5, 1.0] and phrases[0].tokens == tuple(tokenizer.encode("ab c"))
    for text, words in (("ab\tlots\n", "good2:1: weight 'lots' is not a number"),
                        ("ab\nxyz\n", "good2:2: 'xyz' has characters the model has no token for"),
                        ("\n# nothing\n", "holds no phrase")):
        (tmp_path / "good2").write_text(text)
        with pytest.raises(DecodeError, match=words):
            read_hotwords(tmp_path / "good2", tokenizer, 1.0)
    with pytest.raises(DecodeError, match="does not exist"):
        read_hotwords(tmp_path / "missing", tokenizer, 1.0)
