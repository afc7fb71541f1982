"""Contextual biasing: a context graph of hotword phrases, matched on whole words (Aho-Corasick).

A phrase is a sequence of tokens (the model's tokenizer spells it), with a weight: every token
matched inside a phrase earns that bonus. Matching runs on whole words: a phrase begins where a
word begins, and it is complete only when its last word is closed by a word boundary (the
separator token, the next word-start token, or the end of the utterance); "cat" earns nothing in
"cats" or "concat". A match that fails gives back what it earned, so that in the end only
completed phrases keep their bonus: the context score of a finished hypothesis is

    sum over every occurrence of a phrase p as whole words in it of weight(p) * len(tokens(p))

(overlapping and nested occurrences each count: "new york" and "york" both complete in "new
york"). Before the end a prefix's score is that sum over its completed occurrences plus the bonus
of its longest match in progress (``partial``).

The graph is a trie of the phrases with failure links (the longest proper suffix that begins at
a word boundary and is in the trie) and output sums (the phrases completed when a node's word
closes, along its failure chain), compiled into a dense transition table over token classes
(the phrases' tokens, the boundary tokens, and one class for every other token), so that the
batched search moves all its prefixes' states with one array lookup. ``context_score`` is the
definition above computed from a whole token sequence, the graph's reference (tested).

Word boundaries come from the tokenizer (``Tokenizer.boundary``): a separator token, a set of
word-start tokens, or none (every token is a word: phrases match anywhere).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkit.errors import DecodeError

ROOT = 0


@dataclass(frozen=True)
class Phrase:
    tokens: tuple[int, ...]
    weight: float


class ContextGraph:
    """The automaton of ``phrases`` (see the module). ``space_id`` / ``word_starts`` (one bool per
    token) give the word boundary, as for the search; neither: every token is a word."""

    def __init__(self, phrases: list[Phrase], vocab: int, space_id: int | None = None, word_starts=None) -> None:
        if space_id is not None and word_starts is not None:
            raise DecodeError("a word boundary is either a separator token or a set of word-start tokens, not both")
        self.vocab, self.space_id = vocab, space_id
        self.starts = None if word_starts is None else np.array([bool(x) for x in word_starts] + [False])
        self.mode = "separator" if space_id is not None else "starts" if word_starts is not None else "none"
        self.phrases = [p for p in phrases if p.tokens]
        children: list[dict[int, int]] = [{}]
        token_bonus, ends = [0.0], [0.0]
        path: list[tuple[int, ...]] = [()]
        for phrase in self.phrases:
            for t in phrase.tokens:
                if not 0 <= t < vocab:
                    raise DecodeError(f"a hotword token {t} is outside the model's {vocab} tokens")
            if self.starts is not None and not self.starts[phrase.tokens[0]]:
                raise DecodeError(f"a hotword phrase must begin with a word-start token, not {phrase.tokens[0]}")
            if space_id is not None and space_id in (phrase.tokens[0], phrase.tokens[-1]):
                raise DecodeError("a hotword phrase cannot begin or end with the word separator")
            node = ROOT
            for t in phrase.tokens:
                if t not in children[node]:
                    children[node][t] = len(children)
                    children.append({})
                    token_bonus.append(phrase.weight)
                    ends.append(0.0)
                    path.append(path[node] + (t,))
                node = children[node][t]
                token_bonus[node] = max(token_bonus[node], phrase.weight)
            ends[node] = max(ends[node], phrase.weight * len(phrase.tokens))  # a phrase listed twice counts once
        self.children, self.path = children, path
        self.dead = len(children)  # mid-word, no match in progress
        self.partial = np.zeros(len(children) + 1, np.float64)  # bonus of the match in progress at a node
        for node in range(1, len(children)):
            parent = self._node_of(path[node][:-1])
            self.partial[node] = self.partial[parent] + token_bonus[node]
        self.fail = self._failure_links()
        self.output = np.zeros(len(children) + 1, np.float64)  # phrases completed when the node's word closes
        for node in self._breadth_first():
            link = self.fail[node]
            self.output[node] = ends[node] + (self.output[link] if link not in (ROOT, self.dead) else 0.0)
        self._compile()
        self.roots = np.zeros(1, np.int64)  # where a search starts (``union``: one root per graph)

    # ------------------------------------------------------------------ building
    def _node_of(self, tokens: tuple[int, ...]) -> int:
        node = ROOT
        for t in tokens:
            node = self.children[node][t]
        return node

    def _breadth_first(self) -> list[int]:
        order, queue = [], deque(self.children[ROOT].values())
        while queue:
            node = queue.popleft()
            order.append(node)
            queue.extend(self.children[node].values())
        return order

    def _is_boundary_before(self, tokens: tuple[int, ...], i: int) -> bool:
        """Whether a word begins at position ``i`` of ``tokens`` (0 < i < len)."""
        if self.mode == "separator":
            return tokens[i - 1] == self.space_id
        if self.mode == "starts":
            return bool(self.starts[tokens[i]])
        return True

    def _failure_links(self) -> list[int]:
        """Per node: the longest proper suffix of its tokens that begins at a word boundary and is a
        node (ROOT when only the empty suffix qualifies: the node's tokens end a word with a
        separator, or any token may begin a match; ``dead`` when the node ends mid-word)."""
        fail = [ROOT] * (len(self.children) + 1)
        for node in range(1, len(self.children)):
            tokens = self.path[node]
            link = None
            for i in range(1, len(tokens)):
                if self._is_boundary_before(tokens, i):
                    try:
                        link = self._node_of(tokens[i:])
                        break
                    except KeyError:
                        continue
            if link is None:
                empty_ok = self.mode != "separator" or tokens[-1] == self.space_id
                link = ROOT if empty_ok else self.dead
            fail[node] = link
        fail[self.dead] = self.dead
        return fail

    def _goto(self, node: int, token: int) -> int:
        """The state after ``token`` (a direct walk of the failure chain: the compiled table's source)."""
        while node not in (ROOT, self.dead):
            if token in self.children[node]:
                return self.children[node][token]
            node = self.fail[node]
        if node == ROOT and token in self.children[ROOT] and self._may_begin(token):
            return self.children[ROOT][token]
        if self.mode == "separator":
            return ROOT if token == self.space_id else self.dead
        if self.mode == "starts":
            if self.starts[token] and token in self.children[ROOT]:
                return self.children[ROOT][token]
            return self.dead
        return ROOT

    def _may_begin(self, token: int) -> bool:
        return self.mode != "starts" or bool(self.starts[token])

    def _compile(self) -> None:
        """The transition and completion tables over token classes: each phrase token its own class,
        then (by mode) the separator, word-start and other tokens."""
        alphabet = sorted({t for p in self.phrases for t in p.tokens} - {self.space_id})
        classes = np.full(self.vocab + 1, len(alphabet), np.int64)  # the padding token: "other"
        for index, t in enumerate(alphabet):
            classes[t] = index
        samples = list(alphabet)
        other = [t for t in range(self.vocab) if classes[t] == len(alphabet) and t != self.space_id]
        other_start = [t for t in other if self.starts is not None and self.starts[t]]
        other_inner = [t for t in other if self.starts is None or not self.starts[t]]
        extra = []
        for group in (other_inner, other_start, [self.space_id] if self.space_id is not None else []):
            if group:
                for t in group:
                    classes[t] = len(samples) + len(extra)
                extra.append(group[0])
        samples += extra
        states = len(self.children) + 1
        self.token_class = classes
        table = np.zeros((states, len(samples)), np.int64)
        for node in (ROOT, self.dead):  # the rows that end every failure chain: ``_goto``'s rules
            table[node] = [self._goto(node, t) for t in samples]
        for node in self._breadth_first():  # the rest as Aho-Corasick builds them: the failure's row,
            table[node] = table[self.fail[node]]  # (a shorter suffix: already built) then the children
            for token, child in self.children[node].items():
                table[node, classes[token]] = child
        self.table = table
        closes = np.array([self._closes(t) for t in samples])
        self.gain = np.where(closes[None, :], self.output[:, None], 0.0)  # completed on the transition
        if self.mode == "none":  # every token closes its word: a phrase completes as it arrives
            self.gain = self.output[self.table]

    def _closes(self, token: int) -> bool:
        """Whether ``token`` closes the word before it (and with it the phrases ending there)."""
        if self.mode == "separator":
            return token == self.space_id
        if self.mode == "starts":
            return bool(self.starts[token])
        return False

    @classmethod
    def union(cls, graphs: list["ContextGraph"]) -> "ContextGraph":
        """One graph holding ``graphs`` side by side (their states numbered one after another, the
        token classes refined so that every graph's are unions of them): the per-utterance lists of
        a batch searched at once, each utterance starting at its own graph's root (``roots``)."""
        first = graphs[0]
        for graph in graphs[1:]:
            if (graph.vocab, graph.space_id, graph.mode) != (first.vocab, first.space_id, first.mode) or (
                    graph.starts is not None and not (graph.starts == first.starts).all()):
                raise DecodeError("hotword graphs of one batch must share the token table and word boundary")
        signature = np.stack([g.token_class for g in graphs], 1)  # (V + 1, G): each token's class in each
        _, classes = np.unique(signature, axis=0, return_inverse=True)
        classes = classes.reshape(-1)
        sample = np.zeros(classes.max() + 1, np.int64)
        for token in range(len(classes) - 1, -1, -1):
            sample[classes[token]] = token
        sizes = [len(g.partial) for g in graphs]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        union = cls.__new__(cls)
        union.vocab, union.space_id, union.starts, union.mode = first.vocab, first.space_id, first.starts, first.mode
        union.phrases = [p for g in graphs for p in g.phrases]
        union.token_class = classes
        union.table = np.concatenate([g.table[:, g.token_class[sample]] + off for g, off in zip(graphs, offsets)])
        union.gain = np.concatenate([g.gain[:, g.token_class[sample]] for g in graphs])
        union.partial = np.concatenate([g.partial for g in graphs])
        union.output = np.concatenate([g.output for g in graphs])
        union.roots = offsets
        return union

    # ------------------------------------------------------------------ use
    @property
    def delta(self) -> np.ndarray:
        """(states, classes) float32: how a prefix's context score changes when it is extended from
        a state by a token of a class (the completed bonus, plus the match in progress after it,
        less the one before): the search adds it to every candidate with one lookup."""
        if getattr(self, "_delta", None) is None:
            self._delta = (self.gain + self.partial[self.table] - self.partial[:, None]).astype(np.float32)
        return self._delta

    @property
    def closing(self) -> np.ndarray:
        """(states,) float32: how the end of the utterance changes a context score at a state (what
        its last word completes, less the match in progress, which is given back)."""
        if getattr(self, "_closing", None) is None:
            self._closing = (self.final(np.arange(len(self.partial))) - self.partial).astype(np.float32)
        return self._closing

    def step(self, nodes: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(next nodes, completed bonus) for prefixes at ``nodes`` extended by ``tokens`` (same shape)."""
        cls = self.token_class[tokens]
        return self.table[nodes, cls], self.gain[nodes, cls]

    def move(self, nodes: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(next nodes, change of context score: ``delta``), what the search carries; -1 (a stay)
        looks up the padding token's class."""
        cls = self.token_class[tokens]
        return self.table[nodes, cls], self.delta[nodes, cls]

    def final(self, nodes: np.ndarray) -> np.ndarray:
        """What the end of the utterance completes at ``nodes`` (its last word closes)."""
        return np.zeros(nodes.shape) if self.mode == "none" else self.output[nodes]

    def phrase_tokens(self) -> np.ndarray:
        """(V,) bool: the tokens the phrases spell (the separator left out)."""
        mask = np.zeros(self.vocab, bool)
        for p in self.phrases:
            mask[list(p.tokens)] = True
        if self.space_id is not None:
            mask[self.space_id] = False
        return mask


def context_score(tokens: list[int], graph: ContextGraph, final: bool = True) -> float:
    """The definition (module docstring), from the token sequence alone: every completed whole-word
    occurrence of every phrase, plus (not ``final``) the longest match in progress. The reference
    the graph and the searches are tested against."""
    words = _words(tokens, graph)
    closed = len(words) if final else len(words) - 1
    if not final and graph.mode == "separator" and tokens and tokens[-1] == graph.space_id:
        closed = len(words)
    if not final and graph.mode == "none":
        closed = len(words)
    total = 0.0
    weights: dict[tuple[int, ...], float] = {}
    for phrase in graph.phrases:  # a phrase listed twice counts once, at its higher weight
        weights[phrase.tokens] = max(weights.get(phrase.tokens, phrase.weight), phrase.weight)
    for tokens_of, weight in weights.items():
        phrase_words = _words(list(tokens_of), graph)
        n = len(phrase_words)
        for i in range(0, closed - n + 1):
            if words[i:i + n] == phrase_words:
                total += weight * len(tokens_of)
    if final:
        return total
    return total + _in_progress(tokens, graph)


def _words(tokens: list[int], graph: ContextGraph) -> list[tuple[int, ...]]:
    """Tokens as words (a separator between words belongs to neither; a trailing one is dropped)."""
    words: list[list[int]] = []
    for i, t in enumerate(tokens):
        if graph.mode == "separator":
            if t == graph.space_id:
                words.append([])
            else:
                if not words:
                    words.append([])
                words[-1].append(t)
        elif graph.mode == "starts":
            if not words or graph.starts[t]:
                words.append([])
            words[-1].append(t)
        else:
            words.append([t])
    return [tuple(w) for w in words if w]


def _in_progress(tokens: list[int], graph: ContextGraph) -> float:
    """The bonus of the longest suffix that begins at a word boundary and spells a phrase's prefix."""
    for i in range(len(tokens) + 1):
        if i and i < len(tokens) and not graph._is_boundary_before(tuple(tokens), i):
            continue
        if i == len(tokens) and tokens and graph.mode == "separator" and tokens[-1] != graph.space_id:
            continue
        try:
            node = graph._node_of(tuple(tokens[i:]))
        except KeyError:
            continue
        return float(graph.partial[node])
    return 0.0


def read_hotwords(path: str | Path, tokenizer, default_weight: float) -> list[Phrase]:
    """A hotword file: one phrase per line, optionally ``phrase<TAB>weight``; blank lines and
    ``#`` comments are skipped. A phrase the tokenizer cannot spell, a weight that is not a number,
    a missing or empty file: ``DecodeError`` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"hotword file {path} does not exist")
    return parse_hotwords(path.read_text(encoding="utf-8"), tokenizer, default_weight, str(path))


def parse_hotwords(text: str, tokenizer, default_weight: float, where: str) -> list[Phrase]:
    """Hotwords as ``read_hotwords`` reads them, from text (a server request's field); ``where``
    names it in errors."""
    phrases = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        line_text, _, weight = line.partition("\t")
        try:
            value = float(weight) if weight.strip() else default_weight
        except ValueError:
            raise DecodeError(f"{where}:{number}: weight {weight.strip()!r} is not a number") from None
        phrases.append(Phrase(spell(line_text, tokenizer, f"{where}:{number}"), value))
    if not phrases:
        raise DecodeError(f"{where} holds no phrase (one per line, optionally phrase<TAB>weight)")
    return phrases


def read_utterance_hotwords(path: str | Path, tokenizer, default_weight: float,
                            utterances: set[str]) -> tuple[dict[str, list[Phrase]], int]:
    """A data dir's ``context`` file: lines ``utt-id phrase[<TAB>weight]`` (several lines per
    utterance for several phrases). Returns each known utterance's phrases and how many lines
    named an utterance not in ``utterances``; a phrase the tokenizer cannot spell or a weight that
    is not a number is a ``DecodeError`` naming the line."""
    found: dict[str, list[Phrase]] = {}
    unknown = 0
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        utt, _, rest = line.strip().partition(" ")
        text, _, weight = rest.partition("\t")
        try:
            value = float(weight) if weight.strip() else default_weight
        except ValueError:
            raise DecodeError(f"{path}:{number}: weight {weight.strip()!r} is not a number") from None
        phrase = Phrase(spell(text, tokenizer, f"{path}:{number}"), value)
        if utt not in utterances:
            unknown += 1
            continue
        found.setdefault(utt, []).append(phrase)
    return found, unknown


def spell(text: str, tokenizer, where: str) -> tuple[int, ...]:
    """A phrase in the model's tokens; a character the model has no token for is an error."""
    words = text.split()
    if not words:
        raise DecodeError(f"{where}: empty phrase")
    tokens = tokenizer.encode(" ".join(words))
    if getattr(tokenizer, "unk_id", None) is not None and tokenizer.unk_id in tokens:
        raise DecodeError(f"{where}: {text.strip()!r} has characters the model has no token for")
    return tuple(tokens)


__all__ = ["ContextGraph", "Phrase", "context_score", "parse_hotwords", "read_hotwords", "read_utterance_hotwords", "spell"]
