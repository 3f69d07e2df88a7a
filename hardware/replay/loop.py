"""What every session loop shares (the single-qubit ``session`` and ``two_qubit``): the
folder's records opened and reconciled, the live device behind the guard, ledger and
journal, the start or resume record, the policy's checked step, the action and observation
records (checked against the journal on a resume), the stop a rerun reports, the end
record and the step and result records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.calibration import DragParams
from pulsecal.envs.contract import CalibrationState
from pulsecal.envs.verification import Verdict

from ..backend import Backend
from ..device import BackendDevice, RetryPolicy
from ..journal import Journal
from ..ledger import DeviceDayLedger, ShotLedger, utc_day
from ..policy import ActionOutOfRange, Policy
from .journal_state import JournalState
from .orphans import OrphanAccounting, next_process, recover_from_journal
from .replay_device import ReplayDevice, simulated_fast_forward
from .settings import WRITE_AHEAD, ReplayDivergence, write_settings
from .stops import FINISHED, SessionStop, stop_of


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
