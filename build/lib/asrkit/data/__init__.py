"""Data: from audio files and Kaldi data dirs to the feature matrices a model trains and decodes on.

Reading audio of any format and rate (``audio``), Kaldi data dirs and their
checks (``datadir``), feature maths, CMVN and SpecAugment (``features``), the
Kaldi ark/scp feature store computed once per data dir (``featstore``),
waveform augmentation (``augment``), speed perturbation of a data dir
(``perturb``), and the training dataset with its length-bucketing sampler
(``dataset``). This layer knows nothing of models, searches or training runs:
it imports only the base modules (``config``, ``progress``, ``errors``).
Import from the modules themselves (``from asrkit.data.datadir import
DataDir``); this file imports nothing, so reading a data dir does not load torch.
"""
