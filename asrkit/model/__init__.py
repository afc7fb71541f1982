"""The acoustic model: an RNN encoder, a linear CTC head and an optional attention decoder.

``build_model(feat_dim, vocab_size, cfg)`` makes an ``AsrModel`` (``asr_model``): the encoder
(``encoder``: subsampling, then recurrent layers of torch's kinds, run by
``recurrent``, or Jordan's, ``jordan``), the CTC head, and with
``model.ctc_weight < 1`` the attention decoder (``decoder``); ``budget`` sizes
a config to a parameter count. Models take tensors, not batches or files. This
layer imports only the base modules (``config``); nothing here reads data.
``stream_plan`` (the integer side of streaming) imports no torch, so that a
bundle's runtime shares it: this file imports its names on first use.
"""

_LAZY = {"AsrModel", "build_model", "output_length"}


def __getattr__(name: str):
    if name in _LAZY:
        from asrkit.model import asr_model

        return getattr(asr_model, name)
    raise AttributeError(f"module 'asrkit.model' has no attribute {name!r}")


__all__ = sorted(_LAZY)

__all__ = ["AsrModel", "build_model", "output_length"]
