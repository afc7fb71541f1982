"""Corpus recipes: ``prepare(corpus_dir, out_dir)`` turns an official layout into data dirs."""

from __future__ import annotations

from asrkit.corpora import an4, digits, fsdd, librispeech, yesno

CORPORA = {"yesno": yesno, "fsdd": fsdd, "digits": digits, "an4": an4, "librispeech": librispeech}

__all__ = ["CORPORA"]
