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
interruption (``summarize``).

The global budget. Before its session starts, a qubit is *granted* shots from the
sweep's total (``SweepBudget.grant``: what a full session needs plus a headroom for
orphaned re-runs after a kill, or what is left); the grant becomes that session's own
ledger budget (``ReplaySettings.budget_shots``), which the safety guard enforces job by
job. So the sum of the qubits' ledgers can never exceed the total, whatever runs in
parallel. A finished qubit hands back what it did not use; a failed one keeps its grant,
because its resume is bound to the same settings (``session.json``).

Failure and resume. A qubit whose session raises is retried in place (``attempts``): the
session resumes from its journal on a freshly built backend, which is what a resume
needs (a simulated backend's device is rebuilt at clock 0 and fast-forwarded). Errors
that a retry cannot fix (another session in the folder, a safety violation) are recorded
at once. Nothing is raised to the launcher: one qubit's failure never stops the others.
Running the sweep again skips finished qubits, resumes unfinished ones from their
journals and starts the rest.

Lab backends. On a multi-qubit backend (qibolab, Braket) qubit k's session addresses
qubit k of the device (``QubitJob.device_qubit`` → ``ReplaySettings.qubit``: its drive
frame, its readout, an envelope allowing that frame only), and all sessions charge the
device's day ledger before each submit, so parallel qubits share its per-day limit.

Simulated qubits. ``sampled_qubit_backend`` gives qubit k of a sweep seeded ``seed`` its
own device, drawn by ``DeviceSampler`` from ``(seed, k)``: its own hidden amplitude
error, detuning, T1/T2 and readout error. ``lab_start`` is what a lab would start such
a qubit from before any calibration: textbook DRAG parameters from what spectroscopy
tells (Rabi rate, anharmonicity), knowing nothing of the hidden errors.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.envs.calibration import PARAMETER_NAMES, DragGate, DragParams, nominal_params

from .backend import Backend, BackendError
from .journal import read_journal
from .ledger import DeviceDayLedger
from .params_store import ParamsStore, file_lock, utc_iso, write_atomic
from .replay import (
    DEFAULT_ENV_ID,
    Policy,
    ReplayDivergence,
    ReplayResult,
    ReplaySettings,
    run_session,
)
from .safety import SafetyLimits, SafetyViolation

STATUS_FORMAT = "pulsecal.sweep-status/1"
BUDGET_FORMAT = "pulsecal.sweep-budget/1"
SUMMARY_FORMAT = "pulsecal.sweep-summary/1"

RUNNING, FINISHED, FAILED, BUDGET_EXHAUSTED = "running", "finished", "failed", "budget_exhausted"
# Derived in the summary only: a folder whose journal started but never finished (killed,
# or still running), and a qubit that has a folder but no journal yet.
INCOMPLETE, PENDING = "incomplete", "pending"


def qubit_folder(sweep_dir: str | os.PathLike[str], qubit: int) -> Path:
    return Path(sweep_dir) / f"q{int(qubit)}"


def _check_qubit(qubit: object, where: str) -> int:
    if isinstance(qubit, bool) or not isinstance(qubit, int) or qubit < 0:
        raise ValueError(f"{where}={qubit!r}: allowed an integer >= 0")
    return qubit


# -- simulated qubits ----------------------------------------------------------------------------


def qubit_seed(seed: int, qubit: int) -> int:
    """The session seed of qubit ``qubit`` in a sweep seeded ``seed``: a deterministic,
    well-mixed 31-bit integer (neighbouring qubits get unrelated shot-noise streams)."""
    _check_qubit(qubit, "qubit")
    return int(np.random.SeedSequence([int(seed), int(qubit)]).generate_state(1)[0] & 0x7FFFFFFF)


def sampled_qubit_params(seed: int, qubit: int, sampler: Any = None) -> Any:
    """The hidden ``DeviceParams`` of simulated qubit ``qubit``: ``DeviceSampler`` drawn
    from ``(seed, qubit)`` (the same construction as ``held_out_devices``)."""
    from pulsecal.envs.presets import DeviceSampler

    s = DeviceSampler() if sampler is None else sampler
    return s.sample(np.random.default_rng([int(seed), _check_qubit(qubit, "qubit")]))


def sampled_qubit_backend(*, seed: int, qubit: int, fault_rate: float = 0.0, sampler: Any = None,
                          open_system: bool = True, idempotent_submit: bool = True,
                          fault_stream: int = 0) -> Any:
    """A ``SimulatedBackend`` over qubit ``qubit``'s own sampled device (static, no drift).

    Shot noise is seeded by ``qubit_seed(seed, qubit)`` and faults draw from their own
    generator, as in ``replay.simulated_backend``; rebuilding it with the same arguments
    gives the device a resumed session fast-forwards. ``fault_stream`` picks another fault
    sequence (never other counts): a resume replays finished calls without drawing faults,
    so with the same stream the call in flight would meet the very faults that lost it.
    """
    from pulsecal.envs.device import SimulatedDevice

    from .adapters.simulated import FaultRates, SimulatedBackend

    qs = qubit_seed(seed, qubit)
    dev = SimulatedDevice(sampled_qubit_params(seed, qubit, sampler), None, rng=np.random.default_rng(qs),
                          open_system=open_system)
    fault_seed = [qs, 1] if fault_stream == 0 else [qs, 1, int(fault_stream)]
    return SimulatedBackend(dev, rng=np.random.default_rng(fault_seed), faults=FaultRates.uniform(fault_rate),
                            idempotent_submit=idempotent_submit)


def lab_start(device_params: Any, gate_duration_s: float, *, amplitude_rel: float = 0.0,
              beta_rel: float = 0.0, detuning_hz: float = 0.0, phase: float = 0.0) -> DragParams:
    """Textbook X-gate parameters from what a lab knows of a qubit before calibrating it:
    its Rabi rate and anharmonicity, not its amplitude error or detuning (taken as 1 and
    0, so the hidden ones are the qubit's own miscalibration), moved by the given extra
    miscalibration."""
    t = device_params.transmon.replace(detuning_hz=0.0)
    p = nominal_params(t, DragGate(gate_duration_s)).as_array()
    p[0] *= 1.0 + amplitude_rel
    p[1] *= 1.0 + beta_rel
    p[2] += detuning_hz
    p[3] += phase
    return DragParams.from_array(p)


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
        key = str(_check_qubit(qubit, "SweepBudget.grant qubit"))
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
        key = str(_check_qubit(qubit, "SweepBudget.settle qubit"))
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
        _check_qubit(self.qubit, "QubitJob.qubit")
        _check_qubit(self.device_qubit, "QubitJob.device_qubit")
        if not isinstance(self.sweep_name, str) or not self.sweep_name or "/" in self.sweep_name:
            raise ValueError(f"QubitJob.sweep_name={self.sweep_name!r}: allowed a non-empty string without '/'")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"QubitJob.attempts={self.attempts!r}: allowed an integer >= 1")
        if not (isinstance(self.budget_headroom, int | float) and math.isfinite(self.budget_headroom)
                and self.budget_headroom >= 0):
            raise ValueError(f"QubitJob.budget_headroom={self.budget_headroom!r}: allowed a finite number >= 0")
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

    def session_shots(self) -> int:
        """Shots of a full session: ``call_shots`` at every measurement (the reset's and one
        per step; GateCalibration-v1 measures at most ``rounds`` times)."""
        calls = self.max_steps + 1
        if self.env_id != DEFAULT_ENV_ID:
            from pulsecal.envs.gate_calibration_v1 import GateCalibrationV1Config

            calls = min(calls, int(self.env.get("rounds") or GateCalibrationV1Config.rounds))
        return self.call_shots() * calls

    def call_shots(self) -> int:
        """Shots of one measurement: every probe × shots_per_probe (v0); six twins of
        shot_budget // (6·rounds) shots (GateCalibration-v1)."""
        if self.env_id != DEFAULT_ENV_ID:
            from pulsecal.envs.gate_calibration_v1 import GateCalibrationV1Config

            rounds = int(self.env.get("rounds") or GateCalibrationV1Config.rounds)
            budget = int(self.env.get("shot_budget") or GateCalibrationV1Config.shot_budget)
            return 6 * (budget // (6 * rounds))
        from pulsecal.envs.calibration import default_probes
        from pulsecal.envs.drag_calibration_core import GateCalibrationConfig

        spp = int(self.env.get("shots_per_probe") or GateCalibrationConfig.shots_per_probe)
        return spp * len(self.env.get("probes") or default_probes())


@dataclass(frozen=True)
class QubitOutcome:
    """What a job did for its qubit (the summary reads the same facts from disk)."""

    qubit: int
    state: str
    skipped: bool
    attempts: int
    error: str | None = None
    result: ReplayResult | None = None


def read_status(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / "status.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != STATUS_FORMAT:
        raise ValueError(f"{path}: format={data.get('format')!r}: allowed {STATUS_FORMAT!r}")
    return dict(data)


def _write_status(folder: Path, clock: Callable[[], float], **fields: Any) -> None:
    data = {"format": STATUS_FORMAT, "updated_at": utc_iso(clock()), **fields}
    write_atomic(folder / "status.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


def _journal_finished(folder: Path, session_id: str) -> bool:
    return any(r.get("event") == "session_finished" and r.get("session") == session_id
               for r in read_journal(folder / "journal.jsonl"))


def run_qubit(job: QubitJob, *, make_backend: Callable[[int], Backend], make_policy: Callable[[], Policy],
              limits: Callable[[Backend], SafetyLimits] | None = None, retry: Any = None,
              truth: Callable[[Backend], Callable[[DragParams], dict[str, float]] | None] | None = None,
              backend_info: Mapping[str, Any] | None = None, policy_info: Mapping[str, Any] | None = None,
              plots: bool = True, fsync: bool = True, clock: Callable[[], float] = time.time,
              sleep: Callable[[float], None] = time.sleep) -> QubitOutcome:
    """Run, resume or skip qubit ``job.qubit``'s session; never raises for a session error.

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
        fsync, clock, sleep: as in ``run_session``.
    """
    from .replay import default_limits

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
        cal = store.latest(job.qubit)
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
                                 plots=plots, backend_info=backend_info,
                                 device_ledger=None if job.device_ledger is None
                                 else DeviceDayLedger(job.device_ledger, fsync=fsync))
            state, error = FINISHED, None
            break
        except SafetyViolation as e:
            # Deterministic: the same session would hit the same limit again.
            spent = any(v.limit == "shot_budget" for v in e.violations)
            state, error = (BUDGET_EXHAUSTED if spent else FAILED), f"SafetyViolation: {e}"
            break
        except (ReplayDivergence, ValueError, TypeError) as e:
            state, error = FAILED, f"{type(e).__name__}: {e}"
            break
        except BackendError as e:  # JobLost, a backend outage: the journal lets us resume
            state, error = FAILED, f"{type(e).__name__}: {e}"
        except Exception as e:  # one qubit's bug must not stop the sweep
            state, error = FAILED, f"{type(e).__name__}: {e}"
            break

    if state == FINISHED and result is not None:
        if job.total_shots is not None:
            budget.settle(job.qubit, result.ledger_shots)
        if store is not None:
            rep = result.report
            info = dict(policy_info) if policy_info is not None else dict(rep.get("policy") or {})
            store.record(job.qubit, dict(zip(PARAMETER_NAMES, result.final_params.as_array().tolist(), strict=True)),
                         metrics={"estimated_infidelity": rep.get("estimated_infidelity_final"),
                                  "shots": result.ledger_shots, "env_steps": rep.get("env_steps")},
                         provenance={"session_id": job.session_id, "journal": str((folder / "journal.jsonl").resolve()),
                                     "sweep_dir": str(job.sweep_dir.resolve()), "policy": info,
                                     "backend": dict(backend_info or rep.get("backend") or {}),
                                     "start_source": start_source})
    _write_status(folder, clock, qubit=job.qubit, session_id=job.session_id, state=state, attempts=attempts,
                  start_source=start_source, error=error)
    return QubitOutcome(job.qubit, state, False, attempts, error, result)


# -- the summary, from disk ----------------------------------------------------------------------


@dataclass(frozen=True)
class QubitRow:
    """One qubit of the summary, read from its session folder.

    ``status`` is one of finished, failed, budget_exhausted, incomplete (journal started,
    never finished: killed or still running), pending (no journal). ``final_params`` and
    the estimates come from the journal's last observation; the truth (simulated
    backends only) from report.json; ``shots`` from the session's ledger.
    """

    qubit: int
    status: str
    session_id: str | None
    attempts: int
    final_params: Mapping[str, float] | None
    initial_params: Mapping[str, float] | None
    estimated_infidelity_initial: float | None
    estimated_infidelity: float | None
    true_infidelity: float | None
    coherence_limit: float | None
    env_steps: int
    shots: int
    orphan_shots: int
    journal_complete: bool
    error: str | None = None

    @property
    def limit_ratio(self) -> float | None:
        """True infidelity over the coherence limit (1 is perfect), when known."""
        if self.true_infidelity is None or not self.coherence_limit:
            return None
        return self.true_infidelity / self.coherence_limit

    def to_dict(self) -> dict[str, Any]:
        return {"qubit": self.qubit, "status": self.status, "session_id": self.session_id,
                "attempts": self.attempts, "final_params": None if self.final_params is None else dict(self.final_params),
                "initial_params": None if self.initial_params is None else dict(self.initial_params),
                "estimated_infidelity_initial": self.estimated_infidelity_initial,
                "estimated_infidelity": self.estimated_infidelity, "true_infidelity": self.true_infidelity,
                "coherence_limit": self.coherence_limit, "limit_ratio": self.limit_ratio,
                "env_steps": self.env_steps, "shots": self.shots, "orphan_shots": self.orphan_shots,
                "journal_complete": self.journal_complete, "error": self.error}


@dataclass(frozen=True)
class SweepSummary:
    sweep_dir: Path
    rows: tuple[QubitRow, ...]
    budget: Mapping[str, Any] | None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def total_shots(self) -> int:
        return sum(r.shots for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUMMARY_FORMAT, "sweep_dir": str(self.sweep_dir), "counts": self.counts,
                "total_shots": self.total_shots, "budget": None if self.budget is None else dict(self.budget),
                "qubits": [r.to_dict() for r in self.rows]}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def read_row(folder: Path, qubit: int) -> QubitRow:
    """The summary row of one session folder (reads status, session, journal, ledger, report)."""
    from .ledger import ShotLedger
    from .replay import JournalState

    status = read_status(folder) or {}
    session_file = folder / "session.json"
    sid = status.get("session_id")
    if sid is None and session_file.exists():
        sid = (json.loads(session_file.read_text()).get("settings") or {}).get("session_id")
    journal_path = folder / "journal.jsonl"
    error = status.get("error")
    obs: tuple[dict[str, Any], ...] = ()
    complete = False
    started = finished = False
    if sid is not None and journal_path.exists():
        try:
            js = JournalState.read(journal_path, str(sid))
            obs = js.observations
            started, finished = js.started is not None, js.finished is not None
            complete = (js.finished is not None and started and len(obs) == len(js.actions) + 1
                        and list(js.finished["final_params"]) == list(obs[-1]["params"]))
        except (ReplayDivergence, ValueError) as e:
            error = error or f"journal unreadable: {e}"
    state = status.get("state")
    if state == FINISHED and not complete:
        status_out = INCOMPLETE  # status says done, the journal disagrees: trust the journal
    elif state in (FAILED, BUDGET_EXHAUSTED):
        status_out = state
    elif finished and complete:
        status_out = FINISHED
    elif started:
        status_out = INCOMPLETE
    else:
        status_out = PENDING
    shots = ShotLedger(folder / "ledger.json", fsync=False).used_shots if (folder / "ledger.json").exists() else 0
    orphans = sum(int(r.get("shots", 0)) for r in read_journal(journal_path) if r.get("event") == "orphaned")
    true_inf = limit = None
    report_path = folder / "report.json"
    if status_out == FINISHED and report_path.exists():
        truth = (json.loads(report_path.read_text()).get("truth") or {}).get("final") or {}
        fid = _num(truth.get("fidelity"))
        true_inf = None if fid is None else 1.0 - fid
        limit = _num(truth.get("coherence_limit"))

    def named(params: Sequence[float]) -> dict[str, float]:
        return dict(zip(PARAMETER_NAMES, (float(x) for x in params), strict=True))

    return QubitRow(
        qubit=qubit, status=status_out, session_id=None if sid is None else str(sid),
        attempts=int(status.get("attempts", 0)),
        final_params=named(obs[-1]["params"]) if obs else None,
        initial_params=named(obs[0]["params"]) if obs else None,
        estimated_infidelity_initial=_num(obs[0].get("infidelity_estimate")) if obs else None,
        estimated_infidelity=_num(obs[-1].get("infidelity_estimate")) if obs else None,
        true_infidelity=true_inf, coherence_limit=limit, env_steps=max(len(obs) - 1, 0), shots=shots,
        orphan_shots=orphans, journal_complete=complete, error=error)


def summarize(sweep_dir: str | os.PathLike[str], qubits: Sequence[int] | None = None) -> SweepSummary:
    """The sweep's summary, computed from its folders only (right after any interruption).

    Args:
        sweep_dir: the sweep folder.
        qubits: the qubits the sweep is meant to cover (those without a folder are listed
            as pending); None: every ``q<k>`` folder found.
    """
    root = Path(sweep_dir)
    found = {int(p.name[1:]) for p in root.glob("q*") if p.is_dir() and p.name[1:].isdigit()}
    wanted = sorted(found | set(qubits or ()))
    rows = tuple(read_row(qubit_folder(root, q), q) for q in wanted)
    budget_path = root / "budget.json"
    budget = json.loads(budget_path.read_text()) if budget_path.exists() else None
    return SweepSummary(root, rows, budget)


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec) if isinstance(x, int | float) else str(x)


def summary_markdown(s: SweepSummary, *, coherence_factor: float = 2.0) -> str:
    """The summary table for a person (one row per qubit)."""
    lines = [f"# Calibration sweep `{s.sweep_dir}`", "",
             "counts: " + ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))
             + f"; shots {s.total_shots}"
             + (f" of a budget of {s.budget.get('total_shots')}" if s.budget and s.budget.get("total_shots") else ""),
             "", "| qubit | status | amplitude | beta_s [s] | detuning_hz [Hz] | est. infidelity (start → end) "
             f"| true infidelity | coherence limit | ratio (≤ {coherence_factor:g}) | shots | journal | attempts |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s.rows:
        p = r.final_params or {}
        ratio = r.limit_ratio
        ok = "" if ratio is None else (" ✓" if ratio <= coherence_factor else " ✗")
        lines.append(
            f"| {r.qubit} | {r.status} | {_fmt(p.get('amplitude'), '.6g')} | {_fmt(p.get('beta_s'), '.4g')} "
            f"| {_fmt(p.get('detuning_hz'), '.6g')} | {_fmt(r.estimated_infidelity_initial)} → "
            f"{_fmt(r.estimated_infidelity)} | {_fmt(r.true_infidelity)} | {_fmt(r.coherence_limit)} "
            f"| {_fmt(ratio, '.2f')}{ok} | {r.shots} | {'complete' if r.journal_complete else 'open'} "
            f"| {r.attempts} |")
    errors = [r for r in s.rows if r.error and r.status != FINISHED]
    if errors:
        lines += ["", "Errors:", ""] + [f"- q{r.qubit}: {r.error}" for r in errors]
    return "\n".join(lines) + "\n"


