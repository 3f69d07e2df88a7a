"""Bring-your-own models: a device described with QuTiP objects or a qiskit-dynamics model,
compiled to the operator form (``operators.OperatorModel``) every coupled engine runs.

The operator form is H(t) = H_static + Σ_c [v_c·R_c + v_c*·R_c†] + Σ_r x_r·O_r with
v_c = u_c·e^{−i2π(f_c − frame_hz)t} (module docstring of ``operators``). A complex (drive)
channel is given by its raising part R_c, a real channel by its Hermitian operator O_r.
Units are SI: Hamiltonians in rad/s (2π × Hz), collapse operators in √(1/s), frequencies
in Hz, times in s; ``from_qiskit_dynamics`` rescales a model written in another time unit
(``time_unit_s``, e.g. 1e-9 for rad/ns).

Everything is checked here, once, and every error names the argument or field, the value
and what is allowed: a model that compiles runs through every engine unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .model import FRAME_RANGE_HZ, ComplexArray, parse_channel
from .operators import DriveControl, OperatorModel, RealControl, is_shiftable

_MODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HERMITIAN_RTOL = 1e-10
_FRAME_ALLOWED = f"0 (the lab frame) or a frequency in [{FRAME_RANGE_HZ[0]:g}, {FRAME_RANGE_HZ[1]:g}] Hz"


def _bad(field: str, value: object, allowed: str) -> ValueError:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return ValueError(f"{field}={text} is out of range: allowed {allowed}")


def _frequency(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _bad(field, value, _FRAME_ALLOWED)
    f = float(value)
    if not (math.isfinite(f) and (f == 0.0 or FRAME_RANGE_HZ[0] <= f <= FRAME_RANGE_HZ[1])):
        raise _bad(field, value, _FRAME_ALLOWED)
    return f


def _matrix(field: str, obj: object, dims: tuple[int, ...] | None) -> ComplexArray:
    """A (D, D) complex matrix from a ``qutip.Qobj`` or an array; a Qobj's dims must be dims."""
    qdims = getattr(obj, "dims", None)
    if qdims is not None and hasattr(obj, "full"):
        if dims is not None and [list(map(int, d)) for d in qdims] != [list(dims), list(dims)]:
            raise ValueError(f"{field} has dims {qdims}: allowed {[list(dims), list(dims)]} (the model's dims)")
        arr = np.asarray(obj.full(), dtype=np.complex128)  # type: ignore[attr-defined]
    else:
        try:
            arr = np.asarray(obj, dtype=np.complex128)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field} cannot be read as a complex matrix: {exc}") from None
    d = int(np.prod(dims)) if dims is not None else (arr.shape[0] if arr.ndim == 2 else -1)
    if arr.shape != (d, d):
        raise ValueError(f"{field} has shape {arr.shape}: allowed ({d}, {d}) (the product of the model's dims)")
    if not np.all(np.isfinite(arr)):
        i, j = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{field}[{i}, {j}] = {arr[i, j]!r} is not finite")
    return arr


def _hermitian(field: str, arr: ComplexArray) -> None:
    err = float(np.abs(arr - arr.conj().T).max())
    if err > _HERMITIAN_RTOL * max(float(np.abs(arr).max()), 1.0):
        raise ValueError(f"{field} is not Hermitian (max |A − A†| = {err:.3g}): allowed a Hermitian operator")


