"""Recognition: a trained model, loaded from its checkpoint or export bundle alone, run on files and
data dirs.

``recognizer.Recognizer`` rebuilds the model, tokenizer and CMVN from one
checkpoint (``torch_backend``) or bundle (``bundle``, ONNX Runtime; ``export``
writes one) and turns audio or a data dir's features into hypotheses through
the search package (only ``torch_backend`` and ``export`` import torch). Long
recordings are cut at their pauses (``longform``), word times come from CTC
forced alignment (``align``) and transcripts are written as text, JSON, SRT or
CTM (``formats``). It imports ``search``, ``model``, ``data`` and the base
modules; never ``training`` or ``cli``. Streaming sessions and the server's
engine belong here too.
"""
