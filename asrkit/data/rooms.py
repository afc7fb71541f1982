"""Simulated rooms: room impulse responses made here, without downloads (image sources + a decaying tail).

Measured responses (``train.augment.rir_dir``) are the best source of
reverberation, but no corpus here ships any. ``simulate_rir`` makes one for a
shoebox room, the way the peers' simulated-RIR sets are made (Kaldi's
``RIRS_NOISES/simulated_rirs``, pyroomacoustics):

- the early part, the direct path and the reflections of the first
  ``early_ms``, by the image-source method (Allen and Berkley, 1979): every
  mirror image of the source in the walls, up to the order that reaches that
  time, arrives after its distance over the speed of sound, attenuated by
  1/(4 pi distance) and by the walls' reflection coefficient once per wall it
  crossed; the coefficient comes from the RT60 by Sabine's formula;
- the late part, a Gaussian noise whose amplitude falls 60 dB over the RT60,
  starting at the level the image sources reach at ``early_ms``: its
  statistics are what matter there, not the paths.

The response starts at its direct path (its first sample), so reverberation
delays nothing and the transcript's times stay put. ``random_room`` draws a
room, a microphone and a source at a distance in a range, which sets the
direct-to-reverberant ratio (``drr_db``): near the microphone the direct path
dominates, across a large room the tail does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s


@dataclass(frozen=True)
class Room:
    size: tuple[float, float, float]  # metres
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60: float  # seconds

    @property
    def distance(self) -> float:
        return math.dist(self.source, self.mic)


def reflection_coefficient(size: tuple[float, float, float], rt60: float) -> float:
    """The walls' pressure reflection coefficient that gives ``rt60`` in a room of ``size`` (Sabine:
    RT60 = 0.161 V / (S alpha)); an RT60 too short for the room gives the most absorbing walls."""
    x, y, z = size
    volume, surface = x * y * z, 2 * (x * y + x * z + y * z)
    alpha = min(0.161 * volume / (surface * rt60), 0.99)
    return math.sqrt(1.0 - alpha)


def _axis_images(length: float, source: float, mic: float, order: int):
    """Per axis: the image coordinates' distances to the mic (signed) and their wall crossings."""
    n = np.arange(-order, order + 1)
    offsets, crossings = [], []
    for q in (0, 1):
        offsets.append((1 - 2 * q) * source + 2 * n * length - mic)
        crossings.append(np.abs(n - q) + np.abs(n))
    return np.concatenate(offsets), np.concatenate(crossings)


def simulate_rir(room: Room, rate: int, rng: np.random.Generator, early_ms: float = 60.0) -> np.ndarray:
    """The room's impulse response at ``rate`` (float32), from its direct path on, about RT60 long."""
    beta = reflection_coefficient(room.size, room.rt60)
    early = early_ms / 1000
    reach = SPEED_OF_SOUND * (early + room.distance / SPEED_OF_SOUND)
    axes = [_axis_images(length, s, m, int(math.ceil(reach / (2 * length))) + 1)
            for length, s, m in zip(room.size, room.source, room.mic)]
    (dx, cx), (dy, cy), (dz, cz) = axes
    distance = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2).ravel()
    crossings = (cx[:, None, None] + cy[None, :, None] + cz[None, None, :]).ravel()
    direct = distance.min()
    keep = distance <= direct + SPEED_OF_SOUND * early
    delay = (distance[keep] - direct) / SPEED_OF_SOUND * rate  # samples after the direct path
    gain = beta ** crossings[keep] / (4 * math.pi * np.maximum(distance[keep], 0.1))
    length = int(math.ceil(max(room.rt60, early * 2) * rate)) + 1
    rir = np.zeros(length, dtype=np.float64)
    whole = np.floor(delay).astype(np.int64)
    frac = delay - whole  # a fractional delay shared between the two nearest samples
    np.add.at(rir, whole, gain * (1 - frac))
    np.add.at(rir, np.minimum(whole + 1, length - 1), gain * frac)
    start = int(early * rate)
    if start < length:  # the tail: -60 dB over RT60, continuing the early part's energy
        window = rir[max(0, start - rate // 100):start]
        level = math.sqrt(float(np.mean(window ** 2))) if window.size and np.any(window) else abs(rir[0]) * 1e-3
        t = np.arange(length - start) / rate
        rir[start:] += level * rng.standard_normal(length - start) * 10 ** (-3 * t / room.rt60)
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def drr_db(rir: np.ndarray, rate: int) -> float:
    """Direct-to-reverberant ratio: the energy of the first 2.5 ms (the direct path) to the rest."""
    split = max(1, int(0.0025 * rate))
    direct = float(np.sum(np.square(rir[:split], dtype=np.float64)))
    rest = float(np.sum(np.square(rir[split:], dtype=np.float64)))
    return 10 * math.log10(direct / rest) if rest > 0 else math.inf


def measured_rt60(rir: np.ndarray, rate: int) -> float:
    """RT60 read off the Schroeder decay curve (the -5 to -25 dB slope, extrapolated to -60 dB)."""
    energy = np.cumsum(np.square(rir[::-1], dtype=np.float64))[::-1]
    curve = 10 * np.log10(np.maximum(energy / energy[0], 1e-30))
    t5, t25 = np.argmax(curve <= -5), np.argmax(curve <= -25)
    return 3 * (t25 - t5) / rate if t25 > t5 else math.nan


def random_room(rng: np.random.Generator, rt60: tuple[float, float], distance: tuple[float, float]) -> Room:
    """A shoebox room (3-10 x 3-10 x 2.5-4 m), a microphone at least 0.5 m from its walls and a
    source at a distance drawn in ``distance`` from it (as far as the room allows), both at
    0.8-1.8 m height, and an RT60 drawn in ``rt60``."""
    size = (float(rng.uniform(3, 10)), float(rng.uniform(3, 10)), float(rng.uniform(2.5, 4)))
    mic = np.array([rng.uniform(0.5, size[0] - 0.5), rng.uniform(0.5, size[1] - 0.5), rng.uniform(0.8, 1.8)])
    wanted = float(rng.uniform(*distance))
    best = None
    for _ in range(50):  # a direction in which the source fits in the room at that distance
        angle, height = rng.uniform(0, 2 * math.pi), rng.uniform(0.8, 1.8)
        across = math.sqrt(max(wanted ** 2 - (height - mic[2]) ** 2, 0.0))  # so that the 3-D distance is ``wanted``
        source = mic + np.array([across * math.cos(angle), across * math.sin(angle), height - mic[2]])
        inside = np.clip(source, 0.3, np.array(size) - 0.3)
        if best is None or np.linalg.norm(inside - mic) > np.linalg.norm(best - mic):
            best = inside
        if np.allclose(inside, source):
            break
    return Room(size, tuple(float(v) for v in best), tuple(float(v) for v in mic), float(rng.uniform(*rt60)))


__all__ = ["Room", "drr_db", "measured_rt60", "random_room", "reflection_coefficient", "simulate_rir"]
