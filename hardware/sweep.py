"""Calibration sweeps: one replay session per qubit, a global shot budget, a summary from disk.

A sweep is a folder. Every qubit gets its own session folder with its own journal, and
the sweep keeps only what the qubits share::

    <sweep_dir>/
      q0/ q1/ ...        one replay session each (journal.jsonl, ledger.json, session.json,
                         report.*), plus status.json: running | finished | failed | budget_exhausted
      budget.json        the global shot budget: what each qubit was granted and used
      device_day_ledger.json   (scripts' default) the device's shots per UTC day over all
                         sessions, against the envelope's max_shots_per_day (``DeviceDayLedger``)
      summary.json, summary.md, summary.csv, summary.png     written at the end of a sweep

Jobs run in parallel processes (a Hydra launcher: joblib, Ray, SLURM), so nothing is
shared in memory: the budget and the parameter store are files behind ``fcntl`` locks,
and the summary is recomputed from the session folders alone, so it is right after any
interruption (``summarize``). A qubit's folder is one process's for the whole job
(``session_lock``): a sweep launched twice runs each qubit once, the second launch's job
for a held qubit coming back ``BUSY`` without touching it.

The global budget. Before its session starts, a qubit is *granted* shots from the
sweep's total (``SweepBudget.grant``: what a full session needs plus a headroom for
orphaned re-runs after a kill, or what is left); the grant becomes that session's own
ledger budget (``ReplaySettings.budget_shots``), which the safety guard enforces job by
job. So the sum of the qubits' ledgers can never exceed the total, whatever runs in
parallel. A finished qubit hands back what it did not use; a failed one keeps its grant,
because its resume is bound to the same settings (``session.json``).

Failure and resume. A qubit whose session raises or stops on a lost job is retried in
place (``attempts``): the session resumes from its journal on a freshly built backend,
which is what a resume needs (a simulated backend's device is rebuilt at clock 0 and
fast-forwarded). Outcomes that a retry cannot change (another session in the folder, a
terminal stop: shot budget, safety refusal, an action outside the box; a bad entry in the
parameter store: ``ParamsStoreError``, the file's line) are recorded at once;
``status.json`` names the stop (``stop_reason``). Nothing is raised to the launcher: one
qubit's failure never stops the others.
Running the sweep again skips finished qubits, resumes unfinished ones from their
journals and starts the rest.

Lab backends. On a multi-qubit backend (qibolab, Braket) qubit k's session addresses
qubit k of the device (``QubitJob.device_qubit`` → ``ReplaySettings.qubit``: its drive
frame, its readout, an envelope allowing that frame only), and all sessions charge the
device's day ledger before each submit, so parallel qubits share its per-day limit.

Simulated qubits (``sampled_qubit_backend``, ``lab_start``) live in
``pulsecal.hardware.simulated_session``; the status files and the summary in
``pulsecal.hardware.sweep_summary``. Both are re-exported here.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from pulsecal.envs.calibration import PARAMETER_NAMES, DragParams
from pulsecal.envs.contract import ShotPlan

from .backend import Backend, BackendError
from .journal import read_journal
from .ledger import DeviceDayLedger
from .params_store import ParamsStore, ParamsStoreError, file_lock, utc_iso, write_atomic
from .progress import ProgressHook
from .replay import (
    DEFAULT_ENV_ID,
    Policy,
    ReplayDivergence,
    ReplayResult,
    ReplaySettings,
    default_limits,
    run_session,
    session_env_class,
    stops,
)
from .safety import SafetyLimits
from .session_lock import SessionBusy, session_lock
from .simulated_session import (
    check_qubit_index,
    lab_start,
    lab_start_values,
    qubit_seed,
    sampled_qubit_backend,
    sampled_qubit_params,
)
from .sweep_summary import (
    BUDGET_EXHAUSTED,
    FAILED,
    FINISHED,
    INCOMPLETE,
    PENDING,
    RUNNING,
    STATUS_FORMAT,
    QubitRow,
    SweepSummary,
    qubit_folder,
    read_row,
    read_status,
    summarize,
    summary_csv,
    summary_markdown,
    write_summary,
)

BUDGET_FORMAT = "pulsecal.sweep-budget/1"
# The outcome of a qubit whose folder another process holds (never written to disk: the
# holder's status.json is the qubit's state).
BUSY = "busy"



# -- the global shot budget ----------------------------------------------------------------------


class SweepBudget:
    """The sweep's total shot budget, shared by parallel jobs through ``budget.json``.

    Args:
        path: the budget file (its lock is ``<path>.lock``).
        total_shots: the most shots all qubits together may count; None: no global budget
            (grants are then whatever is asked, and only recorded).
        clock: wall-clock seconds for the record.
    """

    def __init__(self, path: str | os.PathLike[str], total_shots: int | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        if total_shots is not None and (isinstance(total_shots, bool) or not isinstance(total_shots, int)
                                        or total_shots < 1):
            raise ValueError(f"SweepBudget.total_shots={total_shots!r}: allowed an integer >= 1 or None")
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.total_shots = total_shots
        self._clock = clock

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": BUDGET_FORMAT, "total_shots": self.total_shots, "qubits": {}}
        data = json.loads(self.path.read_text())
        if data.get("format") != BUDGET_FORMAT:
            raise ValueError(f"{self.path}: format={data.get('format')!r}: allowed {BUDGET_FORMAT!r}")
        return dict(data)

    def _write(self, data: dict[str, Any]) -> None:
        data["granted_shots"] = sum(int(q["granted"]) for q in data["qubits"].values())
        data["used_shots"] = sum(int(q.get("used") or 0) for q in data["qubits"].values())
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def _checked(self) -> dict[str, Any]:
        data = self.read()
        if data.get("total_shots") != self.total_shots:
            # One sweep folder, one budget: a resumed sweep with another total would make
            # the grants already handed out meaningless.
            raise ValueError(f"{self.path} holds total_shots={data.get('total_shots')!r}: allowed the same "
                             f"budget to resume the sweep, got {self.total_shots!r}")
        return data

    def grant(self, qubit: int, request: int, *, minimum: int = 1) -> int:
        """Shots granted to ``qubit``: its earlier grant if it has one (a resume), else
        ``min(request, what is left)``, or 0 (nothing recorded) if that is below ``minimum``."""
        key = str(check_qubit_index(qubit, "SweepBudget.grant qubit"))
        with file_lock(self.lock_path):
            data = self._checked()
            old = data["qubits"].get(key)
            if old is not None:
                return int(old["granted"])
            left = math.inf if self.total_shots is None else self.total_shots - sum(
                int(q["granted"]) for q in data["qubits"].values())
            n = int(min(request, left))
            if n < minimum:
                return 0
            data["qubits"][key] = {"granted": n, "requested": int(request), "used": None,
                                   "granted_at": utc_iso(self._clock())}
            self._write(data)
            return n

    def settle(self, qubit: int, used_shots: int) -> None:
        """A finished qubit counted ``used_shots``: keep that much of its grant, hand the rest back."""
        key = str(check_qubit_index(qubit, "SweepBudget.settle qubit"))
        with file_lock(self.lock_path):
            data = self._checked()
            entry = data["qubits"].get(key)
            if entry is None:
                raise ValueError(f"{self.path}: qubit {key} settled without a grant")
            entry["used"] = int(used_shots)
            entry["granted"] = min(int(entry["granted"]), int(used_shots))
            entry["settled_at"] = utc_iso(self._clock())
            self._write(data)


# -- one qubit's job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QubitJob:
    """What one sweep job runs: qubit ``qubit``'s session in ``<sweep_dir>/q<qubit>``.

    Attributes:
        qubit: the qubit index, >= 0.
        sweep_dir: the sweep folder.
        sweep_name: names the sweep in session ids (job keys must not collide across
            sweeps: a backend recovers jobs by key).
        seed: the session's seed (``qubit_seed`` of the sweep seed for simulated qubits).
        default_start: initial DRAG parameters when neither the folder nor the store has any.
        max_steps: policy steps after the initial measurement, >= 1.
        env: ``GateCalibrationEnv`` keyword arguments (as in ``ReplaySettings.env``).
        total_shots: the sweep's global shot budget (None: none).
        session_budget_shots: a per-session ledger budget when there is no global budget.
        budget_headroom: extra fraction granted over a full session's shots, >= 0; on top,
            one device call per attempt (the re-run of the call in flight at a kill).
        attempts: tries per qubit in this job (>= 1): a failed session is resumed from its
            journal on a fresh backend.
        params_store: the parameter store file (None: neither read nor written).
        start_from_store: start each qubit from its latest stored version when there is one.
        env_id: the GateCalibration version the policy was trained on (``ReplaySettings.env_id``).
        device_qubit: the backend qubit the session addresses (``ReplaySettings.qubit``):
            ``qubit`` on a multi-qubit backend (qibolab, Braket), 0 for simulated sweeps,
            where every qubit is its own one-qubit backend.
        device_ledger: the device's day-ledger file (``ledger.DeviceDayLedger``) shared by
            every qubit's session, so the envelope's per-day shot limit bounds their sum;
            None: each session's own ledger only.
    """

    qubit: int
    sweep_dir: Path
    sweep_name: str
    seed: int
    default_start: tuple[float, float, float, float]
    max_steps: int = 10
    env: Mapping[str, Any] = field(default_factory=dict)
    total_shots: int | None = None
    session_budget_shots: int | None = None
    budget_headroom: float = 0.1
    attempts: int = 3
    params_store: Path | None = None
    start_from_store: bool = True
    env_id: str = DEFAULT_ENV_ID
    device_qubit: int = 0
    device_ledger: Path | None = None

    def __post_init__(self) -> None:
        check_qubit_index(self.qubit, "QubitJob.qubit")
        check_qubit_index(self.device_qubit, "QubitJob.device_qubit")
        if not isinstance(self.sweep_name, str) or not self.sweep_name or "/" in self.sweep_name:
            raise ValueError(f"QubitJob.sweep_name={self.sweep_name!r}: allowed a non-empty string without '/'")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"QubitJob.attempts={self.attempts!r}: allowed an integer >= 1")
        if not (isinstance(self.budget_headroom, int | float) and math.isfinite(self.budget_headroom)
                and self.budget_headroom >= 0):
            raise ValueError(f"QubitJob.budget_headroom={self.budget_headroom!r}: allowed a finite number >= 0")
        # Checked here, before the job's folder is touched, not when run_qubit first uses them.
        for name in ("total_shots", "session_budget_shots"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"QubitJob.{name}={v!r}: allowed an integer >= 1 or None")
        object.__setattr__(self, "sweep_dir", Path(self.sweep_dir))
        if self.params_store is not None:
            object.__setattr__(self, "params_store", Path(self.params_store))
        if self.device_ledger is not None:
            object.__setattr__(self, "device_ledger", Path(self.device_ledger))
        object.__setattr__(self, "default_start", tuple(float(x) for x in self.default_start))
        object.__setattr__(self, "env", dict(self.env))

    @property
    def folder(self) -> Path:
        return qubit_folder(self.sweep_dir, self.qubit)

    @property
    def session_id(self) -> str:
        return f"{self.sweep_name}-q{self.qubit}"

    def shot_plan(self) -> ShotPlan:
        """The shot plan of this job's session env (from its calibration state)."""
        env = session_env_class(self.env_id)(**{**self.env, "report_truth": False})
        return env.unwrapped.calibration_state().shot_plan  # type: ignore[no-any-return]

    def session_shots(self) -> int:
        """Shots of a full session: the reset's measurement and one per measuring step,
        ``max_steps`` steps or until the env ends its episode."""
        return self.shot_plan().shots_after(self.max_steps)

    def call_shots(self) -> int:
        """Shots of one measurement (one device call of a step)."""
        shots = self.shot_plan().shots_per_step
        if shots is None:
            raise ValueError(f"QubitJob.env_id={self.env_id!r}: its steps choose their shots; allowed an env "
                             "with a fixed shot plan")
        return shots


