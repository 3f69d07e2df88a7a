"""Two-qubit calibration sessions: a CZ (``pulsecal/CZCalibration-v0``) calibrated through a
multi-qubit backend, journaled, charged, safety-checked and resumable like a single-qubit
session (``run_session``).

What is the same: the session folder (``session.json``, ``journal.jsonl``, ``ledger.json``,
``report.json``/``report.md``), the session lock, the write-ahead job records and the
exactly-once keys of ``BackendDevice``, the orphan accounting across kills, the
``ReplayDevice`` that answers finished device calls from the journal, the stops and their
terminal rule, and the policy protocol. What differs:

- the env is the session form of the two-qubit env (``pulsecal.envs.two_qubit_session``):
  it runs its probes on the device the session hands it;
- the device is a ``BackendDevice`` with a channel map (``session_channels``): every envs
  channel the env plays (``drive:q0``, ``drive:q1``, ``flux:q1``, ``drive:q0@q1``) is a
  frame of the backend named by ``channel_frame_name`` (``q0_drive``, ``q1_flux``,
  ``q0_q1_cr``), and the counts are over the bitstrings of the measured qubits;
- the default envelope (``two_qubit_limits``) allows exactly those frames and applies the
  per-kind limits of ``SafetyLimits``: CR amplitude, flux amplitude, slew and energy;
- the report is the two-qubit one (``write_two_qubit_report``): the gate's four parameters,
  the measured error estimate per step, and on a simulated backend the truth (fidelity
  with virtual Z, leakage, conditional phase) of the start and the final gate.

The settings are ``ReplaySettings`` with ``env_id`` a two-qubit id and ``initial_params`` the
gate's four parameters; ``qubit`` is not used. ``verification`` (``rb2q.RB2QSettings``
fields) ends the session with a verdict from interleaved two-qubit RB run through the
journaled device, for a session env that has ``verify`` (the CZ and ECR session envs).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.envs.verification import Verdict

from ..adapters.simulated import channel_frame_name
from ..backend import Backend, BackendError, Capabilities
from ..device import RetryPolicy
from ..ir import Frame
from ..ledger import DeviceDayLedger
from ..policy import ActionOutOfRange, Policy
from ..safety import SafetyLimits, SafetyViolation
from ..session_lock import holds_session_lock
from .episode import JournaledEpisode
from .loop import (
    ReplayResult,
    StepRecord,
    check_replayed_stop,
    journal_session_end,
    open_records,
    outcome_fields,
    settled_stop,
    start_session,
)
from .settings import (
    ReplaySettings,
    check_settings,
    is_two_qubit,
    session_env_class,
)
from .stops import RecordedStop, SessionStop

TWO_QUBIT_REPORT_FORMAT = "pulsecal.replay-report-2q/1"
_FRAME = re.compile(r"^(q\d+|c\d+)_(drive|flux)$|^(q\d+)_(q\d+)_cr$")


def session_channels(caps: Capabilities) -> dict[str, Frame]:
    """{envs channel: Frame} of every backend frame named as ``channel_frame_name`` names
    them (``q0_drive`` -> ``drive:q0``, ``q0_q1_cr`` -> ``drive:q0@q1``, ``q1_flux`` ->
    ``flux:q1``, ``c01_flux`` -> ``coupler:c01``); other frames are left out."""
    out: dict[str, Frame] = {}
    for f in caps.frames:
        m = _FRAME.match(f.name)
        if m is None:
            continue
        if m.group(3):
            channel = f"drive:{m.group(3)}@{m.group(4)}"
        elif m.group(2) == "drive":
            channel = f"drive:{m.group(1)}"
        else:
            channel = f"{'coupler' if m.group(1).startswith('c') else 'flux'}:{m.group(1)}"
        if channel_frame_name(channel) == f.name:
            out[channel] = f
    return out


def two_qubit_limits(backend: Backend, **changes: Any) -> SafetyLimits:
    """A conservative envelope for a two-qubit session on ``backend``: the frames of
    ``session_channels`` only, the per-kind defaults of ``SafetyLimits`` for CR and flux
    frames, the single-qubit session's pulse, program, energy and shot limits; callers and
    configs override any field."""
    frames = tuple(session_channels(backend.capabilities()).values())
    args: dict[str, Any] = {"allowed_frames": frames, "max_amplitude": 1.0, "max_pulse_duration_s": 1e-6,
                            "max_program_duration_s": 20e-6, "max_drive_energy_s": 2e-6,
                            "max_shots_per_job": 10_000, "max_shots_per_day": 10_000_000}
    args.update(changes)
    return SafetyLimits(**args)


@holds_session_lock  # one process per folder for the whole session (SessionBusy otherwise)
def run_two_qubit_session(backend: Backend, policy: Policy, folder: str | Path, settings: ReplaySettings, *,
                          limits: SafetyLimits | None = None, retry: RetryPolicy | None = None,
                          clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                          fsync: bool = True, truth: Callable[[Sequence[float]], Mapping[str, float]] | None = None,
                          backend_info: Mapping[str, Any] | None = None,
                          device_ledger: DeviceDayLedger | None = None) -> ReplayResult:
    """Run (or resume) a two-qubit calibration session of ``policy`` on ``backend`` in
    ``folder`` (module docstring; arguments as ``run_session``'s).

    ``truth``: for a simulated backend, the true metrics of the gate parameters (report
    only). ``ReplayResult.final_params`` is None: the gate's parameters are
    ``steps[-1].params`` (``CalibrationState.parameter_names`` order).
    """
    folder = Path(folder)
    if not is_two_qubit(settings.env_id):
        raise ValueError(f"ReplaySettings.env_id={settings.env_id!r}: allowed a two-qubit env id "
                         "(run_session runs the single-qubit ones)")
    channels = session_channels(backend.capabilities())
    if not channels:
        raise ValueError(f"backend {getattr(backend, 'name', type(backend).__name__)!r}: no frame named "
                         "q<n>_drive, q<n>_flux or q<c>_q<t>_cr: allowed a multi-qubit backend")
    limits = limits if limits is not None else two_qubit_limits(backend)
    env = session_env_class(settings.env_id)(**{k: v for k, v in settings.env.items() if k != "report_truth"})
    verify = getattr(env.unwrapped, "verify", None)
    if settings.verification is not None and not callable(verify):
        raise ValueError(f"ReplaySettings.verification={settings.verification!r}: allowed None for "
                         f"{settings.env_id} (its session env runs no verdict yet)")
    known = check_settings(folder, settings)

    folder.mkdir(parents=True, exist_ok=True)
    records = open_records(folder, settings, known, clock=clock, fsync=fsync, device_ledger=device_ledger)
    journal, ledger, orphans = records.journal, records.ledger, records.orphans
    resumed, proc = records.resumed, records.process
    sid = settings.session_id
    live = start_session(backend, policy, records, settings, limits, retry=retry, clock=clock, sleep=sleep,
                         device_ledger=device_ledger, backend_info=backend_info,
                         device_args={"frame": next(iter(channels.values())), "channels": channels},
                         channels=sorted(channels))
    state, device, recorded_stop = live.state, live.device, live.recorded_stop
    policy_info, info_backend = live.policy_info, live.backend_info

    episode = JournaledEpisode(env, policy, journal, state, sid)
    stop: SessionStop | None = None
    verdict: Verdict | None = None
    try:
        episode.reset(settings.seed, device, np.asarray(settings.initial_params))
        episode.run(settings.max_steps)
        if settings.verification is not None and callable(verify):
            # Inside the try: its jobs go through the guard, the ledger and the journal like
            # the calibration's, so a refusal stops the session and a resume replays them.
            verdict = verify(device, settings.verification)
    except (SafetyViolation, ActionOutOfRange, BackendError, RecordedStop) as err:
        stop = settled_stop(err, episode.t, recorded_stop)
    check_replayed_stop(journal, stop, recorded_stop)
    steps, calibration, terminated = episode.steps, episode.calibration, episode.terminated

    names = calibration.parameter_names
    start = steps[0].params if steps else tuple(settings.initial_params)
    final = steps[-1].params if steps else tuple(settings.initial_params)
    extra = outcome_fields(sid, resumed, device, ledger, orphans.shots, steps, terminated, stop)
    if settings.verification is not None:
        # None: the session stopped before its verification ended.
        extra["verdict"] = None if verdict is None else verdict.to_dict()
    truth_start = dict(truth(start)) if truth is not None else None
    truth_final = dict(truth(final)) if truth is not None and steps else None
    report = write_two_qubit_report(folder, steps=steps, settings=settings, parameter_names=names,
                                    gate=calibration.gate.name, policy=policy_info, backend=info_backend,
                                    channels=sorted(channels), truth_start=truth_start, truth_final=truth_final,
                                    extra=extra)
    journal_session_end(journal, state, sid, stop, recorded_stop, list(final) if steps else None,
                        steps[-1].infidelity_estimate if steps else None, ledger, orphans.shots, proc)
    return ReplayResult(folder, None, tuple(steps), resumed, device.replayed_steps, ledger.used_shots,
                        orphans.shots, report, stop, verdict)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def write_two_qubit_report(folder: Path, *, steps: Sequence[StepRecord], settings: ReplaySettings,
                           parameter_names: Sequence[str], gate: str, policy: Mapping[str, Any],
                           backend: Mapping[str, Any], channels: Sequence[str],
                           truth_start: Mapping[str, float] | None, truth_final: Mapping[str, float] | None,
                           extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write report.json and report.md of a two-qubit session; returns the report dict.

    Everything in it comes from the session's measurements except ``truth_start`` and
    ``truth_final`` (a simulated backend's hidden device only). A session stopped at its
    first measurement reports its start parameters and no estimate."""
    start = steps[0].params if steps else tuple(settings.initial_params)
    final = steps[-1].params if steps else tuple(settings.initial_params)
    est0 = steps[0].infidelity_estimate if steps else math.nan
    est1 = steps[-1].infidelity_estimate if steps else math.nan
    report: dict[str, Any] = {
        "format": TWO_QUBIT_REPORT_FORMAT, "env_id": settings.env_id, "gate": gate,
        "backend": dict(backend), "policy": dict(policy), "channels": list(channels),
        "initial_params": dict(zip(parameter_names, start, strict=True)),
        "final_params": dict(zip(parameter_names, final, strict=True)),
        "env_steps": max(len(steps) - 1, 0),
        "estimated_infidelity_initial": _finite(est0), "estimated_infidelity_final": _finite(est1),
        "steps": [{"env_step": s.env_step, "action": None if s.action is None else list(s.action),
                   "params": list(s.params), "estimated_error": _finite(s.infidelity_estimate),
                   "reward": s.reward, "shots_used": s.shots_used} for s in steps],
        **dict(extra),
    }
    if truth_start is not None:
        report["truth_initial"] = {k: float(v) for k, v in truth_start.items()}
    if truth_final is not None:
        report["truth_final"] = {k: float(v) for k, v in truth_final.items()}
    _atomic(folder / "report.json", json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n")
    lines = [f"# {gate} calibration session `{settings.session_id}` ({settings.env_id})", "",
             f"outcome: {report['outcome']}"
             + (f" ({report['stop']['detail']})" if report.get("stop") else ""),
             f"backend: {report['backend'].get('name')}; policy: {report['policy'].get('kind')}; "
             f"channels: {', '.join(channels)}",
             f"env steps: {report['env_steps']}; ledger shots: {report['ledger_shots']} "
             f"(orphaned: {report['orphan_shots']})", "",
             "| parameter | start | final |", "|---|---|---|"]
    lines += [f"| {n} | {a:.6g} | {b:.6g} |" for n, a, b in zip(parameter_names, start, final, strict=True)]
    lines += ["", f"estimated error (measured): {est0:.4g} -> {est1:.4g}"]
    if report.get("verdict") is not None:
        lines.append(f"verdict (interleaved two-qubit RB): {Verdict.from_dict(report['verdict']).describe()}")
    for label, tr in (("start", truth_start), ("final", truth_final)):
        if tr is not None:
            lines.append(f"truth at {label} (simulated device only): "
                         + ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(tr.items())))
    _atomic(folder / "report.md", "\n".join(lines) + "\n")
    return report


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class CZTruth:
    """The true metrics of CZ parameters on a simulated multi-qubit device (report only):
    ``cz_calibration_core.true_metrics`` at the device's clock."""

    device: Any
    ramp_s: float = 5e-9

    def __call__(self, params: Sequence[float]) -> dict[str, float]:
        from pulsecal.envs import cz_calibration_core as core

        pulse = core.CZPulse(ramp_s=self.ramp_s, dt_s=self.device.dt_s)
        return core.true_metrics(self.device, pulse, np.asarray(params, dtype=np.float64))


class ECRTruth:
    """The true metrics of ECR knobs on a simulated multi-qubit device (report only): the
    session env's ``true_metrics`` (its shape and spec-sheet Rabi frequency) at the device's
    clock; ``env`` the session's env settings."""

    def __init__(self, device: Any, env: Mapping[str, Any] | None = None) -> None:
        from pulsecal.envs.ecr_session import ECRSessionCore

        self.device = device
        self._core = ECRSessionCore(**dict(env or {}))

    def __call__(self, params: Sequence[float]) -> dict[str, float]:
        return self._core.true_metrics(self.device, params)


__all__ = ["TWO_QUBIT_REPORT_FORMAT", "CZTruth", "ECRTruth", "run_two_qubit_session", "session_channels", "two_qubit_limits",
           "write_two_qubit_report"]
