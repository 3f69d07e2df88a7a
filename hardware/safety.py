"""The hard safety envelope: limits per device, checked on the samples that will be played.

``SafetyEnvelope.check`` renders the program itself (through the shared renderer, on the
backend's grid) and measures amplitude, slew, durations, drive energy, frames, frequencies
and shots on the result; it trusts nothing the program's constructors validated, because
an object can be mutated or forged after construction. Any exception while checking is
itself a violation, so "could not check" never means "allowed". ``check_trace`` applies
the same sample limits to the trace an adapter says it will play, which the guard compares
against a fresh render of the program (``pulsecal.hardware.guard``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Capabilities, Violation
from .ir import (
    Frame,
    Program,
    ProgramTooLong,
    SetFrequency,
    ShiftFrequency,
    WaveformTrace,
    canonical_json,
    to_waveform_trace,
)


class SafetyViolation(RuntimeError):
    """Raised when a program or a job would break the envelope; lists every violation."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations) or "safety violation")


def _pos(name: str, v: object, *, integer: bool = False) -> None:
    ok = not isinstance(v, bool) and (
        (isinstance(v, int) and v > 0) if integer
        else (isinstance(v, int | float) and math.isfinite(v) and v > 0))
    if not ok:
        kind = "an integer > 0" if integer else "a finite number > 0"
        raise ValueError(f"SafetyLimits.{name}={v!r}: allowed {kind}")


@dataclass(frozen=True)
class SafetyLimits:
    """Per-device hard limits (u is the normalised drive, full scale |u| = 1).

    Attributes:
        max_amplitude: largest |u| of any sample.
        max_slew_per_sample: largest |u[k+1] − u[k]| anywhere in the trace, edges of pulses
            included (2.0 disables the limit).
        max_pulse_duration_s: longest single FramePlay, padding included.
        max_program_duration_s: longest program (all frames, up to the end of acquisition).
        max_drive_energy_s: largest Σ|u|²·dt over the program, per frame, in seconds.
        max_shots_per_job: most shots in one job.
        max_shots_per_day: most shots per UTC day (counted by the ledger, across sessions).
        allowed_frames: the frames a program may declare; name and port must match and the
            frequency must stay within ``max_frequency_offset_hz`` of the allowed frame's,
            through every frequency instruction.
        max_frequency_offset_hz: see ``allowed_frames``.
        max_cr_amplitude: largest |u| on a cross-resonance (``cr``) frame, also bounded by
            ``max_amplitude``: a CR tone drives a qubit far off its resonance, so it needs
            large amplitudes and a lab caps them below the single-qubit drive's.
        max_flux_amplitude: largest |x| on a flux frame (flux and coupler lines), in the
            line's full scale (the envs' flux offsets in Φ0 on a simulated device).
        max_flux_slew_per_sample: largest |x[k+1] − x[k]| on a flux frame, edges included
            (a flux step rings through the line's filters and can excite the qubit).
        max_flux_energy_s: largest Σx²·dt per flux frame, in seconds (a long, large flux
            pulse heats the line's attenuators).

    Drive frames are held to ``max_amplitude``, ``max_slew_per_sample`` and
    ``max_drive_energy_s``; cr frames to the same and to ``max_cr_amplitude``; flux frames
    to the flux limits only. A frame's kind is the allowed frame's, never the program's.
    """

    allowed_frames: tuple[Frame, ...]
    max_amplitude: float = 1.0
    max_slew_per_sample: float = 2.0
    max_pulse_duration_s: float = 1e-6
    max_program_duration_s: float = 200e-6
    max_drive_energy_s: float = 1e-6
    max_shots_per_job: int = 10_000
    max_shots_per_day: int = 10_000_000
    max_frequency_offset_hz: float = 50e6
    max_cr_amplitude: float = 0.5
    max_flux_amplitude: float = 0.5
    max_flux_slew_per_sample: float = 0.1
    max_flux_energy_s: float = 1e-6

    def __post_init__(self) -> None:
        frames = tuple(self.allowed_frames)
        if not frames or not all(isinstance(f, Frame) for f in frames):
            raise ValueError(f"SafetyLimits.allowed_frames={frames!r}: allowed a non-empty tuple of Frame")
        object.__setattr__(self, "allowed_frames", frames)
        if not (isinstance(self.max_amplitude, int | float) and 0 < self.max_amplitude <= 1):
            raise ValueError(f"SafetyLimits.max_amplitude={self.max_amplitude!r}: allowed (0, 1]")
        for name in ("max_cr_amplitude", "max_flux_amplitude"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int | float) and 0 < v <= 1):
                raise ValueError(f"SafetyLimits.{name}={v!r}: allowed (0, 1]")
        for name in ("max_slew_per_sample", "max_pulse_duration_s", "max_program_duration_s",
                     "max_drive_energy_s", "max_frequency_offset_hz", "max_flux_slew_per_sample",
                     "max_flux_energy_s"):
            _pos(name, getattr(self, name))
        _pos("max_shots_per_job", self.max_shots_per_job, integer=True)
        _pos("max_shots_per_day", self.max_shots_per_day, integer=True)

    def to_dict(self) -> dict[str, Any]:
        return {"allowed_frames": [f.to_dict() for f in self.allowed_frames],
                "max_amplitude": self.max_amplitude,
                "max_slew_per_sample": self.max_slew_per_sample,
                "max_pulse_duration_s": self.max_pulse_duration_s,
                "max_program_duration_s": self.max_program_duration_s,
                "max_drive_energy_s": self.max_drive_energy_s,
                "max_shots_per_job": self.max_shots_per_job,
                "max_shots_per_day": self.max_shots_per_day,
                "max_frequency_offset_hz": self.max_frequency_offset_hz,
                "max_cr_amplitude": self.max_cr_amplitude,
                "max_flux_amplitude": self.max_flux_amplitude,
                "max_flux_slew_per_sample": self.max_flux_slew_per_sample,
                "max_flux_energy_s": self.max_flux_energy_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SafetyLimits:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"SafetyLimits: unknown option(s) {sorted(unknown)}: allowed {sorted(known)}")
        args = dict(d)
        args["allowed_frames"] = tuple(Frame.from_dict(f) for f in d["allowed_frames"])
        return cls(**args)

    def content_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()


