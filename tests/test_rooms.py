"""Simulated room impulse responses (asrkit.data.rooms): the RT60 they were asked for, the direct
path first, and less direct sound the farther the source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asrkit.data.rooms import Room, drr_db, measured_rt60, random_room, reflection_coefficient, simulate_rir


@pytest.mark.parametrize("rt60", [0.2, 0.4, 0.6, 0.9])
def test_a_simulated_response_decays_at_the_rt60_it_was_asked_for(rt60):
    rng = np.random.default_rng(0)
    room = Room((6.0, 4.5, 3.0), (3.5, 2.0, 1.5), (1.5, 2.5, 1.2), rt60)
    rir = simulate_rir(room, 16000, rng)
    assert rir.dtype == np.float32 and len(rir) >= int(rt60 * 16000)
    assert measured_rt60(rir, 16000) == pytest.approx(rt60, rel=0.15)


def test_the_direct_path_comes_first_and_dominates_near_the_microphone():
    """Its first sample is the direct path (nothing is delayed); far from the microphone the
    reflections (here floor and ceiling, arriving together) can be louder than it, as in a room."""
    rng = np.random.default_rng(1)
    near = simulate_rir(Room((6.0, 5.0, 3.0), (2.0, 2.5, 1.5), (1.5, 2.5, 1.5), 0.4), 16000, rng)
    far = simulate_rir(Room((6.0, 5.0, 3.0), (5.5, 4.5, 1.5), (0.5, 0.5, 1.5), 0.4), 16000, rng)
    assert abs(near[0]) == np.max(np.abs(near)) == 1.0
    assert abs(far[0]) > 0 and np.argmax(np.abs(far)) > 0
    assert drr_db(near, 16000) > drr_db(far, 16000) + 10


def test_reflection_coefficient_follows_sabine():
    size = (5.0, 4.0, 3.0)
    assert reflection_coefficient(size, 0.3) < reflection_coefficient(size, 0.9) < 1
    alpha = 1 - reflection_coefficient(size, 0.5) ** 2
    assert 0.161 * 60 / (94 * alpha) == pytest.approx(0.5)
    assert reflection_coefficient(size, 0.01) == pytest.approx(math.sqrt(0.01))  # the most absorbing walls


def test_random_rooms_put_the_source_at_the_distance_drawn():
    rng = np.random.default_rng(2)
    for _ in range(50):
        room = random_room(rng, (0.2, 0.9), (1.0, 2.0))
        assert 0.2 <= room.rt60 <= 0.9
        assert all(0 < s < L and 0 < m < L for s, m, L in zip(room.source, room.mic, room.size))
        assert room.distance <= 2.0 + 1e-9
        fits = all(0.3 < s < L - 0.3 for s, L in zip(room.source, room.size))
        assert room.distance >= 1.0 - 1e-9 or not fits
