"""Compiled loops of the simulated device: sequence programs applied to a state, readout.

The sequence compiler (``pulsecal.envs.sequence_compiler``) turns pulse sequences into
integer programs over a list of propagators and frame changes; these loops run them. A
program is a run of operations ``code[k]`` (0: apply propagator ``arg[k]``, 1: frame change
``arg[k]``, 2: nothing) on a state that starts in |0⟩ (or where an earlier program that
starts it ended). Open systems hold the state in the real Hermitian operator basis of the
fast engine (``real_basis.hermitian_basis``), where a channel is a real matrix.

Plain IEEE arithmetic (``fastmath`` off) where a loop replaces a NumPy array expression, so
that it gives NumPy's results to the last bit; the state loops allow FMA contraction
(``jit``'s default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .jit import clip, jit

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

# Operation codes of a program: apply a propagator, change the frame, or nothing (a
# zero-length Delay).
OP_MAT, OP_FRAME, OP_SKIP = 0, 1, 2

# ``scan_waveforms_and_phases``' status bits.
BAD_WAVEFORM, BAD_PHASE, ZERO_PHASE = 1, 2, 4


@jit
def run_programs_open(starts: NDArray[np.int64], resume: NDArray[np.int64], code: NDArray[np.int64],
              arg: NDArray[np.int64], mats: FloatArray, frames: FloatArray, sym: NDArray[np.int64],
              anti: NDArray[np.int64], pair_gap: NDArray[np.int64], out: FloatArray) -> None:
    """P(excited) = clip(1 − ρ₀₀, 0, 1) after each program, from |0⟩⟨0|, in the real
    Hermitian basis.

    Args:
        starts: (Q + 1,) program q is ops starts[q]..starts[q+1].
        resume: (Q,) or empty (none): program q continues program resume[q] < q, whose
            ops are the first ones of q's, from its final state (−1: from the start).
            Resuming applies the same operations to the same state, so it changes no
            result and saves the shared prefix.
        code, arg: (K,) operation code and its index into ``mats`` or ``frames``.
        mats: (E, M, M) real propagators; frames: (3, F, G) pair rotations by gap
            (``real_basis.frame_changes``).
        sym, anti, pair_gap: (P,) basis indices of each level pair and its gap's column.
        out: (Q,) written.
    """
    dim = mats.shape[1]
    n_pairs = sym.shape[0]
    n_q = starts.shape[0] - 1
    v = np.empty(dim)
    t = np.empty(dim)
    final = np.empty((n_q if resume.shape[0] else 0, dim))
    for q in range(n_q):
        first = _resume_state(starts, resume, final, q, v)
        for k in range(first, starts[q + 1]):
            c = code[k]
            if c == 0:
                m = mats[arg[k]]
                for i in range(dim):
                    acc = 0.0
                    for j in range(dim):
                        acc += m[i, j] * v[j]
                    t[i] = acc
                for i in range(dim):
                    v[i] = t[i]
            elif c == 1:
                f = arg[k]
                for p in range(n_pairs):
                    g = pair_gap[p]
                    s = sym[p]
                    a = anti[p]
                    xs = v[s]
                    xa = v[a]
                    v[s] = frames[0, f, g] * xs + frames[1, f, g] * xa
                    v[a] = frames[2, f, g] * xs + frames[0, f, g] * xa
        if final.shape[0]:
            final[q] = v
        out[q] = clip(1.0 - v[0], 0.0, 1.0)


@jit
def run_programs_closed(starts: NDArray[np.int64], resume: NDArray[np.int64], code: NDArray[np.int64],
                arg: NDArray[np.int64], mats: ComplexArray, frames: ComplexArray, out: FloatArray) -> None:
    """P(excited) = clip(1 − |⟨0|ψ⟩|², 0, 1) after each program, from |0⟩; as
    ``run_programs_open`` with unitaries mats (E, N, N) and diagonal frame factors frames
    (F, N)."""
    dim = mats.shape[1]
    n_q = starts.shape[0] - 1
    v = np.empty(dim, dtype=np.complex128)
    t = np.empty(dim, dtype=np.complex128)
    final = np.empty((n_q if resume.shape[0] else 0, dim), dtype=np.complex128)
    for q in range(n_q):
        first = _resume_state(starts, resume, final, q, v)
        for k in range(first, starts[q + 1]):
            c = code[k]
            if c == 0:
                m = mats[arg[k]]
                for i in range(dim):
                    acc = 0.0 + 0.0j
                    for j in range(dim):
                        acc += m[i, j] * v[j]
                    t[i] = acc
                for i in range(dim):
                    v[i] = t[i]
            elif c == 1:
                f = frames[arg[k]]
                for i in range(dim):
                    v[i] = v[i] * f[i]
        if final.shape[0]:
            final[q] = v
        out[q] = clip(1.0 - (v[0].real ** 2 + v[0].imag ** 2), 0.0, 1.0)


@jit(inline="always")
def _resume_state(starts: NDArray[np.int64], resume: NDArray[np.int64], final: NDArray[Any], q: int,
                  v: NDArray[Any]) -> int:
    """Set ``v`` to program q's starting state (|0⟩ or the final state of the program it
    continues, ``run_programs_open``'s ``resume``); returns the index of its first operation
    left."""
    r = resume[q] if resume.shape[0] else -1
    if r < 0:
        for i in range(v.shape[0]):
            v[i] = 0.0
        v[0] = 1.0
        return starts[q]  # type: ignore[no-any-return]
    for i in range(v.shape[0]):
        v[i] = final[r, i]
    return starts[q] + starts[r + 1] - starts[r]  # type: ignore[no-any-return]


@jit(fastmath=False)
def outer_product(x: FloatArray, y: FloatArray, out: FloatArray) -> None:
    """out[i, j] = x[i]·y[j] (plain IEEE: NumPy's broadcast product, without its set-up)."""
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = x[i] * y[j]


@jit
def scan_waveforms_and_phases(w: ComplexArray, phases: FloatArray, max_abs: float) -> int:
    """Status bits of flat waveform samples w (n,) and frame phases (F,): ``BAD_WAVEFORM``
    if some |u| > ``max_abs`` or is NaN, ``BAD_PHASE`` if a phase is NaN/inf, ``ZERO_PHASE``
    if one is exactly 0."""
    status = 0
    # |u|² clearly below max_abs² (by far more than the few ulps of rounding in the
    # square and in abs) proves abs(u) <= max_abs on its own; anything else (near the
    # limit, NaN, inf) takes the exact test, so the verdict is always abs(u)'s.
    surely_below = max_abs * max_abs * (1.0 - 1e-12)
    for u in w:
        if not u.real * u.real + u.imag * u.imag <= surely_below and not abs(u) <= max_abs:
            status |= BAD_WAVEFORM
            break
    for x in phases:
        if not np.isfinite(x):
            status |= BAD_PHASE
        elif x == 0.0:
            status |= ZERO_PHASE
    return status


@jit(fastmath=False)
def read_probabilities(p_exc: FloatArray, errors: FloatArray, sizes: NDArray[np.int64], out: FloatArray) -> None:
    """P(read "1") = clip(p·(1 − p01) + (1 − p)·p10, 0, 1) of populations laid out device by
    device (``sizes[b]`` of device b, whose (p10, p01) is ``errors[b]``): plain IEEE, the
    NumPy expression's operations element by element (NaN passes through).

    Shapes: p_exc, out (Σ sizes,); errors (B, 2); sizes (B,).
    """
    i = 0
    for b in range(sizes.shape[0]):
        p10 = errors[b, 0]
        p01 = errors[b, 1]
        for _ in range(sizes[b]):
            p = p_exc[i]
            out[i] = clip(p * (1.0 - p01) + (1.0 - p) * p10, 0.0, 1.0)
            i += 1
