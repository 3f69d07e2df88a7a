"""Public propagation API of coupled models: validate once, dispatch to one engine.

Every engine computes the same thing (``reference.py`` states it): propagators of a pulse
on the model's AWG grid, in the modes' own frames, exact when every playing drive channel
shares one frame frequency, CF4-substepped otherwise (docs/coupled_engine.md).

Engines:
    "numpy"            our own engine (default): structure-exploiting, ``fast.py``.
    "numpy-reference"  ``reference.py``: plain scipy ``expm`` per sample.
    "qutip"            reference, ``engine_qutip`` (QuTiP's operators and expm).
    "qiskit-dynamics"  reference, ``engine_dynamics`` (optional extra ``pulsecal[dynamics]``).

Shapes: D = Π dims; B the batch (rows of the controls, or the number of models given).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from . import fast, reference
from .controls import as_operator_model, check_pulse
from .model import ComplexArray, CoupledModel, FloatArray, parse_channel, thermal_state
from .operators import OperatorModel

Engine = Literal["numpy", "numpy-reference", "qutip", "qiskit-dynamics"]
ENGINES: tuple[str, ...] = ("numpy", "numpy-reference", "qutip", "qiskit-dynamics")
ModelArg = CoupledModel | OperatorModel
Models = ModelArg | Sequence[ModelArg]


def _check_engine(engine: object) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is unknown: allowed {list(ENGINES)}")
    return str(engine)


def _reference_module(engine: str) -> ModuleType:
    """The QuTiP or qiskit-dynamics engine, imported only when asked for."""
    name = {"qutip": "engine_qutip", "qiskit-dynamics": "engine_dynamics"}[engine]
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as exc:
        raise ImportError(f"engine={engine!r} is unavailable: {exc} (QuTiP ships with pulsecal; "
                          "qiskit-dynamics needs the extra pulsecal[dynamics])") from exc


def _propagate(model: Models, controls: Mapping[str, ArrayLike], t0_s: float, open_system: bool,
               engine: str, max_phase_step: float, support: np.ndarray | None = None) -> ComplexArray:
    eng = _check_engine(engine)
    if not (isinstance(max_phase_step, int | float) and 0.0 < max_phase_step <= 1.0):
        raise ValueError(f"max_phase_step={max_phase_step!r} is out of range: allowed (0, 1] rad")
    om, pulse = fast.check_rows(model, controls, t0_s)
    if eng == "numpy":
        return fast.propagate(om, pulse, open_system, max_phase_step, support)
    rows = (om,) if isinstance(om, OperatorModel) else om
    if eng == "numpy-reference":
        if len(rows) == 1:
            return reference._propagate(rows[0], pulse, open_system, max_phase_step)
        return np.concatenate([reference._propagate(r, fast._row(pulse, b), open_system, max_phase_step)
                               for b, r in enumerate(rows)])
    mod = _reference_module(eng)
    fn = mod.superoperators if open_system else mod.unitaries
    if len(rows) == 1:
        return np.asarray(fn(rows[0], pulse))
    return np.concatenate([np.asarray(fn(r, fast._row(pulse, b))) for b, r in enumerate(rows)])


def unitaries(model: Models, controls: Mapping[str, ArrayLike], *, t0_s: float = 0.0,
              engine: Engine = "numpy", max_phase_step: float = 0.05) -> ComplexArray:
    """Closed-system propagators of a batch of pulses, in the modes' frames.

    Args:
        model: a ``CoupledModel`` or ``OperatorModel``, or a sequence of B of them (one per
            pulse row; same dims, ``dt_s`` and channels).
        controls: channel name -> samples, (S,) shared or (B, S) per row (``check_pulse``).
        t0_s: time of the pulse's first sample since the frames' origin (t = 0).
        engine: see the module docstring.
        max_phase_step: largest phase (rad) a drive's frame turns by relative to the common
            frame within one substep, when drives at several frequencies play.
    Returns:
        (B, D, D) unitaries (B = 1 for a single pulse).
    """
    return _propagate(model, controls, t0_s, False, engine, max_phase_step)


def superoperators(model: Models, controls: Mapping[str, ArrayLike], *, t0_s: float = 0.0,
                   engine: Engine = "numpy", max_phase_step: float = 0.05) -> ComplexArray:
    """Lindblad propagators, (B, D², D²), column stacking: vec(ρ) stacks the columns of ρ,
    ρ[r, c] at index r + c·D, vec(ρ_out) = S·vec(ρ_in). Arguments as ``unitaries``."""
    return _propagate(model, controls, t0_s, True, engine, max_phase_step)


# ---------------------------------------------------------------------------------------
# States through a probe sequence.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    """Free evolution for ``duration_s`` (any length, exact): no drive, flux at idle."""

    duration_s: float

    def __post_init__(self) -> None:
        d = self.duration_s
        if not (isinstance(d, int | float) and math.isfinite(d) and 0.0 <= d <= 1.0):
            raise ValueError(f"Idle.duration_s={d!r} is out of range: allowed [0, 1] s")


@dataclass(frozen=True)
class FramePhase:
    """An ideal frame change (virtual Z): every later sample of every drive channel at
    ``mode``'s frame is multiplied by e^{iφ}. ``phase``: one angle (rad), or (B,) per row."""

    mode: str
    phase: float | FloatArray