def _non_finite_parameter(program: Program) -> str:
    """Where the first non-finite number of ``program`` is ('' if none); walks the fields
    itself instead of trusting constructors (forged objects skip them)."""
    for f in program.frames:
        for name in ("frequency_hz", "phase"):
            if not math.isfinite(float(getattr(f, name))):
                return f"frame {getattr(f, 'name', '?')!r}.{name}={getattr(f, name)!r}"
    for i, ins in enumerate(program.instructions):
        objs: list[Any] = [ins]
        wf = getattr(ins, "waveform", None)
        if wf is not None:
            objs.append(wf)
        for obj in objs:
            for name in getattr(obj, "__dataclass_fields__", {}):
                v = getattr(obj, name)
                if name == "waveform" or isinstance(v, bool | str | tuple) or v is None:
                    continue
                if isinstance(v, np.ndarray):
                    if v.dtype.kind not in "biufc" or not np.all(np.isfinite(v)):
                        return f"instructions[{i}].{name}: non-finite or non-numeric samples"
                elif not math.isfinite(float(v)):
                    return f"instructions[{i}].{name}={v!r}"
    return ""


def _invalid_parameter(program: Program) -> str:
    """Why ``program`` could not be rebuilt from its canonical JSON ('' if it can): the
    constructors' own checks (a positive sigma_s, a known frame kind, ...) run on every field."""
    try:
        Program.from_json(program.to_json())
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return str(e)
    return ""