def build_operator_model(
    *,
    dims: Sequence[int],
    h_static: ComplexArray,
    drives: Mapping[str, tuple[ComplexArray, float | None]],
    reals: Mapping[str, ComplexArray],
    collapse: Sequence[ComplexArray],
    dt_s: float,
    frame_hz: float,
    qubit_levels: Sequence[tuple[int, int] | None] | None = None,
    mode_names: Sequence[str] | None = None,
    mode_frames_hz: Sequence[float] | None = None,
    max_abs: Mapping[str, float] | None = None,
    source: object = None,
) -> OperatorModel:
    """Validate matrices already in SI units (rad/s, √(1/s)) and assemble an ``OperatorModel``.

    drives: channel -> (raising part R, frame frequency in Hz or None for its frame mode's
    frame); reals: channel -> Hermitian O. The shared back end of ``from_qutip`` and
    ``from_qiskit_dynamics``; use it directly for plain NumPy matrices.
    """
    if (isinstance(dims, str) or not isinstance(dims, Sequence) or not dims
            or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and 2 <= int(d) <= 16
                       for d in dims)):
        raise _bad("dims", dims, "a non-empty sequence of integers in [2, 16] (levels of each mode)")
    dims_t = tuple(int(d) for d in dims)
    dimension = math.prod(dims_t)
    if dimension > 4096:
        raise _bad("dims", dims, "a total dimension Π dims <= 4096")
    n = len(dims_t)
    names = tuple(mode_names) if mode_names is not None else tuple(f"q{i}" for i in range(n))
    if len(names) != n or not all(isinstance(m, str) and _MODE_NAME.match(m) for m in names) \
            or len(set(names)) != n:
        raise _bad("mode_names", mode_names, f"{n} distinct identifiers like 'q0' (one per entry of dims)")
    levels: tuple[tuple[int, int] | None, ...]
    if qubit_levels is None:
        levels = ((0, 1),) * n
    else:
        if len(qubit_levels) != n:
            raise _bad("qubit_levels", qubit_levels, f"{n} entries (one per mode)")
        out: list[tuple[int, int] | None] = []
        for i, lv in enumerate(qubit_levels):
            if lv is None:
                out.append(None)
                continue
            ok = (isinstance(lv, Sequence) and len(lv) == 2
                  and all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in lv)
                  and all(0 <= int(x) < dims_t[i] for x in lv) and lv[0] != lv[1])
            if not ok:
                raise _bad(f"qubit_levels[{i}]", lv,
                           f"None or two different levels in [0, {dims_t[i] - 1}] (mode {names[i]!r} has {dims_t[i]})")
            out.append((int(lv[0]), int(lv[1])))
        levels = tuple(out)
    if all(lv is None for lv in levels):
        raise _bad("qubit_levels", qubit_levels, "at least one mode with a qubit (two levels)")
    frame = _frequency("frame_hz", frame_hz)
    if mode_frames_hz is None:
        frames = (frame,) * n
    else:
        if len(mode_frames_hz) != n:
            raise _bad("mode_frames_hz", mode_frames_hz, f"{n} frequencies (one per mode)")
        frames = tuple(_frequency(f"mode_frames_hz[{i}]", g) for i, g in enumerate(mode_frames_hz))
    if not (isinstance(dt_s, int | float) and not isinstance(dt_s, bool) and math.isfinite(dt_s)
            and 1e-12 <= dt_s <= 1e-6):
        raise _bad("dt_s", dt_s, "[1e-12, 1e-6] s (the AWG sample time)")

    h0 = _matrix("h_static", h_static, dims_t)
    _hermitian("h_static", h0)
    bounds = dict(max_abs or {})
    drive_ops: dict[str, DriveControl] = {}
    for name, (op, freq) in drives.items():
        kind, line, frame_mode = _channel(name, names)
        if kind != "drive":
            raise ValueError(f"channel={name!r} has a complex operator: allowed 'drive:<mode>[@<mode>]' "
                             "for a complex channel (flux/coupler channels are real)")
        r = _matrix(f"controls[{name!r}].operator", op, dims_t)
        f = frames[names.index(frame_mode)] if freq is None else _frequency(f"controls[{name!r}].frequency_hz", freq)
        drive_ops[name] = DriveControl(r, f, line)
    real_ops: dict[str, RealControl] = {}
    for name, op in reals.items():
        kind, line, _ = _channel(name, names)
        if kind == "drive":
            raise ValueError(f"channel={name!r} is a drive channel: allowed a complex operator R with a "
                             "frequency; real channels are 'flux:<mode>' or 'coupler:<mode>'")
        o = _matrix(f"controls[{name!r}].operator", op, dims_t)
        _hermitian(f"controls[{name!r}].operator", o)
        bound = bounds.pop(name, 1.0)
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not (math.isfinite(bound) and bound > 0):
            raise _bad(f"max_abs[{name!r}]", bound, "a finite bound > 0 on |sample|")
        real_ops[name] = RealControl(o, float(bound), None, None, line, bool(np.allclose(o, np.diag(np.diag(o)))))
    if bounds:
        raise _bad("max_abs", sorted(bounds), f"bounds for real channels only: {sorted(real_ops)}")
    if not drive_ops and not real_ops:
        raise _bad("controls", [], "at least one control channel")
    c_ops = tuple(_matrix(f"c_ops[{k}]", c, dims_t) for k, c in enumerate(collapse))
    return OperatorModel(
        dims=dims_t, names=names, qubit_levels=levels, frame_hz=frame, mode_frames_hz=frames,
        h_static=h0, drives=drive_ops, reals=real_ops, collapse=c_ops, dt_s=float(dt_s),
        shiftable=is_shiftable(dims_t, h0, drive_ops, real_ops, c_ops), source=source,
    )