Segment = Mapping[str, ArrayLike] | Idle | FramePhase


def _channel_frames(om: OperatorModel) -> dict[str, str]:
    """Drive channel -> the mode whose frame it plays at."""
    out: dict[str, str] = {}
    for name, ch in om.drives.items():
        try:
            _, _, frame = parse_channel(name)
        except ValueError:
            frame = ""
        if frame not in om.names:
            matches = [m for m, g in zip(om.names, om.mode_frames_hz, strict=True) if g == ch.frequency_hz]
            frame = matches[0] if len(matches) == 1 else ""
        out[name] = frame
    return out


def _initial(om: OperatorModel, rho0: ArrayLike | None, batch: int) -> ComplexArray:
    d = om.dimension
    if rho0 is None:
        if isinstance(om.source, CoupledModel):
            rho = thermal_state(om.source)
        else:
            rho = np.zeros((d, d), dtype=np.complex128)
            rho[0, 0] = 1.0
        return np.broadcast_to(rho, (batch, d, d)).copy()
    rho = np.asarray(rho0, dtype=np.complex128)
    if rho.ndim == 2:
        rho = rho[None]
    if rho.ndim != 3 or rho.shape[1:] != (d, d) or rho.shape[0] not in (1, batch):
        raise ValueError(f"rho0 has shape {np.shape(rho0)}: allowed (D, D) or (B, D, D) with D = {d}, B = {batch}")
    if not np.all(np.isfinite(rho)):
        raise ValueError("rho0 is not finite")
    return np.broadcast_to(rho, (batch, d, d)).copy()


