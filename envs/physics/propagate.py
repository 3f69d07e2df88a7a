"""Public propagation API: validate once, then dispatch to one engine.

All engines compute the same thing, exactly for a piecewise-constant drive: one
matrix exponential per AWG sample, multiplied in time order (sample 0 acts first),

    U = exp(−i·H_{S−1}·dt) ··· exp(−i·H_0·dt),      S = exp(L_{S−1}·dt) ··· exp(L_0·dt).

Every engine receives validated (B, S) waveforms and either one ``Transmon`` or a tuple
of B of them (row b simulated on device b).

Engines:
    "numpy"            our own engine (default): batched, exact, fast.
    "qutip"            reference: QuTiP's own operators, Liouvillian and expm per sample.
    "qiskit-dynamics"  reference (optional extra ``pulsecal[dynamics]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .model import ComplexArray, Transmon

Engine = Literal["numpy", "numpy-reference", "qutip", "qiskit-dynamics"]
ENGINES: tuple[str, ...] = ("numpy", "numpy-reference", "qutip", "qiskit-dynamics")

_AMPLITUDE_SLACK = 1e-9


def check_waveforms(waveforms: ArrayLike) -> tuple[ComplexArray, bool]:
    """Validate drive waveforms and return them as (B, S) complex128 plus a 'was 1-D' flag.

    Raises ``ValueError`` for a wrong shape, an empty pulse, NaN/inf samples or |u| > 1.
    """
    try:
        w = np.asarray(waveforms, dtype=np.complex128)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"waveforms cannot be read as complex numbers: {exc}") from None
    single = w.ndim == 1
    if single:
        w = w[None, :]
    if w.ndim != 2:
        raise ValueError(
            f"waveforms has shape {np.shape(waveforms)}: allowed (B, S) or (S,) complex samples"
        )
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"waveforms has shape {w.shape}: need at least one pulse and one sample")
    if not np.all(np.isfinite(w)):
        bad = np.argwhere(~np.isfinite(w))[0]
        raise ValueError(f"waveforms[{bad[0]}, {bad[1]}] is not finite: allowed |u| <= 1")
    mag = np.abs(w)
    if np.any(mag > 1.0 + _AMPLITUDE_SLACK):
        bad = np.unravel_index(int(np.argmax(mag)), mag.shape)
        raise ValueError(
            f"waveforms[{bad[0]}, {bad[1]}] has |u| = {mag[bad]:.6g}: allowed |u| <= 1 "
            "(full-scale AWG amplitude)"
        )
    return np.ascontiguousarray(w), single


TransmonArg = Transmon | Sequence[Transmon]


def _check_transmon(transmon: object, batch: int) -> Transmon | tuple[Transmon, ...]:
    """One Transmon for every pulse, or one per pulse (same ``levels`` and ``dt_s``)."""
    if isinstance(transmon, Transmon):
        return transmon
    if isinstance(transmon, Sequence) and not isinstance(transmon, str | bytes):
        rows = tuple(transmon)
        if len(rows) != batch:
            raise ValueError(
                f"transmon is a sequence of {len(rows)} but waveforms has {batch} pulses: "
                "allowed one Transmon, or exactly one per pulse"
            )
        for i, r in enumerate(rows):
            if not isinstance(r, Transmon):
                raise TypeError(f"transmon[{i}] must be a Transmon, got {type(r).__name__}")
            if r.levels != rows[0].levels or r.dt_s != rows[0].dt_s:
                raise ValueError(
                    f"transmon[{i}] has levels={r.levels}, dt_s={r.dt_s}: all rows must share "
                    f"levels={rows[0].levels} and dt_s={rows[0].dt_s}"
                )
        return rows
    raise TypeError(f"transmon must be a Transmon or a sequence of them, got {type(transmon).__name__}")


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is unknown: allowed {list(ENGINES)}")
    return engine


def _engine_module(engine: str) -> ModuleType:
    """The module implementing ``engine`` (checked); each is imported only when asked for,
    so QuTiP and qiskit-dynamics stay optional."""
    eng = _check_engine(engine)
    if eng == "numpy":
        from . import fast

        return fast
    if eng == "numpy-reference":
        from . import reference

        return reference
    if eng == "qutip":
        from . import engine_qutip

        return engine_qutip
    from . import engine_dynamics

    return engine_dynamics


def unitaries(transmon: TransmonArg, waveforms: ArrayLike, *, engine: Engine = "numpy") -> ComplexArray:
    """Closed-system propagators of a batch of piecewise-constant pulses.

    Args:
        transmon: the device model (its ``dt_s`` is the sample time), or a sequence of B
            models, one per pulse (same ``levels`` and ``dt_s``), so that many devices
            share one call.
        waveforms: (B, S) complex samples with |u| <= 1, or (S,) for a single pulse.
        engine: see module docstring.
    Returns:
        (B, N, N) unitaries, or (N, N) for a 1-D input.
    """
    w, single = check_waveforms(waveforms)
    t = _check_transmon(transmon, w.shape[0])
    out: ComplexArray = _engine_module(engine).unitaries(t, w)
    return out[0] if single else out


def superoperators(
    transmon: TransmonArg, waveforms: ArrayLike, *, engine: Engine = "numpy"
) -> ComplexArray:
    """Open-system (Lindblad, T1 and T2) propagators of a batch of pulses.

    Column-stacking convention: vec(ρ) stacks the columns of ρ, so element (r, c) of ρ
    sits at index r + c·N, and vec(ρ_out) = S · vec(ρ_in).

    Args:
        transmon: the device model, including ``t1_s`` and ``t2_s``, or one per pulse.
        waveforms: (B, S) complex samples with |u| <= 1, or (S,) for a single pulse.
        engine: see module docstring.
    Returns:
        (B, N², N²) superoperators, or (N², N²) for a 1-D input.
    """
    w, single = check_waveforms(waveforms)
    t = _check_transmon(transmon, w.shape[0])
    out: ComplexArray = _engine_module(engine).superoperators(t, w)
    return out[0] if single else out
