"""The single-qubit session loop: a policy calibrating through the env over a journaled
backend device (the pieces it shares with the two-qubit loop live in ``loop``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.envs.amplitude_limit import stretched
from pulsecal.envs.calibration import PARAMETER_NAMES, DragParams
from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.protocol import Device
from pulsecal.envs.verification import StatedCoherence, Verdict, verify_devices

from ..backend import Backend, BackendError
from ..device import RetryPolicy
from ..ledger import DeviceDayLedger
from ..policy import ActionOutOfRange, Policy
from ..progress import ProgressHook
from ..report import write_report
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
    default_limits,
    session_env_class,
)
from .stops import RecordedStop, SessionStop


@holds_session_lock  # one process per folder for the whole session (SessionBusy otherwise)
def run_session(backend: Backend, policy: Policy, folder: str | Path, settings: ReplaySettings, *,
                limits: SafetyLimits | None = None, retry: RetryPolicy | None = None,
                clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                fsync: bool = True, truth: Callable[..., dict[str, float]] | None = None,
                plots: bool = True, backend_info: Mapping[str, Any] | None = None,
                device_ledger: DeviceDayLedger | None = None,
                on_folder: Callable[[Path], None] | None = None,
                progress: ProgressHook | None = None) -> ReplayResult:
    """Run (or resume) a calibration session of ``policy`` on ``backend`` in ``folder``.

    Args:
        backend: any ``Backend``; it is reached only through ``BackendDevice``.
        policy: a ``pulsecal.hardware.policy.Policy`` (``pulsecal.agents.policies``: the
            scripted, SB3 and ONNX ones).
        folder: the session folder; an existing one with the same settings is resumed.
        settings: what to run (see ``ReplaySettings``).
        limits: the safety envelope (default ``default_limits(backend, settings.qubit)``);
            it must allow the session qubit's drive frame.
        retry: retry and backoff policy of ``BackendDevice``.
        clock, sleep: wall clock and wait (inject fakes in tests).
        fsync: fsync journal and ledger writes (off only in tests that write thousands).
        truth: for simulated backends, the true gate metrics of parameters (report only);
            called as ``truth(params)``, or ``truth(params, duration_s)`` when the env
            calibrated a longer gate than configured (an amplitude-limited qubit).
        plots: write the PNG plots of the report.
        backend_info: extra description of the backend for the journal and report.
        device_ledger: the device's day ledger shared with its other sessions (sweeps:
            parallel qubits), so ``limits.max_shots_per_day`` bounds all of them together;
            this session is named in it by its folder. None: the session's ledger only.
        on_folder: called with the folder once it exists, after every check passed and
            before the session's first record (the console writes its own record there).
        progress: called after the reset and after every env step (``hardware.progress``:
            ``SessionProgress`` shows it on stderr) with the step, the steps the session may
            take, the ledger's shots, its budget (``budget_shots``, else the env's shot
            budget) and the env's infidelity estimate.

    A session that cannot run to its end returns with ``ReplayResult.stop`` set (shot
    budget, a safety refusal, an action outside the box, a job lost beyond ``retry``:
    ``pulsecal.hardware.replay.stops``), after journaling ``session_stopped`` and writing
    the report. Running a terminally stopped session again reports the same stop and runs
    no job; a lost job's session resumes.

    Raises ``SessionBusy`` (``pulsecal.hardware.session_lock``) at once if another process
    runs a session in ``folder``; ``ValueError`` (bad limits or env settings) or
    ``SettingsMismatch`` (the folder holds a session with other settings) before it creates
    or changes any file; and ``ReplayDivergence`` if the replay departs from the journal.
    """
    folder = Path(folder)
    # Everything a command can get wrong is checked before the folder is touched, so a
    # refused command leaves nothing behind (nor changes a session it would resume).
    limits = limits if limits is not None else default_limits(backend, settings.qubit)
    frame = backend.capabilities().drive_frame(settings.qubit)
    if frame.name not in {f.name for f in limits.allowed_frames}:
        raise ValueError(f"limits.allowed_frames={[f.name for f in limits.allowed_frames]}: allowed a set "
                         f"holding qubit {settings.qubit}'s drive frame {frame.name!r}")
    env = session_env_class(settings.env_id)(**settings.env_kwargs())
    known = check_settings(folder, settings)

    folder.mkdir(parents=True, exist_ok=True)
    if on_folder is not None:
        on_folder(folder)
    records = open_records(folder, settings, known, clock=clock, fsync=fsync, device_ledger=device_ledger)
    journal, ledger, orphans = records.journal, records.ledger, records.orphans
    resumed, proc = records.resumed, records.process
    sid = settings.session_id
    live = start_session(backend, policy, records, settings, limits, retry=retry, clock=clock, sleep=sleep,
                         device_ledger=device_ledger, backend_info=backend_info,
                         device_args={"frame": frame, "qubit": settings.qubit})
    state, device, recorded_stop = live.state, live.device, live.recorded_stop
    policy_info, info_backend = live.policy_info, live.backend_info

    episode = JournaledEpisode(env, policy, journal, state, sid, names=PARAMETER_NAMES)
    # As four values: the amplitude is at the configured gate and may exceed full scale there;
    # the env then calibrates at the longer gate it fits (info["gate_duration_s"]).
    start_values = np.asarray(settings.initial_params, dtype=np.float64)
    stop: SessionStop | None = None
    verdict: Verdict | None = None
    try:
        first = episode.reset(settings.seed, device, start_values)
        plan = episode.calibration.shot_plan
        total_steps = min(settings.max_steps, plan.steps_per_episode or settings.max_steps)
        budget = settings.budget_shots if settings.budget_shots is not None else plan.shot_budget
        after_step: Callable[[StepRecord], None] | None = None
        if progress is not None:
            hook = progress
            progress(0, total_steps, ledger.used_shots, budget, first.infidelity_estimate)

            def report_step(s: StepRecord) -> None:
                hook(s.env_step, total_steps, ledger.used_shots, budget, s.infidelity_estimate)
            after_step = report_step
        episode.run(settings.max_steps, after_step)
        # Inside the try: its jobs go through the guard, the ledger and the journal like the
        # calibration's, so a refusal stops the session and a resume replays them.
        verdict = _verify(env, device, episode.calibration, settings, int(episode.steps[-1].shots_used), limits)
    except (SafetyViolation, ActionOutOfRange, BackendError, RecordedStop) as err:
        stop = settled_stop(err, episode.t, recorded_stop)
    check_replayed_stop(journal, stop, recorded_stop)
    steps, calibration, info, terminated = episode.steps, episode.calibration, episode.info, episode.terminated

    # Start and final as the env applied them, at the gate the session calibrated; a session
    # stopped before its first measurement has neither.
    start = DragParams.from_array(np.asarray(steps[0].params)) if steps else None
    final = DragParams.from_array(np.asarray(steps[-1].params)) if steps else None
    orphan_shots = orphans.shots
    duration_s = float(calibration.gate.duration_s)
    nominal_s = float(calibration.settings.get("gate_duration_s") or duration_s)  # the configured gate
    result_core = {
        **outcome_fields(sid, resumed, device, ledger, orphan_shots, steps, terminated, stop),
        # Where the gate ended and every bound that acted (envs.amplitude_limit).
        "nominal_gate_duration_s": nominal_s,
        "limits": dict(info.get("limits") or {}) if steps else {},
        "limit_failure": info.get("limit_failure") if steps else None,
    }
    if settings.verification is not None:
        # None: the session stopped before its verification ended.
        result_core["verdict"] = None if verdict is None else verdict.to_dict()
    lengthened = duration_s != nominal_s
    truth_start = truth_final = None
    if truth is not None and start is not None and final is not None:
        truth_start = truth(start, duration_s) if lengthened else truth(start)
        truth_final = truth(final, duration_s) if lengthened else truth(final)
    report = write_report(folder, steps=steps, settings=settings, policy=policy_info, backend=info_backend,
                          probes=list(calibration.measurement.names),
                          gate_duration_s=calibration.gate.duration_s,
                          truth_start=truth_start, truth_final=truth_final, extra=result_core, plots=plots)
    journal_session_end(journal, state, sid, stop, recorded_stop,
                        None if final is None else list(final.as_array()),
                        steps[-1].infidelity_estimate if steps else None, ledger, orphan_shots, proc)
    return ReplayResult(folder, final, tuple(steps), resumed, device.replayed_steps, ledger.used_shots,
                        orphan_shots, report, stop, verdict)


def _verify(env: Any, device: Device, calibration: CalibrationState, settings: ReplaySettings,
            env_shots: int, limits: SafetyLimits) -> Verdict | None:
    """The verdict on the session's final gate from checks run on ``device`` (the journaled
    backend), or None without ``settings.verification``.

    The checks run at the gate the env calibrated (a lengthened one on an amplitude-limited
    qubit). With ``budget_shots`` they get what the calibration's shots left; that count
    comes from the env, not the ledger, so a resumed session decides the same way. Unless
    the settings bound them, the identity trains are kept within the envelope's longest
    program (the guard would refuse a longer one)."""
    vs = settings.verification_settings()
    if vs is None:
        return None
    longest = getattr(limits, "max_program_duration_s", None)
    if vs.max_train_s is None and longest is not None:
        # 5 % left for the rest of the program (frame changes, the measurement).
        vs = dataclasses.replace(vs, max_train_s=0.95 * float(longest))
    assert settings.stated_coherence is not None  # (ReplaySettings requires it with verification)
    gate = env.unwrapped.env_description().gate
    duration_s = float(calibration.gate.duration_s)
    if duration_s != gate.duration_s:
        gate = stretched(gate, round(duration_s / device.dt_s), device.dt_s)
    left = None if settings.budget_shots is None else [int(settings.budget_shots) - env_shots]
    params = np.asarray(calibration.parameter_values, dtype=np.float64)[None]
    return verify_devices([device], gate, params, [StatedCoherence(*settings.stated_coherence)], vs, left)[0]
