"""Search: from CTC log-probabilities to hypotheses, as pure functions of numpy arrays (a torch
model's tensors are taken as they are; nothing here imports torch, so an export bundle runs it).

Greedy search (``greedy``), the batched CTC prefix beam search (``prefix``, its
per-frame candidate tokens in ``candidates``), closed-vocabulary decoding with
a lexicon trie (``lexicon``), word n-gram LMs in ARPA format and their shallow
fusion (``arpa``, ``lm``), attention rescoring of an n-best (``rescore``), the
result type and the protocols the search asks of a lexicon and an LM
(``types``), the one ``SearchOptions`` that says which search to run
(``options``, torch-free) and ``search_batch``, which runs it (``ctc``). No
model is run and no file but an LM or a lexicon is read here: the recognizer
(``asrkit.recognize``) runs a model and hands its log-probs to these
functions; rescoring calls the decoder it is given through the
``SequenceScorer`` protocol. This layer imports only the base modules
(``tokenizer``, ``errors``).
Import from the modules themselves; this file imports nothing, so that the
command line can check search options without loading torch.
"""
