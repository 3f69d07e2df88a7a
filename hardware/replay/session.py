"""The session loop: a policy calibrating through the env over a journaled backend device."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.amplitude_limit import stretched
from pulsecal.envs.calibration import PARAMETER_NAMES, DragParams
from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.protocol import Device
from pulsecal.envs.verification import StatedCoherence, Verdict, verify_devices

from ..backend import Backend, BackendError
from ..device import BackendDevice, RetryPolicy
from ..journal import Journal
from ..ledger import DeviceDayLedger, ShotLedger, utc_day
from ..policy import ActionOutOfRange, Policy
from ..progress import ProgressHook
from ..report import write_report
from ..safety import SafetyLimits, SafetyViolation
from ..session_lock import holds_session_lock
from .journal_state import JournalState
from .orphans import OrphanAccounting, next_process, recover_from_journal
from .replay_device import ReplayDevice, simulated_fast_forward
from .settings import (
    WRITE_AHEAD,
    ReplayDivergence,
    ReplaySettings,
    check_settings,
    default_limits,
    session_env_class,
    write_settings,
)
from .stops import FINISHED, RecordedStop, SessionStop, stop_of


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
    """What a session produced (``report`` is the calibration report dict); ``stop`` says
    why it ended early (None: it finished)."""

    folder: Path
    final_params: DragParams | None  # None: stopped before its first measurement
    steps: tuple[StepRecord, ...]
    resumed: bool
    replayed_device_calls: int
    ledger_shots: int
    orphan_shots: int
    report: dict[str, Any]
    stop: SessionStop | None = None
    verdict: Verdict | None = None  # with ``ReplaySettings.verification``, once the session finished


@dataclass
class SessionRecords:
    """A session folder's records, opened and reconciled with the journal: what every
    session loop (single- and two-qubit) starts from."""

    journal: Journal
    state: JournalState
    ledger: ShotLedger
    orphans: OrphanAccounting
    resumed: bool
    process: int
    write_ahead: bool
    scope: str


def open_records(folder: Path, settings: Any, known: bool, *, clock: Callable[[], float], fsync: bool,
                 device_ledger: DeviceDayLedger | None) -> SessionRecords:
    """Open the journal and ledger of an existing session folder (``settings.json`` written
    when ``known`` is False), account for jobs a killed process left in flight, and bring
    the device's daily ledger up to date."""
    journal = Journal(folder / "journal.jsonl", clock=clock, fsync=fsync)
    if not known:
        write_settings(folder, settings)
    state = JournalState.read(journal.path, settings.session_id)
    ledger = ShotLedger(folder / "ledger.json", budget_shots=settings.budget_shots, fsync=fsync)
    proc = next_process(state)
    write_ahead = state.started is None or state.started.get("write_ahead") == WRITE_AHEAD
    scope = str(folder.resolve())
    orphans = OrphanAccounting(journal, ledger, state, settings.session_id, proc, write_ahead,
                               today=lambda: utc_day(clock()), device_ledger=device_ledger, scope=scope)
    orphans.reconcile()
    if device_ledger is not None:
        device_ledger.sync(scope, ledger)
    return SessionRecords(journal, state, ledger, orphans, state.started is not None, proc, write_ahead, scope)


@dataclass(frozen=True)
class LiveSession:
    """A session's device and journal state once its records are open and the journal's
    leftovers are settled: what the single- and two-qubit loops run on."""

    device: ReplayDevice
    state: JournalState
    recorded_stop: SessionStop | None  # the stop a rerun of a stopped session reports again
    policy_info: dict[str, Any]
    backend_info: dict[str, Any]


