"""The search options of every command that decodes, declared once.

``@search_options()`` adds ``--mode``, ``--beam``, ``--nbest``, ``--lm``,
``--lm-weight``, ``--word-bonus``, ``--ctc-weight``, ``--token-min-logp``,
``--lexicon``, ``--hotwords`` and ``--hotword-score`` to a command, and hands the command one ``search:
SearchOptions`` made (and so checked) from them, before the command's body
runs. ``decode`` and ``transcribe`` use it, and so will ``serve``.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, Optional

import typer

from asrkit.search.options import MODES, SearchOptions


def _option(default, *names: str, help: str):
    return typer.Option(default, *names, help=help, rich_help_panel="Search")


_OPTIONS: dict[str, tuple[object, object]] = {  # name: (type, option), in --help order
    "mode": (str, _option("greedy", help=f"Search: {', '.join(MODES)}. greedy: the best path; beam: CTC "
                               "prefix beam search; rescore: the beam's hypotheses reranked by the attention "
                               "decoder (needs a model trained with model.ctc_weight < 1).")),
    "beam": (int, _option(10, help="Beam width (prefixes kept per frame) for --mode beam/rescore.")),
    "nbest": (int, _option(1, help="Hypotheses per utterance written to 'nbest' (--mode beam/rescore).")),
    "lm": (Optional[Path], _option(None, "--lm", help="ARPA word n-gram fused into the beam search "
                                        "(asrkit lm build makes one).")),
    "lm_weight": (float, _option(0.5, "--lm-weight", help="LM weight α: α·ln P_lm is added at each word end.")),
    "word_bonus": (float, _option(0.0, "--word-bonus", help="Word insertion bonus β, added per word (counters "
                                       "the LM's preference for short outputs).")),
    "ctc_weight": (float, _option(0.5, "--ctc-weight", help="rescore: final score = attention log-prob + "
                                       "w·CTC log-prob (+ LM).")),
    "token_min_logp": (Optional[float], _option(None, "--token-min-logp", help="Tokens with log-probability "
                                                     "below this do not extend prefixes in a frame (faster; "
                                                     "default: keep all).")),
    "lexicon": (Optional[Path], _option(None, "--lexicon", help="Closed vocabulary: only words of this file "
                                             "(one per line, first field; a CMU/Sphinx .dic or Kaldi lexicon.txt "
                                             "works as it is) may appear in hypotheses (--mode beam/rescore).")),
    "hotwords": (Optional[Path], _option(None, "--hotwords", help="Phrases to bias the beam search towards, one "
                                              "per line, optionally phrase<TAB>weight: each token of a phrase "
                                              "completed as whole words earns the bonus (--mode beam/rescore).")),
    "hotword_score": (float, _option(1.0, "--hotword-score", help="Bonus per token of a completed hotword "
                                          "phrase (a line's own weight wins).")),
}


def search_options(*, nbest: bool = True) -> Callable[[Callable], Callable]:
    """Decorate a command that takes ``search: SearchOptions``: the search options become its
    command-line options (``--nbest`` only where ``nbest``; else one hypothesis)."""
    names = [name for name in _OPTIONS if nbest or name != "nbest"]

    def add(command: Callable) -> Callable:
        signature = inspect.signature(command)
        if "search" not in signature.parameters:
            raise TypeError(f"{command.__name__} must take a 'search' parameter to use @search_options")
        own = [p for p in signature.parameters.values() if p.name != "search"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_OPTIONS[name][1],
                                   annotation=_OPTIONS[name][0]) for name in names]

        @functools.wraps(command)
        def with_search(*args, **kwargs):
            kwargs["search"] = SearchOptions(**{name: kwargs.pop(name) for name in names})  # checked here
            return command(*args, **kwargs)

        with_search.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        with_search.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "search"},
                                       **{name: _OPTIONS[name][0] for name in names}}
        return with_search

    return add


__all__ = ["search_options"]
