"""``python tests/hold_until_signal.py EPOCH ASRKIT_ARGS...``: asrkit, with training held from epoch
EPOCH (counted from 1) on until a stop signal has come in (at most 120 s).

The signal tests run training in a real process and signal it when it has reached some point.
Without a hold, a fast machine could finish training before the signal lands, and the test
would have nothing to check; with it, the signal always lands mid-epoch, and training computes
exactly what it would without the hold. Works under torchrun too (each rank holds).

By default the main process holds after each optimizer step. With ``ASRKIT_TEST_GATE=PATH`` in
the environment it holds where a signal hurts most instead: DataLoader workers wait before each
item while the file PATH exists, so the main process sits waiting for a batch from them. With
``ASRKIT_TEST_HOLD_DEV=1`` it holds after the first dev batch of each validation instead, so that
the stop comes in the middle of validation (and a dev batch started after the stop takes a minute:
validation must stop at its next check). With ``ASRKIT_TEST_HOLD_SAVE=1`` it holds after each
mid-epoch save of last.pt instead (for a SIGKILL that must find one). ``ASRKIT_TEST_HELD=PATH``: the file is made when a
hold begins.
"""

import os
import sys
import time

import torch

import asrkit.data.dataset as dataset
import asrkit.training.loss as loss
import asrkit.training.trainer as trainer
from asrkit.cli import main

HOLD_FROM_EPOCH = int(sys.argv[1])
GATE = os.environ.get("ASRKIT_TEST_GATE")
HELD = os.environ.get("ASRKIT_TEST_HELD")
real_step = trainer.Trainer.step
real_item = dataset.AsrDataset.__getitem__
real_validate = trainer.Trainer.validate
real_save = trainer.Trainer.save_last
real_greedy = loss.greedy_search
running: list = []  # the Trainer, while it validates


def hold(stops) -> None:
    if HELD:
        open(HELD, "a").close()
    deadline = time.monotonic() + 120
    while stops.received is None and time.monotonic() < deadline:
        time.sleep(0.01)


def held_step(self, window, epoch, stats):
    result = real_step(self, window, epoch, stats)
    if epoch + 1 >= HOLD_FROM_EPOCH:
        hold(self.stops)
    return result


def held_save(self):
    real_save(self)
    if self.state.epoch + 1 >= HOLD_FROM_EPOCH and self.state.batches_done > 0:
        hold(self.stops)


def validate_tracked(self):
    running.append(self)
    try:
        return real_validate(self)
    finally:
        running.pop()


def held_greedy(*args, **kwargs):  # once per dev batch, before the batch's stop check
    if running and running[0].stops.received is not None:  # a dev batch after the stop came:
        time.sleep(60)  # validation did not stop at its check (torchrun's grace period runs out)
    result = real_greedy(*args, **kwargs)
    if running and running[0].state.epoch + 1 >= HOLD_FROM_EPOCH:
        hold(running[0].stops)
    return result


def gated_item(self, index):
    deadline = time.monotonic() + 120
    while torch.utils.data.get_worker_info() is not None and os.path.exists(GATE) and time.monotonic() < deadline:
        time.sleep(0.01)
    return real_item(self, index)


if GATE:
    dataset.AsrDataset.__getitem__ = gated_item
elif os.environ.get("ASRKIT_TEST_HOLD_SAVE"):
    trainer.Trainer.save_last = held_save
elif os.environ.get("ASRKIT_TEST_HOLD_DEV"):
    trainer.Trainer.validate = validate_tracked
    loss.greedy_search = held_greedy
else:
    trainer.Trainer.step = held_step
sys.exit(main(sys.argv[2:]))
