"""asrkit: a small, readable speech recognition toolkit (recurrent CTC models, Kaldi-style recipes).

The package is a pipeline, and its folders say so (``docs/architecture.md``)::

    cli ─▶ training, recognize ─▶ search, scoring, plot ─▶ model, data (corpora) ─▶ config, tokenizer, checkpoint ─▶ errors

The names below are the public API for a Python user, imported on first use
(``import asrkit`` alone loads no torch)::

    import asrkit
    recognizer = asrkit.Recognizer("exp/bigru_1a/avg_10.pt")          # load a model
    results = recognizer.transcribe_files(["a.wav"], asrkit.SearchOptions(mode="beam", beam=10))
    print(results[0].text, results[0].hypothesis.score)
    hyps = asrkit.search_batch(log_probs, lengths, asrkit.SearchOptions(mode="beam"))  # (B, T, V) log-probs
    report = asrkit.score({"u1": "a b c"}, {"u1": "a c"})                 # WER and CER
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "AsrkitError": "asrkit.errors",
    "ExperimentConfig": "asrkit.config",
    "load_config": "asrkit.config",
    "DataDir": "asrkit.data.datadir",
    "build_model": "asrkit.model",
    "Hypothesis": "asrkit.search.types",
    "SearchOptions": "asrkit.search.options",
    "search_batch": "asrkit.search.ctc",
    "greedy_search": "asrkit.search.greedy",
    "prefix_beam_search": "asrkit.search.prefix",
    "attention_rescore": "asrkit.search.rescore",
    "Recognizer": "asrkit.recognize.recognizer",
    "Result": "asrkit.recognize.recognizer",
    "transcribe": "asrkit.recognize.recognizer",
    "ScoreReport": "asrkit.scoring",
    "score": "asrkit.scoring",
    "train": "asrkit.training.trainer",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'asrkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # once looked up, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


__all__ = sorted(_API)