class SafetyEnvelope:
    """Checks programs and traces against ``limits`` on ``capabilities``' sample grid."""

    def __init__(self, limits: SafetyLimits, capabilities: Capabilities) -> None:
        if not isinstance(limits, SafetyLimits):
            raise TypeError(f"limits={type(limits).__name__}: allowed SafetyLimits")
        self.limits = limits
        self.capabilities = capabilities
        self._allowed = {f.name: f for f in limits.allowed_frames}
        # The renderer stops at the program-length limit, so a FrameDelay of 1e30 s costs nothing.
        self._dts = sorted(set(capabilities.sample_time_s.values()))

    # -- public -----------------------------------------------------------------------

    def check(self, program: Program, *, shots: int | None = None,
              shots_today: int = 0) -> list[Violation]:
        """All violations of ``program`` run for ``shots`` (default ``program.shots``) given
        ``shots_today`` already used today. Pure; never raises."""
        try:
            with np.errstate(all="ignore"):  # non-finite results are violations, not warnings
                return self._check(program, shots, shots_today)
        except Exception as e:  # a check that cannot finish must refuse, whatever went wrong
            return [Violation("checkable", f"{type(e).__name__}: {e}", "a program the envelope can check")]

    def enforce(self, program: Program, *, shots: int | None = None, shots_today: int = 0) -> None:
        """Raise ``SafetyViolation`` naming every broken limit and value."""
        v = self.check(program, shots=shots, shots_today=shots_today)
        if v:
            raise SafetyViolation(v)

    def check_trace(self, trace: WaveformTrace) -> list[Violation]:
        """Sample limits on a rendered trace (what an artifact says it will play)."""
        try:
            with np.errstate(all="ignore"):
                return self._check_trace(trace)
        except Exception as e:
            return [Violation("checkable", f"{type(e).__name__}: {e}", "a trace the envelope can check")]

    def check_shots(self, shots: object, shots_today: int = 0) -> list[Violation]:
        """The shot limits alone: ``shots`` per job, and ``shots_today + shots`` per day.
        The one part of ``check`` that depends on more than the program's content (the guard
        re-runs only this for a program whose content already passed, ``GuardedBackend``)."""
        lim = self.limits
        n = shots
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= lim.max_shots_per_job:
            return [Violation("max_shots_per_job", n, f"an integer in 1..{lim.max_shots_per_job}")]
        if shots_today + int(n) > lim.max_shots_per_day:
            return [Violation("max_shots_per_day", shots_today + int(n),
                              f"<= {lim.max_shots_per_day} shots per UTC day")]
        return []

    # -- internals --------------------------------------------------------------------

    def _check(self, program: Program, shots: int | None, shots_today: int) -> list[Violation]:
        lim = self.limits
        if not isinstance(program, Program):
            return [Violation("program_type", type(program).__name__, "a Program")]
        bad = _non_finite_parameter(program)
        if bad:
            # Journals and job keys hash the canonical JSON, which has no NaN/inf; and a
            # non-finite parameter can hide from the trace (a forged sigma_s = inf renders
            # as a flat pulse).
            return [Violation("finite_parameters", bad, "finite numbers only")]
        bad = _invalid_parameter(program)
        if bad:
            # A forged object skips its constructor's checks, and a pulse whose samples are
            # all zero (a Drag of amplitude 0 with sigma_s < 0) passes every sample limit;
            # what the backend and the journal read back is the program rebuilt from its JSON.
            return [Violation("valid_parameters", bad, "what the IR constructors accept")]
        out = self.check_shots(program.shots if shots is None else shots, shots_today)
        frames = tuple(program.frames)
        for f in frames:
            a = self._allowed.get(f.name) if isinstance(f, Frame) else None
            if a is None:
                out.append(Violation("allowed_frames", getattr(f, "name", f),
                                     f"one of {sorted(self._allowed)}"))
                continue
            if f.port != a.port:
                out.append(Violation("allowed_frames.port", f.port, repr(a.port), f"frame {f.name!r}"))
            if getattr(f, "kind", None) != a.kind:
                out.append(Violation("allowed_frames.kind", getattr(f, "kind", None), repr(a.kind),
                                     f"frame {f.name!r}"))
            self._freq(out, f.frequency_hz, a, f"frame {f.name!r}")
        if out:
            return out
        # Follow every frequency instruction: the renderer only sees offsets from the
        # declared frequency, the hardware sees the absolute carrier.
        cur = {f.name: float(f.frequency_hz) for f in frames}
        for i, ins in enumerate(program.instructions):
            if isinstance(ins, ShiftFrequency | SetFrequency):
                if ins.frame not in cur:
                    out.append(Violation("allowed_frames", ins.frame, f"one of {sorted(cur)}",
                                         f"instructions[{i}]"))
                    continue
                v = float(ins.frequency_hz)
                cur[ins.frame] = cur[ins.frame] + v if isinstance(ins, ShiftFrequency) else v
                self._freq(out, cur[ins.frame], self._allowed[ins.frame], f"instructions[{i}]")
        if out:
            return out
        dt_s = self.capabilities.dt_s_for(program)
        max_total = math.ceil(lim.max_program_duration_s / dt_s) + 1
        try:
            trace = to_waveform_trace(program, dt_s, granularity=self.capabilities.granularity,
                                      min_samples=self.capabilities.min_samples,
                                      max_total_samples=max_total)
        except ProgramTooLong as e:
            return [Violation("max_program_duration_s", str(e),
                              f"<= {lim.max_program_duration_s!r} s")]
        return self._check_trace(trace)

    def _freq(self, out: list[Violation], f_hz: float, allowed: Frame, where: str) -> None:
        off = abs(float(f_hz) - allowed.frequency_hz)
        if not off <= self.limits.max_frequency_offset_hz:  # NaN fails too
            out.append(Violation("max_frequency_offset_hz", float(f_hz),
                                 f"{allowed.frequency_hz!r} ± {self.limits.max_frequency_offset_hz!r} Hz",
                                 where))

    def _check_trace(self, trace: WaveformTrace) -> list[Violation]:
        lim = self.limits
        out: list[Violation] = []
        dt = float(trace.dt_s)
        if not (math.isfinite(dt) and dt > 0):
            return [Violation("dt_s", dt, "finite > 0 s")]
        if not any(abs(dt - d) <= 1e-12 * d for d in self._dts):
            out.append(Violation("sample_grid", dt, f"one of {self._dts} s"))
        duration = trace.n_samples * dt
        if not duration <= lim.max_program_duration_s * (1 + 1e-9):
            out.append(Violation("max_program_duration_s", duration, f"<= {lim.max_program_duration_s!r} s"))
        for span in trace.plays:
            d = (span.stop - span.start) * dt
            if not d <= lim.max_pulse_duration_s * (1 + 1e-9):
                out.append(Violation("max_pulse_duration_s", d, f"<= {lim.max_pulse_duration_s!r} s",
                                     f"instructions[{span.index}]"))
        for name, s in trace.samples.items():
            if name not in self._allowed:
                out.append(Violation("allowed_frames", name, f"one of {sorted(self._allowed)}"))
            s = np.asarray(s)
            if s.size == 0:
                continue
            a = self._allowed.get(name)
            kind = a.kind if a is not None else "drive"
            # Drive frames keep the wording refusals always had (journals record it).
            where = f"frame {name!r}" if kind == "drive" else f"{kind} frame {name!r}"
            if not np.all(np.isfinite(s)):
                out.append(Violation("finite_samples", int(np.sum(~np.isfinite(s))),
                                     "0 non-finite samples", where))
                continue
            if kind == "flux":
                out += self._flux_trace(s, dt, where)
                continue
            mag = np.abs(s)
            peak = float(mag.max())
            k = int(mag.argmax())
            if not peak <= lim.max_amplitude:
                out.append(Violation("max_amplitude", peak, f"<= {lim.max_amplitude!r}",
                                     f"{where} sample {k}"))
            if kind == "cr" and not peak <= lim.max_cr_amplitude:
                out.append(Violation("max_cr_amplitude", peak, f"<= {lim.max_cr_amplitude!r}",
                                     f"{where} sample {k}"))
            # Edges count: the trace starts and ends at zero output.
            slew = float(np.max(np.abs(np.diff(s, prepend=0, append=0))))
            if not slew <= lim.max_slew_per_sample:
                out.append(Violation("max_slew_per_sample", slew, f"<= {lim.max_slew_per_sample!r}", where))
            energy = float(np.sum(mag**2) * dt)
            if not energy <= lim.max_drive_energy_s:
                out.append(Violation("max_drive_energy_s", energy, f"<= {lim.max_drive_energy_s!r} s", where))
        return out

    def _flux_trace(self, s: np.ndarray, dt: float, where: str) -> list[Violation]:
        lim = self.limits
        out: list[Violation] = []
        imag = float(np.max(np.abs(s.imag)))
        if not imag == 0.0:
            out.append(Violation("flux_real_samples", imag, "0 (a flux line plays real samples)", where))
        x = s.real
        mag = np.abs(x)
        peak = float(mag.max())
        if not peak <= lim.max_flux_amplitude:
            out.append(Violation("max_flux_amplitude", peak, f"<= {lim.max_flux_amplitude!r}",
                                 f"{where} sample {int(mag.argmax())}"))
        # Edges count: the line rests at zero offset before and after the program.
        steps = np.abs(np.diff(x, prepend=0, append=0))
        slew = float(steps.max())
        if not slew <= lim.max_flux_slew_per_sample:
            out.append(Violation("max_flux_slew_per_sample", slew, f"<= {lim.max_flux_slew_per_sample!r}",
                                 f"{where} sample {int(steps.argmax())}"))
        energy = float(np.sum(x**2) * dt)
        if not energy <= lim.max_flux_energy_s:
            out.append(Violation("max_flux_energy_s", energy, f"<= {lim.max_flux_energy_s!r} s", where))
        return out