def _channel(name: object, modes: tuple[str, ...]) -> tuple[str, str, str]:
    if not isinstance(name, str):
        raise _bad("channel", name, "a channel name 'drive:<mode>', 'drive:<mode>@<mode>', "
                   "'flux:<mode>' or 'coupler:<mode>'")
    kind, line, frame = parse_channel(name)
    for m in (line, frame):
        if m not in modes:
            raise ValueError(f"channel={name!r} names mode {m!r}: allowed modes {list(modes)} (mode_names)")
    return kind, line, frame


# -- QuTiP ---------------------------------------------------------------------------------


def from_qutip(
    h_static: Any,
    controls: Sequence[tuple[Any, str, float | None]],
    *,
    dt_s: float,
    frame_hz: float,
    c_ops: Sequence[Any] = (),
    dims: Sequence[int] | None = None,
    qubit_levels: Sequence[tuple[int, int] | None] | None = None,
    mode_names: Sequence[str] | None = None,
    mode_frames_hz: Sequence[float] | None = None,
    max_abs: Mapping[str, float] | None = None,
) -> OperatorModel:
    """A model from QuTiP objects (or (D, D) arrays), in rad/s.

    Args:
        h_static: the idle Hamiltonian (rad/s) in a common frame where every mode rotates at
            ``frame_hz`` (0: the lab frame).
        controls: ``(operator, channel, frequency_hz)`` per channel. A drive channel
            (``drive:q0``, ``drive:q0@q1``) gives its raising part R (rad/s at |u| = 1;
            the term is u·R + u*·R†) and its frame frequency in Hz (``None``: the frame of
            the mode after ``@``, else of its own mode). A flux or coupler channel
            (``flux:q1``, ``coupler:c``) gives a Hermitian O (rad/s per unit of sample;
            the term is x·O) and ``None``.
        dt_s: AWG sample time, s.
        frame_hz: the common frame of ``h_static`` and of the control operators, Hz.
        c_ops: collapse operators, √(1/s).
        dims: levels of each mode (mode 0 most significant, as ``qutip.tensor``); taken from
            ``h_static.dims`` when it is a Qobj, and then every object must have those dims.
        qubit_levels: per mode, the two levels forming its qubit, or None for a mode kept
            out of the computational space; default (0, 1) for every mode.
        mode_names: default q0, q1, ...
        mode_frames_hz: each mode's own frame (Hz) results are reported in; default frame_hz.
        max_abs: per real channel, the bound on |sample| (default 1).
    """
    if dims is None:
        qd = getattr(h_static, "dims", None)
        if qd is None:
            raise _bad("dims", None, "the levels of each mode (required when h_static is not a Qobj)")
        dims = [int(d) for d in qd[0]]
    if isinstance(controls, Mapping) or not isinstance(controls, Sequence):
        raise _bad("controls", controls, "a sequence of (operator, channel, frequency_hz or None)")
    drives: dict[str, tuple[Any, float | None]] = {}
    reals: dict[str, Any] = {}
    for k, entry in enumerate(controls):
        if not (isinstance(entry, tuple | list) and len(entry) == 3):
            raise _bad(f"controls[{k}]", entry, "(operator, channel, frequency_hz or None)")
        op, name, freq = entry
        if name in drives or name in reals:
            raise _bad(f"controls[{k}].channel", name, "each channel once")
        if not isinstance(name, str):
            raise _bad(f"controls[{k}].channel", name, "a channel name such as 'drive:q0' or 'flux:q1'")
        if parse_channel(name)[0] == "drive":
            drives[name] = (op, freq)
        else:
            if freq is not None:
                raise _bad(f"controls[{k}].frequency_hz", freq, f"None (channel {name!r} is real)")
            reals[name] = op
    return build_operator_model(
        dims=dims, h_static=h_static, drives=drives, reals=reals, collapse=list(c_ops), dt_s=dt_s,
        frame_hz=frame_hz, qubit_levels=qubit_levels, mode_names=mode_names,
        mode_frames_hz=mode_frames_hz, max_abs=max_abs, source="qutip",
    )