def start_session(backend: Backend, policy: Policy, records: SessionRecords, settings: Any, limits: Any, *,
                  retry: RetryPolicy | None, clock: Callable[[], float], sleep: Callable[[float], None],
                  device_ledger: DeviceDayLedger | None, backend_info: Mapping[str, Any] | None,
                  device_args: Mapping[str, Any], **started: Any) -> LiveSession:
    """Put ``backend`` behind the guard, the ledger and the journal (``BackendDevice`` with
    ``device_args``: the session's frame and qubit, or its channels), finish the jobs a
    killed process left in the journal, and journal the session's start (with its own
    ``started`` fields) or its resumption."""
    journal, state, sid, proc = records.journal, records.state, settings.session_id, records.process
    live = BackendDevice(backend, limits=limits, ledger=records.ledger, journal=journal, session_id=sid,
                         retry=retry, clock=clock, sleep=sleep, start_step=len(state.runs_done), process=proc,
                         before_submit=records.orphans.before_submit, device_ledger=device_ledger,
                         scope=records.scope, **device_args)
    recover_from_journal(backend, journal, state, sid, proc)
    state = JournalState.read(journal.path, sid)
    recorded_stop = SessionStop.from_json(state.stopped) if state.stopped is not None else None
    device = ReplayDevice(live, journal, done=state.runs_done, advances_done=state.advances,
                          fast_forward=simulated_fast_forward(backend), stopped=recorded_stop)
    describe = getattr(policy, "describe", None)
    policy_info = describe() if callable(describe) else {"kind": type(policy).__name__}
    info_backend = {"name": getattr(backend, "name", type(backend).__name__), **(backend_info or {})}
    if records.resumed:
        journal.append("session_resumed", session=sid, device_calls_done=len(state.runs_done),
                       env_steps_done=len(state.observations), policy=policy_info, process=proc,
                       write_ahead=WRITE_AHEAD if records.write_ahead else None)
    else:
        journal.append("session_started", session=sid, settings=settings.to_json(), policy=policy_info,
                       backend=info_backend, limits=limits.to_dict() if hasattr(limits, "to_dict") else str(limits),
                       process=proc, write_ahead=WRITE_AHEAD, **started)
    return LiveSession(device, state, recorded_stop, policy_info, info_backend)


def policy_action(policy: Policy, obs: NDArray[Any], policy_state: Any, calibration: CalibrationState,
                  space: Any) -> tuple[NDArray[np.float32], Any]:
    """The policy's next action, checked against the env's box (``ActionOutOfRange``
    otherwise), and its next state; a policy with ``bind`` is first shown the env's
    current calibration state."""
    bind = getattr(policy, "bind", None)
    if callable(bind):
        bind(calibration)
    raw, policy_state = policy.act(obs, policy_state)
    return _checked_action(raw, space), policy_state


def outcome_fields(sid: str, resumed: bool, device: ReplayDevice, ledger: ShotLedger, orphan_shots: int,
                   steps: Sequence[StepRecord], terminated: bool, stop: SessionStop | None) -> dict[str, Any]:
    """What every session's report records of how it went: shots by ledger and env,
    device calls replayed from the journal, and the outcome."""
    return {"session_id": sid, "resumed": resumed, "replayed_device_calls": device.replayed_steps,
            "ledger_shots": ledger.used_shots, "orphan_shots": orphan_shots,
            "env_shots": int(steps[-1].shots_used) if steps else 0, "terminated": bool(terminated),
            "outcome": FINISHED if stop is None else stop.reason,
            "stop": None if stop is None else stop.to_json()}


def journal_action(journal: Journal, state: JournalState, sid: str, t: int, action: NDArray[Any],
                   calibration: CalibrationState) -> None:
    """Journal env step ``t``'s action before the env applies it; on a resume, check that
    the policy acts as the journal says it did."""
    if t - 1 < len(state.actions):
        old = state.actions[t - 1]
        if [float(x) for x in old["action"]] != [float(x) for x in action]:
            raise ReplayDivergence(f"env step {t}: the policy acts {action.tolist()}, the journal "
                                   f"applied {old['action']} (another policy or seed?)")
        return
    journal.append("action", session=sid, env_step=t, action=[float(x) for x in action],
                   params_before=list(calibration.parameter_values),
                   parameters=list(calibration.controlled_parameters))


def settled_stop(err: BaseException, t: int, recorded_stop: SessionStop | None) -> SessionStop:
    """The stop ``err`` means at env step ``t``; a rerun of a stopped session reports the
    stop it recorded."""
    stop = stop_of(err, t)
    if stop is None:  # pragma: no cover  (stop_of knows every class the loops catch)
        raise err
    return recorded_stop or stop


def check_replayed_stop(journal: Journal, stop: SessionStop | None, recorded_stop: SessionStop | None) -> None:
    """A session the journal says stopped must stop again when replayed."""
    if stop is None and recorded_stop is not None:
        raise ReplayDivergence(f"journal {journal.path}: the session stopped ({recorded_stop.describe()}), "
                               f"its replay ran to the end")