_CSV_FIELDS = ("qubit", "status", *PARAMETER_NAMES, "estimated_infidelity_initial", "estimated_infidelity",
               "true_infidelity", "coherence_limit", "limit_ratio", "shots", "orphan_shots", "env_steps",
               "journal_complete", "attempts", "error")


def summary_csv(s: SweepSummary) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in s.rows:
        d = r.to_dict()
        w.writerow({**{k: d.get(k) for k in _CSV_FIELDS if k in d},
                    **{k: (r.final_params or {}).get(k) for k in PARAMETER_NAMES}})
    return buf.getvalue()


def write_summary(sweep_dir: str | os.PathLike[str], qubits: Sequence[int] | None = None, *,
                  coherence_factor: float = 2.0, plots: bool = True) -> SweepSummary:
    """Recompute the summary from disk and write summary.json/.md/.csv (+ summary.png)."""
    from .report import _clean

    s = summarize(sweep_dir, qubits)
    root = s.sweep_dir
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "summary.json", json.dumps(_clean(s.to_dict()), indent=2, sort_keys=True) + "\n",
                 fsync=False)
    write_atomic(root / "summary.md", summary_markdown(s, coherence_factor=coherence_factor), fsync=False)
    write_atomic(root / "summary.csv", summary_csv(s), fsync=False)
    if plots and s.rows:
        _plot(s, root / "summary.png", coherence_factor)
    return s