# -- qiskit-dynamics -----------------------------------------------------------------------

_DYNAMICS_MISSING = "from_qiskit_dynamics needs the optional extra: pip install 'pulsecal[dynamics]'"


def from_qiskit_dynamics(
    solver_or_model: Any,
    channels: Mapping[str, Any],
    *,
    dims: Sequence[int],
    frame_hz: float,
    dt_s: float | None = None,
    time_unit_s: float = 1.0,
    qubit_levels: Sequence[tuple[int, int] | None] | None = None,
    mode_names: Sequence[str] | None = None,
    mode_frames_hz: Sequence[float] | None = None,
    max_abs: Mapping[str, float] | None = None,
) -> OperatorModel:
    """A model from a qiskit-dynamics ``Solver``, ``HamiltonianModel`` or ``LindbladModel``.

    The model's H(t) = H0 + Σ_k s_k(t)·H_k (H0 and H_k in rad per ``time_unit_s``, in a
    common frame where every mode rotates at ``frame_hz``) and its static dissipators are
    read through its public properties. ``channels`` says which Hamiltonian operators form
    which channel; an operator is named by its index in ``hamiltonian_operators`` or by
    its name in the solver's ``hamiltonian_channels``; every operator must be used once:

    - ``'flux:q1': k``: a real channel, x·H_k.
    - ``'drive:q0': (k_i, k_q)`` or ``(k_i, k_q, frequency_hz)``: a complex channel whose
      in-phase and quadrature parts drive H_I and H_Q, I·H_I + Q·H_Q with I + iQ = v
      (R = (H_I − i·H_Q)/2).
    - ``'drive:q0': (k, None)`` or ``(k, None, frequency_hz)``: one Hermitian operator driven
      as Re[v]·H_k (R = H_k/2), the lab-frame form of qiskit's pulse simulations, where the
      signal Re[d·e^{i2πft}] has d = conj(u) for our samples u.

    The frequency defaults to the frame of the channel's frame mode. A rotating frame on the
    model is how its results are reported: it must be diagonal and of the form
    2π·Σ_i (g_i − frame_hz)·n_i, which sets ``mode_frames_hz`` (or must agree with it).
    Refused: time-dependent dissipators, a non-diagonal rotating frame, a frame that is not
    one frequency per mode, an operator not mapped to a channel.
    """
    try:
        from qiskit_dynamics import Solver
        from qiskit_dynamics.models import HamiltonianModel, LindbladModel
    except ImportError as exc:
        raise ImportError(_DYNAMICS_MISSING) from exc
    if isinstance(solver_or_model, Solver):
        model = solver_or_model.model
        solver_channels = list(solver_or_model._hamiltonian_channels or [])  # no public accessor in 0.6
        solver_dt = solver_or_model._dt
    elif isinstance(solver_or_model, HamiltonianModel | LindbladModel):
        model, solver_channels, solver_dt = solver_or_model, [], None
    else:
        raise _bad("solver_or_model", type(solver_or_model).__name__,
                   "a qiskit_dynamics Solver, HamiltonianModel or LindbladModel")
    if not (isinstance(time_unit_s, int | float) and math.isfinite(time_unit_s) and 1e-15 <= time_unit_s <= 1.0):
        raise _bad("time_unit_s", time_unit_s, "[1e-15, 1] s (1e-9 for a model in rad/ns)")
    if dt_s is None:
        if solver_dt is None:
            raise _bad("dt_s", None, "the AWG sample time in s (the solver has no dt)")
        dt_s = float(solver_dt) * time_unit_s
    if isinstance(model, LindbladModel):
        if model.dissipator_operators is not None:
            raise ValueError("solver_or_model has dissipator_operators (time-dependent dissipators): "
                             "allowed static_dissipators only")
        static, ops, diss = model.static_hamiltonian, model.hamiltonian_operators, model.static_dissipators
    else:
        static, ops, diss = model.static_operator, model.operators, None
    dims_t = tuple(int(d) for d in dims)
    dimension = math.prod(dims_t)
    h_frame = _rotating_frame_diagonal(model, dimension)
    h0: ComplexArray = (np.zeros((dimension, dimension), dtype=np.complex128) if static is None
                        else _matrix("static_hamiltonian", static, dims_t))
    # qiskit-dynamics reports static_hamiltonian with the frame operator subtracted.
    h0 = (h0 + np.diag(h_frame)) / time_unit_s
    op_list = [] if ops is None else [_matrix(f"hamiltonian_operators[{k}]", o, dims_t) / time_unit_s
                                      for k, o in enumerate(ops)]
    c_list = [] if diss is None else [_matrix(f"static_dissipators[{k}]", c, dims_t) / math.sqrt(time_unit_s)
                                      for k, c in enumerate(diss)]
    names = tuple(mode_names) if mode_names is not None else tuple(f"q{i}" for i in range(len(dims_t)))
    frames = _frames_from_rotating_frame(h_frame / time_unit_s, dims_t, names, frame_hz, mode_frames_hz)

    used: dict[int, str] = {}

    def ref(name: str, r: object) -> int:
        if isinstance(r, str) and r.lower() in solver_channels:
            k = solver_channels.index(r.lower())
        elif isinstance(r, int | np.integer) and not isinstance(r, bool) and 0 <= int(r) < len(op_list):
            k = int(r)
        else:
            raise _bad(f"channels[{name!r}]", r, f"an index in [0, {len(op_list) - 1}] of hamiltonian_operators"
                       + (f" or a solver channel in {solver_channels}" if solver_channels else ""))
        if k in used:
            raise _bad(f"channels[{name!r}]", r, f"an operator not already used by {used[k]!r}")
        used[k] = name
        return k

    drives: dict[str, tuple[ComplexArray, float | None]] = {}
    reals: dict[str, ComplexArray] = {}
    if not isinstance(channels, Mapping):
        raise _bad("channels", channels, "a mapping channel name -> operator reference(s)")
    for name, spec in channels.items():
        kind = _channel(name, names)[0]
        if kind != "drive":
            reals[name] = op_list[ref(name, spec)]
            continue
        if not (isinstance(spec, tuple | list) and len(spec) in (2, 3)):
            raise _bad(f"channels[{name!r}]", spec, "(k_i, k_q[, frequency_hz]) or (k, None[, frequency_hz])")
        freq = spec[2] if len(spec) == 3 else None
        h_i = op_list[ref(name, spec[0])]
        _hermitian(f"hamiltonian_operators[{spec[0]!r}]", h_i)
        if spec[1] is None:
            drives[name] = (0.5 * h_i, freq)
        else:
            h_q = op_list[ref(name, spec[1])]
            _hermitian(f"hamiltonian_operators[{spec[1]!r}]", h_q)
            drives[name] = (0.5 * (h_i - 1j * h_q), freq)
    unused = [k for k in range(len(op_list)) if k not in used]
    if unused:
        raise _bad("channels", sorted(channels), f"a channel for every Hamiltonian operator; "
                   f"hamiltonian_operators{unused} are not mapped (their terms would be dropped)")
    return build_operator_model(
        dims=dims_t, h_static=h0, drives=drives, reals=reals, collapse=c_list, dt_s=dt_s,
        frame_hz=frame_hz, qubit_levels=qubit_levels, mode_names=names, mode_frames_hz=frames,
        max_abs=max_abs, source="qiskit-dynamics",
    )


