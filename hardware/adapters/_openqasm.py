"""Offline checks of OpenQASM 3 + OpenPulse programs for Braket-style pulse devices.

Amazon Braket has no local pulse simulator, so a program is trusted only after three
independent looks, all offline and none using the code that wrote it:

1. ``parse_roundtrip``: the ``openpulse`` reference parser parses the text, and parse →
   print → parse gives the same AST (source positions ignored).
2. ``semantic_check``: our own pass over the AST against stored device properties — frames
   exist and point the right way, waveform calls have valid arguments, amplitudes, lengths,
   grid and frequency offsets are within the device's validation parameters. Every problem
   is a ``Violation`` naming the line, the value and what is allowed.
3. ``lift``: walks the AST into a pulsecal ``Program`` whose waveforms are rendered with
   Braket's own definitions (``braket_gaussian`` & co. in ``_braket_device``: samples at
   t_k = k·dt, centre at length/2, as ``braket.pulse.waveforms.*.sample``), so the shared
   renderer (``ir.to_waveform_trace``) gives the time trace the device would play, ready
   for our simulator.

The device's stored properties (``BraketDeviceProperties``) and Braket's waveform
definitions live in ``_braket_device``; this module holds the three checks.

Needs only ``openpulse`` (from the ``braket`` extra), not the Braket SDK.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np

from .. import ir
from ..backend import Violation
from ._braket_device import (
    BraketDeviceProperties,
    braket_constant,
    braket_drag_gaussian,
    braket_gaussian,
)

_EXTRA = "pip install 'pulsecal[braket]'"
# Durations are written as decimal ns; this much of a sample may be float noise.
_GRID_TOL = 1e-6
_AMP_SLACK = 1e-12
_TIME_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_FRAME_FUNCTIONS = ("shift_phase", "set_phase", "shift_frequency", "set_frequency")


def import_openpulse() -> Any:
    try:
        import openpulse
        import openpulse.printer
    except ImportError as e:  # optional extra; say which one
        raise ImportError(f"OpenPulse programs need the openpulse parser: {_EXTRA}") from e
    return openpulse


# -- parsing ----------------------------------------------------------------------------------


def _strip(node: Any) -> Any:
    """An AST as nested tuples without source spans, for structural comparison."""
    if is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__, *((f.name, _strip(getattr(node, f.name)))
                                       for f in fields(node) if f.name != "span"))
    if isinstance(node, list | tuple):
        return tuple(_strip(x) for x in node)
    if hasattr(node, "name") and hasattr(node, "value") and not isinstance(node, str):
        return (type(node).__name__, node.name)  # enums
    return node


def parse_roundtrip(text: str) -> Any:
    """Parse ``text`` with the openpulse reference parser and check that printing and
    re-parsing gives the same AST; returns the AST. Raises ValueError naming the problem."""
    openpulse = import_openpulse()
    try:
        tree = openpulse.parse(text)
    except Exception as e:  # the parser raises several types; all mean "not a program"
        raise ValueError(f"OpenQASM/OpenPulse parse error: {type(e).__name__}: {e}") from None
    printed = openpulse.printer.dumps(tree)
    try:
        again = openpulse.parse(printed)
    except Exception as e:
        raise ValueError(f"printed program does not re-parse: {type(e).__name__}: {e}") from None
    if _strip(tree) != _strip(again):
        raise ValueError("parse → print → parse changed the AST")
    return tree


# -- literal evaluation -----------------------------------------------------------------------


class _Bad(ValueError):
    """An expression outside the literal subset the checker evaluates."""


def _line(node: Any) -> str:
    span = getattr(node, "span", None)
    return f"line {span.start_line}" if span is not None else ""


def _value(node: Any, ast: Any) -> Any:
    """Value of a literal expression: numbers, ±, +/−/* of literals, durations (s), pi."""
    if isinstance(node, ast.BooleanLiteral):
        return bool(node.value)
    if isinstance(node, ast.IntegerLiteral | ast.FloatLiteral):
        return float(node.value)
    if isinstance(node, ast.ImaginaryLiteral):
        return 1j * float(node.value)
    if isinstance(node, ast.DurationLiteral):
        unit = node.unit.name
        if unit not in _TIME_UNIT_S:
            raise _Bad(f"duration unit {unit!r}: allowed {sorted(_TIME_UNIT_S)} (not dt)")
        return _Duration(float(node.value) * _TIME_UNIT_S[unit])
    if isinstance(node, ast.Identifier) and node.name in ("pi", "π"):
        return math.pi
    if isinstance(node, ast.UnaryExpression) and node.op.name in ("-", "+"):
        v = _value(node.expression, ast)
        if isinstance(v, bool):
            raise _Bad("sign applied to a bool")
        if node.op.name == "+":
            return v
        return _Duration(-v) if isinstance(v, _Duration) else -v
    if isinstance(node, ast.BinaryExpression) and node.op.name in ("+", "-", "*"):
        a, b = _value(node.lhs, ast), _value(node.rhs, ast)
        if isinstance(a, bool | _Duration) or isinstance(b, bool | _Duration):
            raise _Bad("arithmetic on durations or bools")
        return a + b if node.op.name == "+" else a - b if node.op.name == "-" else a * b
    raise _Bad(f"{type(node).__name__} is not a literal expression")


class _Duration(float):
    """A time in seconds that came from a duration literal."""


# -- semantic pass and lifting share one walk ------------------------------------------------


@dataclass
class _Event:
    kind: str  # play, shift_phase, set_phase, shift_frequency, set_frequency, delay, barrier, capture
    line: str
    frames: tuple[str, ...]
    value: Any = None


@dataclass
class _Walk:
    violations: list[Violation]
    events: list[_Event]
    waveforms: dict[str, np.ndarray]


def _walk(tree: Any, props: BraketDeviceProperties) -> _Walk:
    openpulse = import_openpulse()
    ast = openpulse.ast
    out: list[Violation] = []
    events: list[_Event] = []
    waveforms: dict[str, np.ndarray] = {}
    bits: dict[str, int] = {}
    freq: dict[str, float] = {n: f.frequency_hz for n, f in props.frames.items()}
    vmax = props.max_amplitude
    tol_freq = props.permitted_frequency_difference_hz

    def bad(limit: str, value: Any, allowed: str, node: Any) -> None:
        out.append(Violation(limit, value, allowed, _line(node)))

    def frame_of(node: Any, direction: str, what: str) -> str | None:
        if not isinstance(node, ast.Identifier):
            bad(f"{what}.frame", type(node).__name__, "a predefined frame name", node)
            return None
        f = props.frames.get(node.name)
        if f is None:
            bad(f"{what}.frame", node.name, f"a frame of the device {sorted(props.frames)}", node)
            return None
        if f.direction != direction:
            bad(f"{what}.frame", node.name, f"a frame on a {direction} port (its port "
                f"{f.port!r} is {f.direction})", node)
            return None
        return f.name

    def samples_ok(name: str, w: np.ndarray, dt_s: float, node: Any) -> None:
        n = w.size
        g = props.granularity
        if not np.all(np.isfinite(w)):
            bad(f"waveform {name!r}.samples", "NaN/inf", "finite values", node)
            return
        peak = float(np.max(np.abs(w))) if n else 0.0
        if peak > vmax + _AMP_SLACK:
            bad(f"waveform {name!r}.amplitude", peak, f"|u| <= MAX_AMPLITUDE={vmax}", node)
        lo = math.ceil(props.min_pulse_length_s / dt_s - _GRID_TOL)
        hi = math.floor(props.max_pulse_length_s / dt_s + _GRID_TOL)
        if not lo <= n <= hi:
            bad(f"waveform {name!r}.length", n, f"{lo}..{hi} samples of {dt_s} s "
                f"(MIN/MAX_PULSE_LENGTH)", node)
        if n % g:
            bad(f"waveform {name!r}.length", n, f"a multiple of {g} samples (granularity)", node)

    def grid(name: str, length_s: float, dt_s: float, node: Any) -> int | None:
        x = length_s / dt_s
        if not (math.isfinite(x) and x > 0 and abs(x - round(x)) <= _GRID_TOL * max(1.0, x)):
            bad(name, length_s, f"a whole number > 0 of samples of {dt_s} s", node)
            return None
        return round(x)

    # Waveforms are rendered lazily per frame grid; every device port here shares one dt,
    # but keep the lookup honest.
    dts = {f.dt_s for f in props.frames.values()}
    if len(dts) != 1:
        out.append(Violation("ports.dt", sorted(dts), "one sample time for all ports"))
        return _Walk(out, events, waveforms)
    dt = dts.pop()

    def declare_waveform(stmt: Any) -> None:
        name = stmt.identifier.name
        init = stmt.init_expression
        if name in waveforms or name in props.frames:
            bad("waveform.name", name, "a name not already declared", stmt)
            return
        try:
            if isinstance(init, ast.ArrayLiteral):
                w = np.array([complex(_value(v, ast)) for v in init.values], dtype=np.complex128)
            elif isinstance(init, ast.FunctionCall):
                fname = init.name.name
                if fname not in props.templates:
                    bad("waveform.template", fname, f"one of {sorted(props.templates)}", stmt)
                    return
                argnames = props.templates[fname]
                args = [_value(a, ast) for a in init.arguments]
                w_or_none = _template(fname, argnames, args, stmt)
                if w_or_none is None:
                    return
                w = w_or_none
            else:
                bad("waveform.init", type(init).__name__, "an array literal or a template call", stmt)
                return
        except _Bad as e:
            bad(f"waveform {name!r}", str(e), "literal arguments", stmt)
            return
        samples_ok(name, w, dt, stmt)
        waveforms[name] = w

    def _template(fname: str, argnames: tuple[str, ...], args: list[Any], stmt: Any) -> np.ndarray | None:
        required = {"constant": 2, "gaussian": 2, "drag_gaussian": 3, "erf_square": 3}.get(fname, len(argnames))
        if not required <= len(args) <= len(argnames):
            bad(f"{fname}.arguments", len(args), f"{required}..{len(argnames)} arguments "
                f"{list(argnames)}", stmt)
            return None
        a = dict(zip(argnames, args, strict=False))
        for k in ("length", "sigma", "width"):
            if k in a and not isinstance(a[k], _Duration):
                bad(f"{fname}.{k}", a[k], "a duration literal (e.g. 20.0ns)", stmt)
                return None
        length = float(a["length"])
        if grid(f"{fname}.length", length, dt, stmt) is None:
            return None
        if "sigma" in a and not (math.isfinite(a["sigma"]) and a["sigma"] > 0):
            bad(f"{fname}.sigma", float(a["sigma"]), "> 0 s", stmt)
            return None
        for k in ("amplitude", "beta"):
            if k in a and (isinstance(a[k], bool | complex | _Duration) or not math.isfinite(a[k])):
                bad(f"{fname}.{k}", a[k], "a finite real number", stmt)
                return None
        if "zero_at_edges" in a and not isinstance(a["zero_at_edges"], bool):
            bad(f"{fname}.zero_at_edges", a["zero_at_edges"], "true or false", stmt)
            return None
        amp = float(a.get("amplitude", 1.0))
        zae = bool(a.get("zero_at_edges", False))
        if fname == "constant":
            iq = a["iq"]
            if isinstance(iq, bool | _Duration):
                bad("constant.iq", iq, "a complex number", stmt)
                return None
            return braket_constant(length, complex(iq), dt)
        if fname == "gaussian":
            return braket_gaussian(length, float(a["sigma"]), amp, zae, dt)
        if fname == "drag_gaussian":
            return braket_drag_gaussian(length, float(a["sigma"]), float(a["beta"]), amp, zae, dt)
        bad("waveform.template", fname, "constant, gaussian or drag_gaussian (no renderer "
            "for this template)", stmt)
        return None

    def call(stmt: Any, fc: Any) -> None:
        fname = fc.name.name
        if fname not in props.functions:
            bad("function", fname, f"one of {sorted(props.functions)}", stmt)
            return
        if fname == "play":
            if len(fc.arguments) != 2:
                bad("play.arguments", len(fc.arguments), "2 (frame, waveform)", stmt)
                return
            fr = frame_of(fc.arguments[0], "tx", "play")
            wf = fc.arguments[1]
            if not isinstance(wf, ast.Identifier) or wf.name not in waveforms:
                bad("play.waveform", getattr(wf, "name", type(wf).__name__),
                    f"a waveform declared earlier {sorted(waveforms)}", stmt)
                return
            if fr is not None:
                events.append(_Event("play", _line(stmt), (fr,), wf.name))
            return
        if fname in _FRAME_FUNCTIONS:
            if len(fc.arguments) != 2:
                bad(f"{fname}.arguments", len(fc.arguments), "2 (frame, value)", stmt)
                return
            fr = frame_of(fc.arguments[0], "tx", fname)
            try:
                v = _value(fc.arguments[1], ast)
            except _Bad as e:
                bad(f"{fname}.value", str(e), "a literal real number", stmt)
                return
            if isinstance(v, bool | complex | _Duration) or not math.isfinite(v):
                bad(f"{fname}.value", v, "a finite real number", stmt)
                return
            if fr is None:
                return
            if fname in ("shift_frequency", "set_frequency"):
                new = freq[fr] + v if fname == "shift_frequency" else v
                centre = props.frames[fr].center_frequency_hz
                if abs(new - centre) > tol_freq:
                    bad(f"{fname}.frequency", new, f"within {tol_freq} Hz of {fr}'s centre "
                        f"{centre} Hz (PERMITTED_FREQUENCY_DIFFERENCE)", stmt)
                    return
                freq[fr] = new
            events.append(_Event(fname, _line(stmt), (fr,), float(v)))
            return
        bad("statement", f"{fname}(...) as a statement", "play or a frame function", stmt)

    def frames_list(nodes: Any, what: str, stmt: Any) -> tuple[str, ...] | None:
        names = []
        for n in nodes:
            if not isinstance(n, ast.Identifier) or n.name not in props.frames:
                bad(f"{what}.frame", getattr(n, "name", type(n).__name__),
                    f"a frame of the device {sorted(props.frames)}", stmt)
                return None
            names.append(n.name)
        return tuple(names)

    def cal_statement(stmt: Any) -> None:
        if isinstance(stmt, ast.ClassicalDeclaration):
            if isinstance(stmt.type, ast.WaveformType):
                declare_waveform(stmt)
            elif isinstance(stmt.type, ast.BitType) and stmt.init_expression is None:
                size = 1 if stmt.type.size is None else int(_value(stmt.type.size, ast))
                bits[stmt.identifier.name] = size
            else:
                bad("declaration", type(stmt.type).__name__, "waveform or bit[n] declarations", stmt)
        elif isinstance(stmt, ast.ExpressionStatement) and isinstance(stmt.expression, ast.FunctionCall):
            call(stmt, stmt.expression)
        elif isinstance(stmt, ast.DelayInstruction):
            try:
                d = _value(stmt.duration, ast)
            except _Bad as e:
                bad("delay.duration", str(e), "a duration literal", stmt)
                return
            if not isinstance(d, _Duration) or d < 0:
                bad("delay.duration", d, "a duration literal >= 0", stmt)
                return
            names = frames_list(stmt.qubits, "delay", stmt)
            if names is None:
                return
            if not names:
                bad("delay.frames", "[]", "at least one frame", stmt)
                return
            if float(d) > 0:
                n = grid("delay.duration", float(d), dt, stmt)
                if n is None:
                    return
                if n % props.granularity:
                    bad("delay.duration", n, f"a multiple of {props.granularity} samples "
                        "(granularity)", stmt)
                    return
            events.append(_Event("delay", _line(stmt), names, float(d)))
        elif isinstance(stmt, ast.QuantumBarrier):
            names = frames_list(stmt.qubits, "barrier", stmt)
            if names is not None:
                events.append(_Event("barrier", _line(stmt), names))
        elif isinstance(stmt, ast.ClassicalAssignment) and isinstance(stmt.rvalue, ast.FunctionCall):
            fc = stmt.rvalue
            if fc.name.name != "capture_v0" or "capture_v0" not in props.functions:
                bad("assignment", fc.name.name, "capture_v0(frame) into a bit", stmt)
                return
            if len(fc.arguments) != 1:
                bad("capture_v0.arguments", len(fc.arguments), "1 (frame)", stmt)
                return
            fr = frame_of(fc.arguments[0], "rx", "capture_v0")
            lv = stmt.lvalue
            reg = lv.name.name if isinstance(lv, ast.IndexedIdentifier) else getattr(lv, "name", None)
            if reg not in bits:
                bad("capture_v0.target", reg, f"a declared bit register {sorted(bits)}", stmt)
                return
            if fr is not None:
                events.append(_Event("capture", _line(stmt), (fr,)))
        else:
            bad("statement", type(stmt).__name__, "waveform/bit declarations, play, frame "
                "functions, delay, barrier, capture_v0", stmt)

    saw_cal = False
    for stmt in tree.statements:
        if isinstance(stmt, ast.CalibrationStatement):
            saw_cal = True
            for s in stmt.body:
                cal_statement(s)
        elif isinstance(stmt, ast.CalibrationGrammarDeclaration):
            if stmt.name != "openpulse":
                bad("defcalgrammar", stmt.name, '"openpulse"', stmt)
        elif isinstance(stmt, ast.ClassicalDeclaration) and isinstance(stmt.type, ast.BitType):
            bits[stmt.identifier.name] = 1 if stmt.type.size is None else int(_value(stmt.type.size, ast))
        else:
            bad("statement", type(stmt).__name__, "cal blocks (this device takes no gates or "
                "defcal; pulse elements live in cal blocks)", stmt)
    if tree.version not in ("3", "3.0"):
        out.append(Violation("OPENQASM", tree.version, "3.0"))
    if not saw_cal:
        out.append(Violation("cal", "none", "at least one cal block"))
    if not any(e.kind == "capture" for e in events):
        out.append(Violation("capture_v0", "none", "one capture_v0 on a qubit's rx frame"))
    return _Walk(out, events, waveforms)


def semantic_check(tree_or_text: Any, props: BraketDeviceProperties) -> list[Violation]:
    """Every problem of a parsed program (or program text) against ``props``; pure."""
    tree = parse_roundtrip(tree_or_text) if isinstance(tree_or_text, str) else tree_or_text
    return _walk(tree, props).violations


def lift(tree_or_text: Any, props: BraketDeviceProperties, *,
         frames: tuple[ir.Frame, ...] | None = None, acquire_duration_s: float = 0.0,
         shots: int = 1) -> ir.Program:
    """The program as a pulsecal ``Program`` whose waveforms are Braket's renderings.

    ``frames`` are the IR frames to express the result in (name and port must be the
    device's; ``frequency_hz`` is the reference the trace rotates against, ``phase`` is
    ignored: the device frame's phase is where it starts). Default: the drive frames the
    program touches, at the device's frequencies. Capture frames become one ``Acquire`` of
    their qubit; they drop out of barriers. Raises ValueError if the semantic pass fails.
    """
    tree = parse_roundtrip(tree_or_text) if isinstance(tree_or_text, str) else tree_or_text
    w = _walk(tree, props)
    if w.violations:
        raise ValueError("program fails the semantic pass: " + "; ".join(map(str, w.violations)))
    exposed = (props.drive_port_type, props.flux_port_type)
    used = [n for e in w.events if e.kind != "capture" for n in e.frames
            if props.frames[n].direction == "tx" and props.frames[n].port_type in exposed]

    def device_frame(n: str, port: str, reference_hz: float) -> ir.Frame:
        if props.frames[n].port_type == props.flux_port_type:
            return ir.Frame(n, port, 0.0, 0.0, kind="flux")
        return ir.Frame(n, port, reference_hz, props.frames[n].phase)

    if frames is None:
        names = list(dict.fromkeys(used))
        ir_frames = tuple(device_frame(n, props.frames[n].port, props.frames[n].frequency_hz)
                          for n in names)
    else:
        for f in frames:
            dev = props.frames.get(f.name)
            if dev is None or dev.port != f.port:
                raise ValueError(f"frame {f.name!r} on port {f.port!r}: allowed a device drive frame")
        ir_frames = tuple(device_frame(f.name, f.port, f.frequency_hz) if f.kind != "cr"
                          else ir.Frame(f.name, f.port, f.frequency_hz, props.frames[f.name].phase, "cr")
                          for f in frames)
    known = {f.name for f in ir_frames}
    missing = sorted(set(used) - known)
    if missing:
        raise ValueError(f"program plays on frames {missing}: allowed {sorted(known)}")
    dt = next(iter(props.frames.values())).dt_s
    ins: list[ir.Instruction] = []
    flux = {f.name for f in ir_frames if f.kind == "flux"}
    # A flux frame's carrier and phase, followed through the text: the IR's flux frames are
    # baseband, so a play there is faithful only at 0 Hz and phase 0 (mod 2π).
    carrier = {n: [props.frames[n].frequency_hz, props.frames[n].phase] for n in flux}
    for f in ir_frames:  # the device frame starts at its own frequency, whatever the reference
        if f.name not in flux and props.frames[f.name].frequency_hz != f.frequency_hz:
            ins.append(ir.SetFrequency(f.name, props.frames[f.name].frequency_hz))
    acquired: list[int] = []
    for e in w.events:
        if e.frames and e.frames[0] in flux and e.kind in ("shift_phase", "set_phase",
                                                            "shift_frequency", "set_frequency"):
            c = carrier[e.frames[0]]
            i = 0 if e.kind.endswith("frequency") else 1
            c[i] = c[i] + e.value if e.kind.startswith("shift") else e.value
            continue
        if e.kind == "play":
            if e.frames[0] in flux:
                f_hz, ph = carrier[e.frames[0]]
                if f_hz != 0.0 or math.remainder(ph, 2 * math.pi) != 0.0:
                    raise ValueError(f"flux frame {e.frames[0]!r} plays at {f_hz!r} Hz, phase {ph!r}: "
                                     "allowed 0 Hz and phase 0 (baseband flux)")
            ins.append(ir.FramePlay(e.frames[0], ir.Sampled(w.waveforms[e.value], dt)))
        elif e.kind == "shift_phase":
            ins.append(ir.ShiftPhase(e.frames[0], e.value))
        elif e.kind == "set_phase":
            ins.append(ir.SetPhase(e.frames[0], e.value))
        elif e.kind == "shift_frequency":
            ins.append(ir.ShiftFrequency(e.frames[0], e.value))
        elif e.kind == "set_frequency":
            ins.append(ir.SetFrequency(e.frames[0], e.value))
        elif e.kind in ("delay", "barrier"):
            mine = tuple(n for n in e.frames if n in known)
            if mine:  # an empty tuple would mean "all frames" to the IR
                ins.append(ir.FrameDelay(e.value, mine) if e.kind == "delay" else ir.FrameBarrier(mine))
        elif e.kind == "capture":
            qs = props.frames[e.frames[0]].qubits
            acquired.append(qs[0] if qs else 0)
    if not acquired or len(set(acquired)) != len(acquired):
        raise ValueError(f"program captures qubits {acquired}: allowed one capture_v0 per measured qubit")
    ins += [ir.Acquire(q, acquire_duration_s) for q in acquired]
    return ir.Program(tuple(ins), ir_frames, shots, tuple(acquired))


def iter_waveform_samples(tree_or_text: Any, props: BraketDeviceProperties) -> Iterator[tuple[str, np.ndarray]]:
    """(name, Braket-rendered samples) for every declared waveform (for tests and plots)."""
    tree = parse_roundtrip(tree_or_text) if isinstance(tree_or_text, str) else tree_or_text
    yield from _walk(tree, props).waveforms.items()
