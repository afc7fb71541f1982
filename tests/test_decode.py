import math

import torch

from asrkit.decode import greedy_search


def log_probs(rows):
    return torch.tensor(rows, dtype=torch.float32).log().unsqueeze(0)


def test_collapse_repeats_and_drop_blanks():
    # frames: a a - b   (vocab: 0 blank, 1 a, 2 b)
    lp = log_probs([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    (hyp,) = greedy_search(lp, torch.tensor([4]))
    assert hyp.tokens == [1, 2] and hyp.timesteps == [0, 3]
    assert math.isclose(hyp.score, math.log(0.8 * 0.7 * 0.6 * 0.8), rel_tol=1e-5)


def test_blank_separates_doubled_token():
    # "好棒棒": the doubled token survives only because a blank sits between the two
    lp = log_probs([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    (hyp,) = greedy_search(lp, torch.tensor([4]))
    assert hyp.tokens == [1, 2, 2]


def test_lengths_respected_in_batch():
    lp = torch.log(torch.tensor([[[0.1, 0.8, 0.1]] * 3 + [[0.1, 0.1, 0.8]]] * 2))
    hyps = greedy_search(lp, torch.tensor([4, 2]))
    assert hyps[0].tokens == [1, 2] and hyps[1].tokens == [1]