def journal_session_end(journal: Journal, state: JournalState, sid: str, stop: SessionStop | None,
                        recorded_stop: SessionStop | None, final_params: list[float] | None,
                        infidelity_estimate: float | None, ledger: ShotLedger, orphan_shots: int,
                        proc: int) -> None:
    """Journal how the session ended, once: ``session_stopped`` (unless a rerun reports
    the recorded stop) or ``session_finished`` (a session that ran to its end measured:
    ``final_params`` is set)."""
    if stop is not None:
        if recorded_stop is None:
            journal.append("session_stopped", session=sid, **stop.to_json(), final_params=final_params,
                           ledger_shots=ledger.used_shots, orphan_shots=orphan_shots, process=proc)
    elif state.finished is None and final_params is not None:
        journal.append("session_finished", session=sid, final_params=final_params,
                       infidelity_estimate=infidelity_estimate, ledger_shots=ledger.used_shots,
                       orphan_shots=orphan_shots, process=proc)


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

    policy_state = policy.initial_state()
    # As four values: the amplitude is at the configured gate and may exceed full scale there;
    # the env then calibrates at the longer gate it fits (info["gate_duration_s"]).
    start_values = np.asarray(settings.initial_params, dtype=np.float64)
    calibration = env.unwrapped.calibration_state()
    steps: list[StepRecord] = []
    terminated = truncated = False
    stop: SessionStop | None = None
    verdict: Verdict | None = None
    t = 0
    try:
        obs, info = env.reset(seed=settings.seed, options={"device": device, "initial_params": start_values})
        calibration = env.unwrapped.calibration_state()
        steps.append(step_record(0, None, 0.0, info, calibration))
        log_observation(journal, state, sid, steps[-1], obs, PARAMETER_NAMES)
        plan = calibration.shot_plan
        total_steps = min(settings.max_steps, plan.steps_per_episode or settings.max_steps)
        budget = settings.budget_shots if settings.budget_shots is not None else plan.shot_budget
        if progress is not None:
            progress(0, total_steps, ledger.used_shots, budget, steps[-1].infidelity_estimate)
        while t < settings.max_steps and not (terminated or truncated):
            t += 1
            action, policy_state = policy_action(policy, obs, policy_state, calibration, env.action_space)
            journal_action(journal, state, sid, t, action, calibration)
            obs, reward, terminated, truncated, info = env.step(action)
            calibration = env.unwrapped.calibration_state()
            steps.append(step_record(t, action, float(reward), info, calibration))
            log_observation(journal, state, sid, steps[-1], obs, PARAMETER_NAMES)
            if progress is not None:
                progress(t, total_steps, ledger.used_shots, budget, steps[-1].infidelity_estimate)
        # Inside the try: its jobs go through the guard, the ledger and the journal like the
        # calibration's, so a refusal stops the session and a resume replays them.
        verdict = _verify(env, device, calibration, settings, int(steps[-1].shots_used), limits)
    except (SafetyViolation, ActionOutOfRange, BackendError, RecordedStop) as err:
        stop = settled_stop(err, t, recorded_stop)
    check_replayed_stop(journal, stop, recorded_stop)

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


def _checked_action(raw: Any, space: Any) -> NDArray[np.float32]:
    """The policy's action as the env's float32 array, or ``ActionOutOfRange``: the
    session applies only actions inside the box (the env would refuse the rest mid-step)."""
    try:
        action = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ActionOutOfRange(f"action {raw!r}: allowed an array of shape {space.shape}") from err
    if action.size != int(np.prod(space.shape)):
        raise ActionOutOfRange(f"action of shape {action.shape}: allowed shape {space.shape}")
    action = action.reshape(space.shape)
    if not np.all(np.isfinite(action)) or np.any(action < space.low) or np.any(action > space.high):
        raise ActionOutOfRange(f"action {[round(float(x), 6) for x in action]}: allowed finite values in "
                               f"[{float(np.min(space.low)):g}, {float(np.max(space.high)):g}]")
    return action


def step_record(t: int, action: NDArray[Any] | None, reward: float, info: Mapping[str, Any],
                calibration: CalibrationState) -> StepRecord:
    """Env step ``t`` as the session records it: the parameters and measurement of the
    env's calibration state after the step, the env's estimate and shots so far."""
    return StepRecord(t, None if action is None else tuple(float(x) for x in action),
                      calibration.parameter_values,  # type: ignore[arg-type]
                      calibration.measurement.values,
                      float(info.get("infidelity_estimate", math.nan)), reward,
                      int(info.get("shots_used", 0)))


def log_observation(journal: Journal, state: JournalState, sid: str, s: StepRecord, obs: NDArray[Any],
                    parameter_names: Sequence[str]) -> None:
    """Journal step ``s``'s observation; on a resume, check the replay reached the
    parameters and measurement the journal holds."""
    if s.env_step < len(state.observations):
        old = state.observations[s.env_step]
        if [float(x) for x in old["params"]] != list(s.params) or list(old["p1"]) != list(s.p1):
            raise ReplayDivergence(f"env step {s.env_step}: replay reached params {list(s.params)}, the "
                                   f"journal {old['params']}")
        return
    journal.append("observation", session=sid, env_step=s.env_step, observation=[float(x) for x in obs],
                   p1=list(s.p1), params=list(s.params), reward=s.reward,
                   infidelity_estimate=s.infidelity_estimate, shots_used=s.shots_used,
                   parameter_names=list(parameter_names))