@dataclass(frozen=True)
class QubitOutcome:
    """What a job did for its qubit (the summary reads the same facts from disk)."""

    qubit: int
    state: str
    skipped: bool
    attempts: int
    error: str | None = None
    result: ReplayResult | None = None
    stop_reason: str | None = None  # the session's stop (``replay.stops``), if it stopped


def _write_status(folder: Path, clock: Callable[[], float], **fields: Any) -> None:
    data = {"format": STATUS_FORMAT, "updated_at": utc_iso(clock()), **fields}
    write_atomic(folder / "status.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


def _journal_finished(folder: Path, session_id: str) -> bool:
    return any(r.get("event") == "session_finished" and r.get("session") == session_id
               for r in read_journal(folder / "journal.jsonl"))


P = ParamSpec("P")


def _one_process_per_qubit(fn: Callable[Concatenate[QubitJob, P], QubitOutcome],
                           ) -> Callable[Concatenate[QubitJob, P], QubitOutcome]:
    """Hold the qubit folder's session lock for the whole job: its status, its grant, its
    session and its parameter-store record are one process's. A job whose folder another
    process holds touches nothing and comes back ``BUSY``, naming the holder's PID."""

    @functools.wraps(fn)
    def locked(job: QubitJob, /, *args: P.args, **kwargs: P.kwargs) -> QubitOutcome:
        try:
            with session_lock(job.folder):
                return fn(job, *args, **kwargs)
        except SessionBusy as e:
            return QubitOutcome(job.qubit, BUSY, False, 0, str(e))

    return locked


@_one_process_per_qubit
def run_qubit(job: QubitJob, *, make_backend: Callable[[int], Backend], make_policy: Callable[[], Policy],
              limits: Callable[[Backend], SafetyLimits] | None = None, retry: Any = None,
              truth: Callable[[Backend], Callable[[DragParams], dict[str, float]] | None] | None = None,
              backend_info: Mapping[str, Any] | None = None, policy_info: Mapping[str, Any] | None = None,
              plots: bool = True, fsync: bool = True, clock: Callable[[], float] = time.time,
              sleep: Callable[[float], None] = time.sleep, progress: ProgressHook | None = None) -> QubitOutcome:
    """Run, resume or skip qubit ``job.qubit``'s session; never raises for a session error.

    One process at a time per qubit (``pulsecal.hardware.session_lock``): if another holds
    the qubit's folder, nothing is touched and the outcome is ``BUSY`` with the holder's PID.

    Args:
        job: what to run (see ``QubitJob``).
        make_backend: a fresh backend for this qubit, called once per attempt with the
            attempt number (0, 1, ...; a simulated backend may vary its fault stream by it).
        make_policy: a fresh policy (called once per attempt).
        limits: the safety envelope of a backend (default ``replay.default_limits``).
        retry: ``RetryPolicy`` of ``BackendDevice``.
        truth: for simulated backends, the truth function of a backend (report only).
        backend_info, policy_info: provenance for the parameter store (policy default: the
            policy's ``describe()``).
        plots: write the session's report plots.
        fsync, clock, sleep, progress: as in ``run_session`` (``progress`` sees every attempt).
    """
    folder = job.folder
    status = read_status(folder)
    prior_attempts = int(status.get("attempts", 0)) if status else 0
    if status is not None and status.get("state") == FINISHED and _journal_finished(folder, job.session_id):
        return QubitOutcome(job.qubit, FINISHED, True, prior_attempts)
    folder.mkdir(parents=True, exist_ok=True)

    # A started session is bound to its first settings (session.json): its start and its
    # grant are sweep state, not config, so they come from there and not from the store.
    start: tuple[float, ...] = job.default_start
    start_source = "config"
    store = ParamsStore(job.params_store, fsync=fsync) if job.params_store is not None else None
    session_file = folder / "session.json"
    prior: dict[str, Any] | None = None
    if session_file.exists():
        prior = json.loads(session_file.read_text()).get("settings") or {}
        start, start_source = tuple(float(x) for x in prior["initial_params"]), "session"
    elif store is not None and job.start_from_store:
        try:
            cal = store.latest(job.qubit)
        except ParamsStoreError as e:
            # Not started: its start would be a guess. The other qubits run, and the
            # summary shows this one failed with the store's file:line.
            _write_status(folder, clock, qubit=job.qubit, session_id=job.session_id, state=FAILED,
                          attempts=prior_attempts, error=str(e))
            return QubitOutcome(job.qubit, FAILED, False, prior_attempts, str(e))
        if cal is not None:
            start, start_source = cal.as_tuple(), f"params_store v{cal.version}"

    budget = SweepBudget(job.sweep_dir / "budget.json", job.total_shots, clock=clock)
    if prior is not None:
        budget_shots = prior.get("budget_shots")
    elif job.total_shots is not None:
        need = job.session_shots()
        per_call = job.call_shots()
        # Headroom for orphaned re-runs: a resume after a kill or a lost job charges the
        # device call that was in flight once more, so each attempt may cost one call.
        request = math.ceil(need * (1.0 + job.budget_headroom)) + job.attempts * per_call
        # A session that cannot finish is not started: it would only spend shots.
        granted = budget.grant(job.qubit, request, minimum=need)
        if granted == 0:
            _write_status(folder, clock, qubit=job.qubit, session_id=job.session_id, state=BUDGET_EXHAUSTED,
                          attempts=prior_attempts, error="the sweep's shot budget is spent: not started")
            return QubitOutcome(job.qubit, BUDGET_EXHAUSTED, False, prior_attempts, "budget spent")
        budget_shots = granted
    else:
        budget_shots = job.session_budget_shots

    attempts = prior_attempts
    state, error, result = FAILED, None, None
    stop_reason: str | None = None
    for _ in range(job.attempts):
        attempts += 1
        _write_status(folder, clock, qubit=job.qubit, session_id=job.session_id, state=RUNNING,
                      attempts=attempts, start_source=start_source, pid=os.getpid())
        try:
            settings = ReplaySettings(job.session_id, int(job.seed), start,  # type: ignore[arg-type]
                                      max_steps=job.max_steps, budget_shots=budget_shots, env=job.env,
                                      env_id=job.env_id, qubit=job.device_qubit)
            backend = make_backend(attempts - 1)
            policy = make_policy()
            lim = limits(backend) if limits is not None else default_limits(backend, job.device_qubit)
            result = run_session(backend, policy, folder, settings, limits=lim, retry=retry, clock=clock,
                                 sleep=sleep, fsync=fsync, truth=truth(backend) if truth else None,
                                 plots=plots, backend_info=backend_info, progress=progress,
                                 device_ledger=None if job.device_ledger is None
                                 else DeviceDayLedger(job.device_ledger, fsync=fsync))
            stop = result.stop
            if stop is None:  # a resumed attempt that finished clears an earlier attempt's stop
                state, error, stop_reason = FINISHED, None, None
                break
            stop_reason = stop.reason
            state, error = (BUDGET_EXHAUSTED if stop.reason == stops.BUDGET_EXHAUSTED else FAILED), \
                f"{stop.reason}: {stop.describe()}"
            if stop.terminal:  # the same session would stop the same way again
                break
        except (ReplayDivergence, ValueError, TypeError) as e:
            state, error, stop_reason = FAILED, f"{type(e).__name__}: {e}", None
            break
        except BackendError as e:  # a backend outage building the session: the journal lets us resume
            state, error, stop_reason = FAILED, f"{type(e).__name__}: {e}", None
        except Exception as e:  # one qubit's bug must not stop the sweep
            state, error, stop_reason = FAILED, f"{type(e).__name__}: {e}", None
            break

    if state == FINISHED and result is not None:
        if job.total_shots is not None:
            budget.settle(job.qubit, result.ledger_shots)
        verdict = (result.report or {}).get("verdict")
        # Only a verified calibration becomes the store's current version: a session whose
        # verdict is ``failed`` leaves the qubit's previous version in place. (A report
        # without a verdict comes from a session run without verification.)
        if verdict is not None and verdict.get("status") != "calibrated":
            error = f"verdict failed: {verdict.get('reason')}; the store keeps the previous version"
        elif store is not None and result.final_params is not None:  # (a finished session has them)
            rep = result.report
            info = dict(policy_info) if policy_info is not None else dict(rep.get("policy") or {})
            try:
                store.record(job.qubit, dict(zip(PARAMETER_NAMES, result.final_params.as_array().tolist(),
                                                 strict=True)),
                             metrics={"estimated_infidelity": rep.get("estimated_infidelity_final"),
                                      "shots": result.ledger_shots, "env_steps": rep.get("env_steps")},
                             provenance={"session_id": job.session_id,
                                         "journal": str((folder / "journal.jsonl").resolve()),
                                         "sweep_dir": str(job.sweep_dir.resolve()), "policy": info,
                                         "backend": dict(backend_info or rep.get("backend") or {}),
                                         "start_source": start_source})
            except ParamsStoreError as e:
                # Failed, not finished, so the next run resumes the finished session from
                # its journal (no shots) and records it once the file is fixed.
                state, error = FAILED, (f"calibrated, but not recorded in the parameter store: {e}; fix the "
                                        "file and run the sweep again to record it")
    _write_status(folder, clock, qubit=job.qubit, session_id=job.session_id, state=state, attempts=attempts,
                  start_source=start_source, error=error, stop_reason=stop_reason)
    return QubitOutcome(job.qubit, state, False, attempts, error, result, stop_reason)


__all__ = [
    "BUDGET_EXHAUSTED", "BUSY", "FAILED", "FINISHED", "INCOMPLETE", "PENDING", "RUNNING",
    "QubitJob", "QubitOutcome", "QubitRow", "SweepBudget", "SweepSummary", "lab_start", "lab_start_values",
    "qubit_folder",
    "qubit_seed", "read_row", "read_status", "run_qubit", "sampled_qubit_backend", "sampled_qubit_params",
    "summarize", "summary_csv", "summary_markdown", "write_summary",
]
