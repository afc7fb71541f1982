"""Training: a run from data dirs to checkpoints in an experiment dir.

The run itself, one home per event (``trainer``: ``train()`` and ``Trainer``),
what it trains on (``setup``: features, token table, CMVN, loaders), the
objective and the dev figures (``loss``), the experiment dir's files and the
run state (``expdir``), Ctrl-C and SIGTERM (``interrupt``) and torchrun
(``distributed``). It imports the layers below it: ``search`` (greedy search
for the dev WER), ``score``, ``model``, ``data`` and the base modules; never
``recognize`` or ``cli``.
"""
