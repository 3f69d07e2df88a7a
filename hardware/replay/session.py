"""The session loop: a policy calibrating through the env over a journaled backend device."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.calibration import PARAMETER_NAMES, DragParams
from pulsecal.envs.contract import CalibrationState

from ..backend import Backend
from ..device import BackendDevice, RetryPolicy
from ..journal import Journal
from ..ledger import DeviceDayLedger, ShotLedger, utc_day
from ..policy import Policy
from ..progress import ProgressHook
from ..report import write_report
from ..safety import SafetyLimits
from ..session_lock import holds_session_lock
from .journal_state import JournalState
from .orphans import OrphanAccounting, next_process, recover_from_journal
from .replay_device import ReplayDevice, simulated_fast_forward
from .settings import (
    WRITE_AHEAD,
    ReplayDivergence,
    ReplaySettings,
    check_or_write_settings,
    default_limits,
    session_env_class,
)


@dataclass(frozen=True)
class StepRecord:
    """One env step (step 0 is the initial measurement at reset; it has no action)."""

    env_step: int
    action: tuple[float, ...] | None
    params: tuple[float, float, float, float]
    p1: tuple[float, ...]
    infidelity_estimate: float
    reward: float
    shots_used: int


@dataclass(frozen=True)
class ReplayResult:
    """What a finished session produced (``report`` is the calibration report dict)."""

    folder: Path
    final_params: DragParams
    steps: tuple[StepRecord, ...]
    resumed: bool
    replayed_device_calls: int
    ledger_shots: int
    orphan_shots: int
    report: dict[str, Any]


@holds_session_lock  # one process per folder for the whole session (SessionBusy otherwise)
def run_session(backend: Backend, policy: Policy, folder: str | Path, settings: ReplaySettings, *,
                limits: SafetyLimits | None = None, retry: RetryPolicy | None = None,
                clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                fsync: bool = True, truth: Callable[[DragParams], dict[str, float]] | None = None,
                plots: bool = True, backend_info: Mapping[str, Any] | None = None,
                device_ledger: DeviceDayLedger | None = None,
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
        truth: for simulated backends, the true gate metrics of parameters (report only).
        plots: write the PNG plots of the report.
        backend_info: extra description of the backend for the journal and report.
        device_ledger: the device's day ledger shared with its other sessions (sweeps:
            parallel qubits), so ``limits.max_shots_per_day`` bounds all of them together;
            this session is named in it by its folder. None: the session's ledger only.
        progress: called after the reset and after every env step (``hardware.progress``:
            ``SessionProgress`` shows it on stderr) with the step, the steps the session may
            take, the ledger's shots, its budget (``budget_shots``, else the env's shot
            budget) and the env's infidelity estimate.

    Raises ``SessionBusy`` (``pulsecal.hardware.session_lock``) at once if another process
    runs a session in ``folder``, ``ReplayDivergence`` if the folder holds another session
    or the replay departs from the journal, and whatever the backend path raises
    (SafetyViolation, JobLost).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    journal = Journal(folder / "journal.jsonl", clock=clock, fsync=fsync)
    check_or_write_settings(folder, settings)
    state = JournalState.read(journal.path, settings.session_id)
    resumed = state.started is not None
    ledger = ShotLedger(folder / "ledger.json", budget_shots=settings.budget_shots, fsync=fsync)
    limits = limits if limits is not None else default_limits(backend, settings.qubit)
    frame = backend.capabilities().drive_frame(settings.qubit)
    if frame.name not in {f.name for f in limits.allowed_frames}:
        raise ValueError(f"limits.allowed_frames={[f.name for f in limits.allowed_frames]}: allowed a set "
                         f"holding qubit {settings.qubit}'s drive frame {frame.name!r}")
    sid = settings.session_id
    proc = next_process(state)
    write_ahead = state.started is None or state.started.get("write_ahead") == WRITE_AHEAD
    scope = str(folder.resolve())
    orphans = OrphanAccounting(journal, ledger, state, sid, proc, write_ahead, today=lambda: utc_day(clock()),
                       device_ledger=device_ledger, scope=scope)
    orphans.reconcile()
    if device_ledger is not None:
        device_ledger.sync(scope, ledger)
    live = BackendDevice(backend, limits=limits, ledger=ledger, journal=journal, session_id=sid,
                         frame=frame, qubit=settings.qubit,
                         retry=retry, clock=clock, sleep=sleep, start_step=len(state.runs_done),
                         process=proc, before_submit=orphans.before_submit,
                         device_ledger=device_ledger, scope=scope)
    recover_from_journal(backend, journal, state, sid, proc)
    state = JournalState.read(journal.path, sid)

    device = ReplayDevice(live, journal, done=state.runs_done, advances_done=state.advances,
                          fast_forward=simulated_fast_forward(backend))
    env = session_env_class(settings.env_id)(**settings.env_kwargs())
    describe = getattr(policy, "describe", None)
    policy_info = describe() if callable(describe) else {"kind": type(policy).__name__}
    info_backend = {"name": getattr(backend, "name", type(backend).__name__), **(backend_info or {})}
    if resumed:
        journal.append("session_resumed", session=sid, device_calls_done=len(state.runs_done),
                       env_steps_done=len(state.observations), policy=policy_info, process=proc,
                       write_ahead=WRITE_AHEAD if write_ahead else None)
    else:
        journal.append("session_started", session=sid, settings=settings.to_json(), policy=policy_info,
                       backend=info_backend, limits=limits.to_dict() if hasattr(limits, "to_dict") else str(limits),
                       process=proc, write_ahead=WRITE_AHEAD)

    bind = getattr(policy, "bind", None)
    policy_state = policy.initial_state()
    start = DragParams.from_array(np.asarray(settings.initial_params))
    obs, info = env.reset(seed=settings.seed, options={"device": device, "initial_params": start})
    calibration = env.unwrapped.calibration_state()
    steps = [_observe(0, None, obs, 0.0, info, calibration)]
    _log_observation(journal, state, sid, steps[-1], obs)
    plan = calibration.shot_plan
    total_steps = min(settings.max_steps, plan.steps_per_episode or settings.max_steps)
    budget = settings.budget_shots if settings.budget_shots is not None else plan.shot_budget
    if progress is not None:
        progress(0, total_steps, ledger.used_shots, budget, steps[-1].infidelity_estimate)
    terminated = truncated = False
    t = 0
    while t < settings.max_steps and not (terminated or truncated):
        t += 1
        if callable(bind):
            bind(calibration)
        action, policy_state = policy.act(obs, policy_state)
        action = np.asarray(action, dtype=np.float32).reshape(env.action_space.shape)
        params_before = list(calibration.parameter_values)
        if t - 1 < len(state.actions):
            old = state.actions[t - 1]
            if [float(x) for x in old["action"]] != [float(x) for x in action]:
                raise ReplayDivergence(f"env step {t}: the policy acts {action.tolist()}, the journal "
                                       f"applied {old['action']} (another policy or seed?)")
        else:
            journal.append("action", session=sid, env_step=t, action=[float(x) for x in action],
                           params_before=params_before, parameters=list(calibration.controlled_parameters))
        obs, reward, terminated, truncated, info = env.step(action)
        calibration = env.unwrapped.calibration_state()
        steps.append(_observe(t, action, obs, float(reward), info, calibration))
        _log_observation(journal, state, sid, steps[-1], obs)
        if progress is not None:
            progress(t, total_steps, ledger.used_shots, budget, steps[-1].infidelity_estimate)

    final = DragParams.from_array(np.asarray(steps[-1].params))
    orphan_shots = orphans.shots
    result_core = {
        "session_id": sid, "resumed": resumed, "replayed_device_calls": device.replayed_steps,
        "ledger_shots": ledger.used_shots, "orphan_shots": orphan_shots,
        "env_shots": int(steps[-1].shots_used), "terminated": bool(terminated),
    }
    truth_start = truth(start) if truth is not None else None
    truth_final = truth(final) if truth is not None else None
    report = write_report(folder, steps=steps, settings=settings, policy=policy_info, backend=info_backend,
                          probes=list(calibration.measurement.names),
                          gate_duration_s=calibration.gate.duration_s,
                          truth_start=truth_start, truth_final=truth_final, extra=result_core, plots=plots)
    if state.finished is None:
        journal.append("session_finished", session=sid, final_params=list(final.as_array()),
                       infidelity_estimate=steps[-1].infidelity_estimate, ledger_shots=ledger.used_shots,
                       orphan_shots=orphan_shots, process=proc)
    return ReplayResult(folder, final, tuple(steps), resumed, device.replayed_steps, ledger.used_shots,
                        orphan_shots, report)


def _observe(t: int, action: NDArray[Any] | None, obs: NDArray[Any], reward: float,
             info: Mapping[str, Any], calibration: CalibrationState) -> StepRecord:
    return StepRecord(t, None if action is None else tuple(float(x) for x in action),
                      calibration.parameter_values,  # type: ignore[arg-type]
                      calibration.measurement.values,
                      float(info.get("infidelity_estimate", math.nan)), reward,
                      int(info.get("shots_used", 0)))


def _log_observation(journal: Journal, state: JournalState, sid: str, s: StepRecord, obs: NDArray[Any]) -> None:
    if s.env_step < len(state.observations):
        old = state.observations[s.env_step]
        if [float(x) for x in old["params"]] != list(s.params) or list(old["p1"]) != list(s.p1):
            raise ReplayDivergence(f"env step {s.env_step}: replay reached params {list(s.params)}, the "
                                   f"journal {old['params']}")
        return
    journal.append("observation", session=sid, env_step=s.env_step, observation=[float(x) for x in obs],
                   p1=list(s.p1), params=list(s.params), reward=s.reward,
                   infidelity_estimate=s.infidelity_estimate, shots_used=s.shots_used,
                   parameter_names=list(PARAMETER_NAMES))