_COLORS = {FINISHED: "tab:green", FAILED: "tab:red", BUDGET_EXHAUSTED: "tab:orange", INCOMPLETE: "tab:gray",
           PENDING: "lightgray"}


def _plot(s: SweepSummary, path: Path, coherence_factor: float) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    q = np.array([r.qubit for r in s.rows])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))

    def series(vals: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in vals], dtype=float)

    a1.semilogy(q - 0.15, series([r.estimated_infidelity_initial for r in s.rows]), "v", color="tab:gray",
                label="estimated, start")
    a1.semilogy(q, series([r.estimated_infidelity for r in s.rows]), "o", color="tab:blue", label="estimated, end")
    a1.semilogy(q + 0.15, series([r.true_infidelity for r in s.rows]), "s", color="tab:green",
                label="true, end (simulated)")
    lim = series([r.coherence_limit for r in s.rows])
    if np.isfinite(lim).any():
        a1.hlines(lim, q - 0.4, q + 0.4, colors="k", lw=1, label="coherence limit")
        a1.hlines(coherence_factor * lim, q - 0.4, q + 0.4, colors="k", lw=1, linestyles="--",
                  label=f"{coherence_factor:g}× limit")
    a1.set_xlabel("qubit")
    a1.set_ylabel("X-gate infidelity")
    a1.set_xticks(q)
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=7)
    a2.bar(q, [r.shots for r in s.rows], color=[_COLORS.get(r.status, "k") for r in s.rows])
    for status, color in _COLORS.items():
        if any(r.status == status for r in s.rows):
            a2.bar([], [], color=color, label=status)
    a2.set_xlabel("qubit")
    a2.set_ylabel("shots (ledger)")
    a2.set_xticks(q)
    a2.legend(fontsize=7)
    a2.set_title(f"total {s.total_shots} shots"
                 + (f" / budget {s.budget['total_shots']}" if s.budget and s.budget.get("total_shots") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = [
    "BUDGET_EXHAUSTED", "FAILED", "FINISHED", "INCOMPLETE", "PENDING", "RUNNING",
    "QubitJob", "QubitOutcome", "QubitRow", "SweepBudget", "SweepSummary", "lab_start", "qubit_folder",
    "qubit_seed", "read_row", "read_status", "run_qubit", "sampled_qubit_backend", "sampled_qubit_params",
    "summarize", "summary_csv", "summary_markdown", "write_summary",
]
