"""Errors that asrkit raises on bad input.

Library code raises these; the CLI prints ``str(error)`` as one red line and
exits non-zero, never with a traceback. Messages name the culprit: the file,
the line, the utterance, the key.
"""


class AsrkitError(Exception):
    """Base of every error a user can cause and fix."""


class DataDirError(AsrkitError):
    """A Kaldi-style data dir is missing, malformed or inconsistent."""


class AudioError(AsrkitError):
    """An audio file is missing, unreadable, empty or otherwise unusable."""


class ConfigError(AsrkitError):
    """A config file or override names an unknown key or a wrong type."""


class CheckpointError(AsrkitError):
    """A path that should hold a checkpoint does not."""


class CorpusError(AsrkitError):
    """A corpus is not where it should be, or not in its official layout."""


class TrainingError(AsrkitError):
    """Training cannot go on (no usable utterances, diverged loss...)."""


class DecodeError(AsrkitError, ValueError):
    """Search options or decoder inputs are unusable (beam of 0, NaN scores...)."""


class LmError(AsrkitError):
    """A language model file is missing or not in ARPA format."""
