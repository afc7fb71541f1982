"""Corpus recipes: ``prepare(corpus_dir, out_dir)`` turns an official layout into data dirs."""

from __future__ import annotations

from asrkit.corpora import digits, fsdd, yesno

CORPORA = {"yesno": yesno, "fsdd": fsdd, "digits": digits}

__all__ = ["CORPORA"]
