"""Corpora: one module per corpus, each turning its official layout into Kaldi data dirs.

``prepare(corpus_dir, out_dir)`` writes and validates the data dirs;
``download(...)`` (checksummed, resumable: ``download``) fetches the corpus
when no local copy is given. It imports ``data`` and the base modules.
"""

from __future__ import annotations

from asrkit.corpora import an4, digits, fsdd, librispeech, yesno

CORPORA = {"yesno": yesno, "fsdd": fsdd, "digits": digits, "an4": an4, "librispeech": librispeech}

__all__ = ["CORPORA"]
