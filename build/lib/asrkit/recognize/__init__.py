"""Recognition: a trained model, loaded from its checkpoint alone, run on files and data dirs.

``recognizer.Recognizer`` rebuilds the model, tokenizer and CMVN from one
checkpoint and turns audio or a data dir's features into hypotheses through
the search package; long recordings are cut at their pauses (``longform``),
word times come from CTC forced alignment (``align``) and transcripts are
written as text, JSON, SRT or CTM (``formats``). It imports ``search``,
``model``, ``data`` and the base modules; never ``training`` or ``cli``.
Export bundles, streaming sessions and the server's engine belong here too.
"""
