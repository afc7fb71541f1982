"""The acoustic model: an RNN encoder, a linear CTC head and an optional attention decoder.

``build_model(feat_dim, vocab_size, cfg)`` makes an ``AsrModel`` (``asr_model``): the encoder
(``encoder``: subsampling, then recurrent layers of torch's kinds, run by
``recurrent``, or Jordan's, ``jordan``), the CTC head, and with
``model.ctc_weight < 1`` the attention decoder (``decoder``); ``budget`` sizes
a config to a parameter count. Models take tensors, not batches or files. This
layer imports only the base modules (``config``); nothing here reads data.
"""

from asrkit.model.asr_model import AsrModel, build_model, output_length

__all__ = ["AsrModel", "build_model", "output_length"]