def _rotating_frame_diagonal(model: Any, dimension: int) -> np.ndarray:
    """The Hermitian frame operator's diagonal (rad per time unit), zeros without a frame."""
    fo = model.rotating_frame.frame_operator
    if fo is None:
        return np.zeros(dimension)
    arr = np.asarray(fo, dtype=np.complex128)
    if arr.ndim == 2:
        off = arr - np.diag(np.diag(arr))
        if np.abs(off).max() > 1e-12 * max(float(np.abs(arr).max()), 1.0):
            raise ValueError("solver_or_model has a rotating frame that is not diagonal: allowed a diagonal "
                             "frame 2π·Σ_i (g_i − frame_hz)·n_i (one frame per mode)")
        arr = np.diag(arr)
    if arr.shape != (dimension,):
        raise _bad("rotating_frame", arr.shape, f"({dimension},) (the product of dims)")
    # qiskit-dynamics takes a real diagonal as H and an imaginary one as F = −iH.
    if np.abs(arr.imag).max() <= 1e-12 * max(float(np.abs(arr).max()), 1.0):
        return arr.real.copy()
    return (1j * arr).real.copy()


def _frames_from_rotating_frame(h_frame: np.ndarray, dims: tuple[int, ...], names: tuple[str, ...],
                                frame_hz: float, given: Sequence[float] | None) -> Sequence[float] | None:
    """Each mode's frame g_i from H_f = 2π·Σ (g_i − frame_hz)·n_i (rad/s), checked."""
    if not np.any(h_frame):
        return given
    frame = _frequency("frame_hz", frame_hz)
    numbers = np.indices(dims).reshape(len(dims), -1).astype(np.float64)
    if given is None:
        unit = [int(np.ravel_multi_index(tuple(1 if j == i else 0 for j in range(len(dims))), dims))
                for i in range(len(dims))]
        shifts = np.array([h_frame[u] - h_frame[0] for u in unit]) / (2 * math.pi)
        frames: Sequence[float] = [frame + float(s) for s in shifts]
    else:
        frames = list(given)
    expected = 2 * math.pi * ((np.asarray(frames, dtype=np.float64) - frame) @ numbers)
    err = np.abs(h_frame - expected).max()
    if err > 1e-9 * max(float(np.abs(h_frame).max()), 1.0):
        what = "mode_frames_hz" if given is not None else "one frame frequency per mode"
        raise ValueError(f"solver_or_model's rotating frame is not 2π·Σ_i (g_i − frame_hz)·n_i "
                         f"(max deviation {err:.3g} rad/s): allowed a frame matching {what}")
    return frames
