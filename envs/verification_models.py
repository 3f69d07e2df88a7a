"""The physics the verification's estimate is computed with: the identity trains' decay
under given T1/T2 (Bloch equations over the pulse's envelope), the posterior of the gate's
decay-rate ratios from the trains' measured decay, what a residual detuning costs the X
pulse, and the pulse's leakage at the stated anharmonicity. Pure functions."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .physics import Transmon, leakage, unitaries
from .verification_settings import StatedCoherence

FloatArray = NDArray[np.float64]


def model_leakage(waveform: ArrayLike, dt_s: float, stated: StatedCoherence) -> float | None:
    """Leakage per gate of the X ``waveform`` (S,) on a closed ``stated.levels``-level
    transmon of the stated anharmonicity, driven so that the pulse's area is π (its
    calibrated amplitude fixes the drive strength); None when α is not stated.

    A gate that leaks ℓ from the qubit subspace has F ≈ 1 − ℓ. On held-out devices this
    matches the simulated leakage to 10–20 % (3 levels; docs/verification.md)."""
    if stated.anharmonicity_hz is None:
        return None
    w = np.asarray(waveform, dtype=np.complex128).reshape(1, -1)
    area = float(np.abs(np.sum(w[0])) * dt_s)
    model = Transmon(levels=stated.levels, anharmonicity_hz=float(stated.anharmonicity_hz),
                     rabi_max_hz=0.5 / area, detuning_hz=0.0, t1_s=1.0, t2_s=1.0, dt_s=dt_s)
    return float(leakage(unitaries(model, w))[0])


def _bloch_gate(envelope: FloatArray, dt_s: float, stated: StatedCoherence, sign: float) -> FloatArray:
    """4×4 affine Bloch map (1, x, y, z) of a π pulse about ±x with this envelope, under the
    stated T1 (towards z = +1, |0>) and T2, sample by sample."""
    from scipy.linalg import expm

    omega = math.pi * envelope / (envelope.sum() * dt_s)
    out = np.eye(4)
    r1, r2 = 1.0 / stated.t1_s, 1.0 / stated.t2_s
    for w in omega:
        a = np.array([[0.0, 0.0, 0.0, 0.0],
                      [0.0, -r2, 0.0, 0.0],
                      [0.0, 0.0, -r2, -sign * w],
                      [r1, 0.0, sign * w, -r1]])
        out = expm(a * dt_s) @ out
    return out


def train_decay(envelope: ArrayLike, dt_s: float, stated: StatedCoherence, blocks: int) -> float:
    """Excited population a train (X·X̄·X̄·X)^blocks·X loses against a single X under the
    stated T1/T2 alone: what the odd identity train may lose on a device that is as stated.

    ``envelope`` (S,) is the pulse's envelope, whose shape sets how long the state sits near
    the poles (T1) and near the equator (T2)."""
    g = np.abs(np.asarray(envelope, dtype=np.float64))
    mx, mxb = _bloch_gate(g, dt_s, stated, 1.0), _bloch_gate(g, dt_s, stated, -1.0)
    ground = np.array([1.0, 0.0, 0.0, 1.0])
    one = mx @ ground
    train = mx @ np.linalg.matrix_power(mx @ mxb @ mxb @ mx, blocks) @ ground
    return float(0.5 * (train[3] - one[3]))  # P_exc = (1 − z)/2


def detuning_weight(envelope: ArrayLike) -> float:
    """1 − F of the X pulse per θ_det²/6, θ_det = 2π·Δ·t the detuning's phase over the gate.

    In the frame that follows the drive's rotation φ(t) (0 to π over the pulse), a small
    detuning Δ turns the state about cos φ·z + sin φ·y. Its z part ends as a Z rotation after
    the gate (a frame: virtual Z removes it), its y part θ_det·⟨sin φ⟩ is the gate's error,
    so the weight is ⟨sin φ⟩² (4/π² for a square pulse; ~0.18 for a Gaussian DRAG
    envelope, matching the simulated device to 1 %)."""
    g = np.abs(np.asarray(envelope, dtype=np.float64))
    phi = math.pi * (np.cumsum(g) - 0.5 * g) / g.sum()
    return float(np.mean(np.sin(phi)) ** 2)


# Decay-rate ratios at which the train decay is computed, and the posterior's grid (log-uniform
# prior: equal mass per point), cut where the trains saturate (``_decay_rate_draws``).
_RATE_NODES = np.geomspace(0.25, 1024.0, 49)
_RATE_GRID = np.geomspace(0.25, 1024.0, 6001)


def _decay_rate_draws(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int, d_obs: float,
                      sd: float, rng: np.random.Generator, samples: int) -> FloatArray:
    """(samples,) draws of r, the ratio of the gate's decay rates to the stated ones, from the
    identity trains' measured decay ``d_obs`` (standard error ``sd``).

    The trains' decay under r × the stated rates is ``train_decay`` at T1/r, T2/r (the Bloch
    model, interpolated in log r); the likelihood is Gaussian in ``d_obs`` and the prior
    log-uniform from 1/4 up to where the trains saturate: no preference for r = 1, since the stated T1/T2 and the
    nominal gate duration are exactly what this term checks."""
    nodes = np.array([train_decay(envelope, dt_s, StatedCoherence(stated.t1_s / r, min(stated.t2_s / r, 2 * stated.t1_s / r)),
                                  blocks) for r in _RATE_NODES])
    # Far beyond the stated rates the single X that the trains are compared with decays too
    # and d(r) turns down again: the grid ends where d(r) stops growing, so that a train
    # whose decay is saturated reads as "at least this fast", not as a second solution.
    top = int(np.argmax(np.diff(nodes) <= 0)) if np.any(np.diff(nodes) <= 0) else nodes.size - 1
    grid = _RATE_GRID[_RATE_GRID <= _RATE_NODES[top]]
    d = np.interp(np.log(grid), np.log(_RATE_NODES[: top + 1]), nodes[: top + 1])
    ll = -0.5 * ((d_obs - d) / max(sd, 1e-6)) ** 2
    post = np.exp(ll - ll.max())
    cdf = np.cumsum(post / post.sum())
    return np.asarray(grid[np.minimum(np.searchsorted(cdf, rng.random(samples)), grid.size - 1)])


_PAIR_NODES = np.geomspace(0.25, 16.0, 13)  # T1 and T2 rate ratios at which both trains are computed
_PAIR_GRID = np.geomspace(0.25, 16.0, 161)  # and the posterior's grid on each axis


def _bloch_gates_many(envelope: FloatArray, dt_s: float, r1: FloatArray, r2: FloatArray, sign: float) -> FloatArray:
    """(K, 4, 4) ``_bloch_gate`` maps for K pairs of decay rates (1/s), batched."""
    from scipy.linalg import expm

    omega = math.pi * envelope / (envelope.sum() * dt_s)
    k = r1.size
    out = np.broadcast_to(np.eye(4), (k, 4, 4)).copy()
    for w in omega:
        a = np.zeros((k, 4, 4))
        a[:, 1, 1] = a[:, 2, 2] = -r2
        a[:, 2, 3], a[:, 3, 2] = -sign * w, sign * w
        a[:, 3, 0], a[:, 3, 3] = r1, -r1
        out = expm(a * dt_s) @ out
    return out


def _train_pair_decays(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int
                       ) -> tuple[FloatArray, FloatArray]:
    """(N, N) decays of the pole trains (``train_decay``) and of the equator trains,
    (1 − x_n)/2, at T1/r1 and T2/r2 for r1, r2 on ``_PAIR_NODES`` (axis 0: r1)."""
    m1, m2 = np.meshgrid(_PAIR_NODES / stated.t1_s, _PAIR_NODES / stated.t2_s, indexing="ij")
    r1, r2 = m1.reshape(-1), m2.reshape(-1)
    mx, mxb = _bloch_gates_many(envelope, dt_s, r1, r2, 1.0), _bloch_gates_many(envelope, dt_s, r1, r2, -1.0)
    block = np.linalg.matrix_power(mx @ mxb @ mxb @ mx, blocks)
    ground = np.array([1.0, 0.0, 0.0, 1.0])
    one = mx @ ground
    pole = 0.5 * ((mx @ block @ ground)[:, 3] - one[:, 3])
    eq = 0.5 * (1.0 - (block @ np.array([1.0, 1.0, 0.0, 0.0]))[:, 1])
    shape = (_PAIR_NODES.size, _PAIR_NODES.size)
    return pole.reshape(shape), eq.reshape(shape)


def _decay_rate_pairs(envelope: FloatArray, dt_s: float, stated: StatedCoherence, blocks: int,
                      pole: tuple[float, float], equator: tuple[float, float], rng: np.random.Generator,
                      samples: int) -> tuple[FloatArray, FloatArray]:
    """(samples,) draws of (r1, r2), the gate's T1 and T2 decay rates over the stated ones,
    from the pole and equator trains' measured decays (value, standard error) each.

    Gaussian likelihoods of both, the Bloch model interpolated (bilinear in log r) from
    ``_PAIR_NODES``, a log-uniform prior on each ratio in [1/4, 16]."""
    from scipy.interpolate import RegularGridInterpolator

    dp, de = _train_pair_decays(envelope, dt_s, stated, blocks)
    logs = np.log(_PAIR_NODES)
    g1, g2 = np.meshgrid(np.log(_PAIR_GRID), np.log(_PAIR_GRID), indexing="ij")
    pts = np.stack([g1.reshape(-1), g2.reshape(-1)], axis=1)
    ll = np.zeros(pts.shape[0])
    for table, (obs, sd) in ((dp, pole), (de, equator)):
        pred = RegularGridInterpolator((logs, logs), table)(pts)
        ll += -0.5 * ((obs - pred) / max(sd, 1e-6)) ** 2
    post = np.exp(ll - ll.max())
    cdf = np.cumsum(post / post.sum())
    idx = np.minimum(np.searchsorted(cdf, rng.random(samples)), post.size - 1)
    i1, i2 = np.divmod(idx, _PAIR_GRID.size)
    return np.asarray(_PAIR_GRID[i1]), np.asarray(_PAIR_GRID[i2])