def evolve_states(model: Models, segments: Sequence[Segment], rho0: ArrayLike | None = None, *,
                  open_system: bool = True, populations: bool = False, t0_s: float = 0.0,
                  engine: Engine = "numpy", max_phase_step: float = 0.05) -> ComplexArray | FloatArray:
    """Density matrices through a probe sequence: one call per sequence batch.

    Args:
        model: one model, or B models (one per row), as ``unitaries``.
        segments: in time order, each one of
            - a controls mapping (channel -> (S,) or (B, S) samples): a pulse;
            - ``Idle(duration_s)``: exact free evolution of any length;
            - ``FramePhase(mode, phase)``: later drive samples at that mode's frame turn by e^{iφ}.
        rho0: (D, D) or (B, D, D) initial states; default the thermal product state
            (|0…0⟩ for a model that is not a ``CoupledModel``).
        open_system: Lindblad (default) or closed evolution.
        populations: return the diagonals (B, D) instead of the states.
        t0_s: time of the first segment since the frames' origin.
    Returns:
        (B, D, D) final states in the modes' frames, or (B, D) populations.
    """
    eng = _check_engine(engine)
    if isinstance(model, CoupledModel | OperatorModel):
        oms: tuple[OperatorModel, ...] = (as_operator_model(model),)
    else:
        oms = tuple(as_operator_model(m) for m in model)
    if isinstance(segments, Mapping) or not isinstance(segments, Sequence):
        raise ValueError("segments: allowed a list of controls mappings, Idle and FramePhase")
    batch = len(oms) if len(oms) > 1 else 1
    for seg in segments:
        if isinstance(seg, Mapping):
            batch = max([batch, *(np.shape(v)[0] for v in seg.values() if np.ndim(v) == 2)])
        elif isinstance(seg, FramePhase):
            batch = max(batch, int(np.size(seg.phase)))
    if len(oms) > 1 and batch != len(oms):
        raise ValueError(f"model is a sequence of {len(oms)} but the segments have batch {batch}")
    om0 = oms[0]
    rho = _initial(om0, rho0, batch)
    frames = _channel_frames(om0)
    phase = {m: np.zeros(batch) for m in om0.names}
    t = float(t0_s)
    model_arg: Models = model if len(oms) == 1 else list(oms)
    for i, seg in enumerate(segments):
        if isinstance(seg, FramePhase):
            if seg.mode not in phase:
                raise ValueError(f"segments[{i}].mode={seg.mode!r}: allowed a mode in {list(om0.names)}")
            ph = np.asarray(seg.phase, dtype=np.float64).reshape(-1)
            if ph.size not in (1, batch) or not np.all(np.isfinite(ph)):
                raise ValueError(f"segments[{i}].phase: allowed a finite angle or ({batch},) angles")
            phase[seg.mode] = phase[seg.mode] + ph
            continue
        if isinstance(seg, Idle):
            if seg.duration_s > 0.0:
                ops = [_idle(om, seg.duration_s, open_system, t, eng) for om in oms]
                op = np.stack(ops) if len(ops) > 1 else ops[0][None]
                rho = _apply(op, rho, open_system)
                t += seg.duration_s
            continue
        if not isinstance(seg, Mapping):
            raise ValueError(f"segments[{i}] is a {type(seg).__name__}: allowed a controls mapping, Idle or FramePhase")
        controls: dict[str, ArrayLike] = {}
        for name, u in seg.items():
            f = frames.get(name)
            if f is not None and np.any(phase[f] != 0.0):
                turn = np.exp(1j * phase[f])
                arr = np.asarray(u, dtype=np.complex128)
                controls[name] = turn[:, None] * (arr if arr.ndim == 2 else arr[None, :])
            else:
                controls[name] = u
        pulse = check_pulse(om0, controls, t0_s=t)
        if open_system and eng == "numpy" and len(oms) == 1:
            # The states through the pulse without its propagator (``fast.evolve_vectors``).
            vec = rho.transpose(0, 2, 1).reshape(batch, -1)
            moved = fast.evolve_vectors(om0, pulse, True, vec, max_phase_step)
            if moved is not None:
                rho = np.ascontiguousarray(moved.reshape(batch, om0.dimension, om0.dimension).transpose(0, 2, 1))
                t += pulse.n_samples * om0.dt_s
                continue
        # Only the blocks the states occupy are needed (from |00⟩ or a thermal state through
        # flux pulses: coherence order 0, 19 of 81 states for 2 × 3 levels).
        nz = rho != 0
        support = (nz.transpose(0, 2, 1).reshape(batch, -1).any(axis=0) if open_system
                   else nz.any(axis=(0, 1)) | nz.any(axis=(0, 2)))
        op = _propagate(model_arg, controls, t, open_system, eng, max_phase_step, support)
        rho = _apply(op, rho, open_system)
        t += pulse.n_samples * om0.dt_s
    if populations:
        return np.ascontiguousarray(np.diagonal(rho, axis1=1, axis2=2).real)
    return rho


def _idle(om: OperatorModel, duration_s: float, open_system: bool, t0_s: float, engine: str) -> ComplexArray:
    # Idle is one exponential of a constant generator: every engine agrees on it exactly,
    # and a long delay sampled on the AWG grid by a reference engine would only be slower.
    if engine == "numpy-reference":
        if open_system:
            return reference.idle_superoperator(om, duration_s, t0_s=t0_s)
        return reference.idle_unitary(om, duration_s, t0_s=t0_s)
    return fast.idle_propagator(om, duration_s, open_system, t0_s)


def _apply(op: ComplexArray, rho: ComplexArray, open_system: bool) -> ComplexArray:
    """(B or 1, n, n) propagator on (B, D, D) states."""
    b, d = rho.shape[0], rho.shape[1]
    op = np.broadcast_to(op, (b, *op.shape[1:]))
    if not open_system:
        return np.einsum("bij,bjk,blk->bil", op, rho, op.conj(), optimize=True)
    vec = rho.transpose(0, 2, 1).reshape(b, d * d)  # column stacking
    out = np.einsum("bij,bj->bi", op, vec)
    return np.ascontiguousarray(out.reshape(b, d, d).transpose(0, 2, 1))
