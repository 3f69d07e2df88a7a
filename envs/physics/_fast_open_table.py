"""Chebyshev tables of the per-sample Lindblad propagator in the drive amplitude, for the
open-system kernel of 2, 4, 5 and 6 levels.

In the real Hermitian basis a sample's propagator is R(φ)·E(a)·R(φ)⁻¹ with
E(a) = exp(L0 + a·L1), a = |u| the drive amplitude and R(φ) the 2×2 rotations of the
drive phase (``fast.py``, idea 1). E depends on one real number on a known interval:
validated waveforms have a in [0, 1 + slack]. E is entire in a, so its Chebyshev series
on that interval converges geometrically. The table holds the coefficients:

    E(a) = Σ_{k<K} c_k·T_k(x),   x = 2a/A − 1 on [0, A],   c_k (M, M), M = N².

They come from the Taylor kernel itself (``_fast_open_levels.open_kernel``, one sample
per Chebyshev node) and a discrete cosine transform. A table is kept only when the
series has converged to the rounding of the Taylor values: every coefficient from K up
to the last of the ``NODES`` (aliasing would keep those large if it had not) is at most
``TOLERANCE`` times c_0, in the largest entry. Otherwise the model has no table and the
Taylor kernel runs.

A sample then costs K·M² multiply-adds for E plus the product that accumulates the process,
where the Taylor polynomial needs about 8 M×M products (4 powers, 3 Horner steps,
squarings) on 4 levels. Building a table costs ``NODES`` Taylor samples, so it runs only
for calls with at least ``MIN_SAMPLES`` lane-samples per model. Tables are
cached per model (a ``Transmon`` holds dt and every rate the generator depends on).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ._fast_open_levels import LEVELS, open_kernel, table_kernel
from .jit import LANES
from .model import FloatArray, Transmon
from .real_basis import hermitian_basis

# The interval of a = |u|: the largest amplitude ``propagate.check_waveforms`` lets
# through. A call with a larger sample (a caller past validation) runs the Taylor kernel.
AMPLITUDE_MAX = 1.0 + 1e-9
# Chebyshev nodes the coefficients are read from, and the most terms a table may keep:
# at least four trailing coefficients must sit at the rounding floor to show convergence.
NODES = 32
MAX_TERMS = NODES - 4
# Past convergence the coefficients sit at 1e-15 to 3e-15 of c_0 (largest entry): the
# Taylor values themselves move by that much with a, by rounding and where the number of
# squarings steps. The threshold is the first decade clear of that floor; the dropped
# terms then change a sample's E by a few 1e-15, the Taylor kernel's own accuracy.
TOLERANCE = 1e-14
# Lane-samples per model (pulses rounded up to whole SIMD blocks of LANES, times samples)
# from which building a table pays inside one call. Measured break-even on this machine
# (docs/fast_engine.md, "Cost against the level count"): ~800 on 2 levels, where the
# Taylor kernel is cheap and the build is mostly fixed cost, 64–150 on 4 to 6 levels;
# these thresholds sit 1.3–4× above that.
MIN_SAMPLES = {2: 1024, 4: 256, 5: 256, 6: 256}


def chebyshev_nodes(a_hi: float = AMPLITUDE_MAX) -> FloatArray:
    """(NODES,) amplitudes a_j = A·(1 + cos θ_j)/2, θ_j = π(j + ½)/NODES (first kind)."""
    theta = np.pi * (np.arange(NODES) + 0.5) / NODES
    out: FloatArray = 0.5 * a_hi * (1.0 + np.cos(theta))
    return out


def coefficients(values: FloatArray) -> FloatArray:
    """(NODES, M, M) values at ``chebyshev_nodes`` -> (NODES, M, M) Chebyshev coefficients
    c_k = (2 − δ_k0)/NODES · Σ_j values_j·cos(k·θ_j) of the interpolant."""
    theta = np.pi * (np.arange(NODES) + 0.5) / NODES
    basis = np.cos(np.outer(np.arange(NODES), theta)) * (2.0 / NODES)
    basis[0] *= 0.5
    out: FloatArray = (basis @ values.reshape(NODES, -1)).reshape(values.shape)
    return out


def converged_terms(coef: FloatArray, tolerance: float = TOLERANCE) -> int | None:
    """The number K of leading terms to keep: every c_k with k >= K is at most
    ``tolerance`` times c_0 in its largest entry; None when that needs more than
    ``MAX_TERMS`` (not converged)."""
    norms = np.abs(coef).max(axis=(1, 2))
    big = np.nonzero(norms > tolerance * norms[0])[0]
    terms = int(big[-1]) + 1
    return terms if terms <= MAX_TERMS else None


def taylor_at_nodes(l0: FloatArray, l1: FloatArray, levels: int, sparse: bool) -> FloatArray:
    """(NODES, M, M) exp(L0 + a_j·L1) at the nodes from the Taylor kernel, one real-drive
    sample each, without the global gain (μ = 0): the values the table reproduces."""
    _, rot_j, rot_k, rot_s, rot_a = hermitian_basis(levels)
    wr = chebyshev_nodes()[:, None].copy()
    m = l0.shape[-1]
    out = np.empty((NODES, m, m))
    open_kernel(np.zeros(NODES, dtype=np.int64), l0, l1, np.zeros(1), rot_j, rot_k, rot_s,
                rot_a, wr, np.zeros_like(wr), out, sparse)
    return out


@functools.lru_cache(maxsize=64)
def table(t: Transmon) -> FloatArray | None:
    """(K, M, M) read-only Chebyshev coefficients of a model's E(a) on [0, AMPLITUDE_MAX],
    or None when the model has no open fast path or its series has not converged."""
    # fast.py imports this module; its per-model generators are read at call time.
    from .fast import _in_sparsity, _open_params

    params = _open_params(t)
    if params is None or t.levels not in LEVELS:
        return None
    l0, l1, _ = params
    coef = coefficients(taylor_at_nodes(l0, l1, t.levels, _in_sparsity(t)))
    if not np.all(np.isfinite(coef)):
        return None
    terms = converged_terms(coef)
    if terms is None:
        return None
    out = np.ascontiguousarray(coef[:terms])
    out.setflags(write=False)
    return out


def run(transmons: Sequence[Transmon], w: np.ndarray, gidx: np.ndarray, mu: FloatArray,
        rotations: tuple[np.ndarray, ...], out: FloatArray) -> bool:
    """Fill ``out`` (B, M, M) with the superoperators of (B, S) waveforms ``w`` through the
    tables, as ``open_kernel`` would (``gidx``, ``mu`` and the pair ``rotations``
    (rot_j, rot_k, rot_s, rot_a) as it takes them). False, with ``out`` untouched, when the
    call is too small for building tables to pay, a sample lies outside the tables'
    interval or a model has no converged table: then the caller runs the Taylor kernel."""
    batch, samples = w.shape
    work = -(-batch // LANES) * LANES * samples
    if work < MIN_SAMPLES[transmons[0].levels] * len(set(transmons)):
        return False
    if w.size and float(np.max(np.abs(w))) > AMPLITUDE_MAX:
        return False
    tables = []
    for t in transmons:
        tab = table(t)
        if tab is None:
            return False
        tables.append(tab)
    # Padded with zero terms to a multiple of 4: the kernel sums blocks of four.
    terms = -(-max(tab.shape[0] for tab in tables) // 4) * 4
    mm = tables[0].shape[1] ** 2
    stacked = np.zeros((len(tables), mm, terms))
    for g, tab in enumerate(tables):
        stacked[g, :, : tab.shape[0]] = tab.reshape(tab.shape[0], mm).T
    table_kernel(gidx, stacked, 0.0, AMPLITUDE_MAX, mu, *rotations,
                 np.ascontiguousarray(w.real), np.ascontiguousarray(w.imag), out)
    return True
