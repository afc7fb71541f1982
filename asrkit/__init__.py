"""asrkit: a small, readable speech recognition toolkit (BiLSTM-CTC)."""

__version__ = "0.1.0"

from asrkit.errors import AsrkitError  # noqa: E402,F401
