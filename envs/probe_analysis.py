"""Side-effect free reading of measured probe populations into per-gate error angles.

``analyse`` turns the excited populations of a probe set into rotation-error angles per
probe and per family, by a robust phase estimation that unwraps each deep probe with the
prediction of the shallower ones, and into an estimated infidelity (the measurement-only
reward of the environments).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .drag import parameter_rows
from .physics.calibration_kernels import robust_phase_estimation, sine_signal
from .probes import FAMILIES, Probe

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]



@dataclass(frozen=True)
class Analysis:
    """What the populations say. Shapes: angles (B, K), family_angle (B, 3), infidelity (B,)."""

    angles: FloatArray
    family_angle: FloatArray
    infidelity: FloatArray


@functools.lru_cache(maxsize=64)
def _analysis_ranks(kinds: tuple[str, ...], gains: tuple[float, ...]) -> tuple[
        tuple[NDArray[np.int64], NDArray[np.int64], FloatArray], ...]:
    """For ``analyse``: per depth rank r, the families that have an r-th probe, those
    probes' columns (each family's probes sorted by gain) and their weights gain²."""
    g = np.array(gains)
    per_fam = [sorted((k for k, kind in enumerate(kinds) if kind == fam), key=lambda k: g[k])
               for fam in FAMILIES]
    out = []
    for r in range(max((len(ks) for ks in per_fam), default=0)):
        fams = [j for j, ks in enumerate(per_fam) if len(ks) > r]
        cols = [per_fam[j][r] for j in fams]
        # Weights gain², each a scalar power.
        weights = np.array([g[k] ** 2 for k in cols])
        out.append((np.array(fams, dtype=np.int64), np.array(cols, dtype=np.int64), weights))
    return tuple(out)


def analyse(p1: ArrayLike, probes: Sequence[Probe], gate_duration_s: float) -> Analysis:
    """Read measured excited populations (B, K) into per-gate error angles.

    Per probe: θ = asin(clip(2·P1 − 1)) is the accumulated angle modulo the sine's
    ambiguity (θ or π − θ, plus 2πm). Per family, robust phase estimation: probes are
    taken from shallow to deep; each deeper probe's angle is unwrapped to the candidate
    closest to what the estimate so far predicts (gain × angle), and the estimate becomes
    the gain²-weighted mean (inverse variance under shot noise) of the unwrapped angles,
    which the deep probes dominate. Estimated infidelity: Σ_family angle²/6.
    NaN populations (probe not run) are ignored. Pure function, no shots.
    """
    p = parameter_rows(p1)
    gains, (rank_fam, rank_col, rank_w) = _analysis_setup(tuple(probes), float(gate_duration_s))
    # The arcsine stays NumPy's; the plain-IEEE steps around it are compiled loops (on a
    # few rows, each array operation costs more to call than to compute).
    theta = np.arcsin(sine_signal(np.ascontiguousarray(p)))
    return Analysis(*robust_phase_estimation(theta, gains, rank_fam, rank_col, rank_w))


@functools.lru_cache(maxsize=64)
def _analysis_setup(probes: tuple[Probe, ...], gate_duration_s: float) -> tuple[
        FloatArray, tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]]:
    """``analyse``'s per-probe-set constants (gains and ``_flat_ranks``), built once per
    probe set and gate duration instead of on every call (private: nobody writes them)."""
    gains = np.array([pr.gain(gate_duration_s) for pr in probes])
    return gains, _flat_ranks(tuple(pr.kind for pr in probes), tuple(gains.tolist()))


@functools.lru_cache(maxsize=64)
def _flat_ranks(kinds: tuple[str, ...], gains: tuple[float, ...]
                ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
    """``_analysis_ranks`` as (R, F) arrays, padded with family −1."""
    ranks = _analysis_ranks(kinds, gains)
    n_fam = len(FAMILIES)
    fam = np.full((len(ranks), n_fam), -1, dtype=np.int64)
    col = np.zeros((len(ranks), n_fam), dtype=np.int64)
    w = np.zeros((len(ranks), n_fam))
    for r, (f, c, wt) in enumerate(ranks):
        fam[r, :f.size], col[r, :c.size], w[r, :wt.size] = f, c, wt
    return fam, col, w
