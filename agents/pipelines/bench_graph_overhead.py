"""The calibration graph's own time per job on qibolab's ``dummy`` platform (instant execution).

    python -m pulsecal.agents.pipelines.bench_graph_overhead --qubits 2 --repeats 3

A lab's calibration tool can spend many times the pulse time on itself (a qibocal issue
reports 141 s for 9 s of pulses). Here the same graph a lab would
run (idle, spectroscopy, Rabi, Ramsey per qubit, ``bringup_emulator``'s settings) runs on
qibolab's ``dummy`` platform through ``hardware.graph_device.BackendGraphDevice``, with
the run folder's journal, ledgers and store as ``pulsecal-calibrate`` writes them (fsynced),
and every call on the way is timed exclusively (a category's time excludes the categories
it calls):

| category | what |
|---|---|
| platform | qibolab's ``platform.execute`` (the dummy's instant execution: excluded) |
| compile | IR → qibolab ``PulseSequence`` (``QibolabBackend.compile`` / ``validate``) |
| guard | the envelope checks, the artifact re-check, the clearance (``GuardedBackend``) |
| device | envs sequence → IR program, job keys, counts (``BackendDevice.run`` itself) |
| ledger | shot reservations and confirmations (both ledgers, written to disk) |
| journal | the job journal and the graph journal (written to disk) |
| experiment | building the node's sequences and fitting its data |
| store | the versioned parameter store |
| scheduler | groups, check_state, diagnose, outcomes |
| fsync | ``os.fsync`` of the ledgers, journals and store (the disk's wait, out of their categories) |

The dummy returns random outcomes, so the fits fail and nodes retry and diagnose: more
jobs per node than a good run, the same work per job. Per job is per ``platform.execute``.
The fsync wait is the disk's, not the code's: it is printed with its count per job and its
median latency, so a run on a busy disk can be told from a slower graph.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulsecal.agents.graph import journal as graph_journal
from pulsecal.agents.graph import node as graph_node
from pulsecal.agents.graph import scheduler as graph_scheduler
from pulsecal.agents.graph import store as graph_store
from pulsecal.agents.graph.graph import graph_from_definition
from pulsecal.hardware import device as hw_device
from pulsecal.hardware import guard as hw_guard
from pulsecal.hardware import journal as hw_journal
from pulsecal.hardware import ledger as hw_ledger
from pulsecal.hardware.graph_device import BackendGraphDevice

CATEGORIES = ("platform", "compile", "guard", "device", "ledger", "journal", "experiment", "store", "scheduler",
              "fsync")
GATE = {"_target_": "pulsecal.envs.drag.DragGate", "duration_s": 40e-9}


class Timers:
    """Exclusive wall time per category: a call's time minus the timed calls inside it."""

    def __init__(self) -> None:
        self.self_s = dict.fromkeys(CATEGORIES, 0.0)
        self.calls = dict.fromkeys(CATEGORIES, 0)
        self._stack: list[float] = []  # time spent in timed children of each open call
        self.samples: dict[str, list[float]] = {c: [] for c in CATEGORIES}

    def wrap(self, category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                children = self._stack.pop()
                self.self_s[category] += elapsed - children
                self.calls[category] += 1
                self.samples[category].append(elapsed)
                if self._stack:
                    self._stack[-1] += elapsed
        return timed


def graph_definition(qubits: list[str]) -> dict[str, Any]:
    def exp(target: str, **kw: Any) -> dict[str, Any]:
        return {"_target_": target, **kw}

    lib = "pulsecal.agents.graph.experiments"
    return {"crosstalk_distance": 0, "qubits": qubits, "qubit_nodes": [
        {"name": "idle", "experiment": exp("pulsecal.agents.graph.checks.IdlePopulation", max_excited=0.99)},
        {"name": "spectroscopy", "depends_on": ["idle"], "retries": 2,
         "experiment": exp(f"{lib}.spectroscopy.Spectroscopy", duration_s=100e-9, window_hz=30e6, points=31,
                           gate=GATE)},
        {"name": "rabi", "depends_on": ["spectroscopy"], "retries": 2,
         "experiment": exp(f"{lib}.rabi.Rabi", points=21, gate=GATE)},
        {"name": "ramsey", "depends_on": ["rabi"], "retries": 1,
         "experiment": exp(f"{lib}.ramsey.Ramsey", max_delay_s=2.5e-6, points=21, cheap_max_delay_s=1e-6,
                           cheap_points=11, detuning_hz=1e6, gate=GATE)},
    ]}


def _patch(timers: Timers, backend: Any) -> list[tuple[Any, str, Any]]:
    """Wrap every timed call; returns what to restore."""
    undo: list[tuple[Any, str, Any]] = []

    def put(owner: Any, name: str, category: str) -> None:
        old = getattr(owner, name)
        undo.append((owner, name, owner.__dict__[name] if name in vars(owner) else None))
        setattr(owner, name, timers.wrap(category, old))

    put(backend.platform, "execute", "platform")
    put(backend, "compile", "compile")
    put(backend, "validate", "compile")
    for name in ("check", "submit", "result", "find"):
        put(hw_guard.GuardedBackend, name, "guard")
    put(hw_device.BackendDevice, "run", "device")
    for name in ("reserve", "charge", "confirm", "release"):
        put(hw_ledger.ShotLedger, name, "ledger")
    put(hw_journal.Journal, "append", "journal")
    put(graph_journal.GraphJournal, "append", "journal")
    put(graph_node.Node, "calibrate", "experiment")
    put(graph_node.Node, "check_data", "experiment")
    put(graph_store.ParameterStore, "record", "store")
    put(graph_scheduler.Scheduler, "run", "scheduler")
    put(os, "fsync", "fsync")
    return undo


def _unpatch(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, name, old in reversed(undo):
        if old is None:
            delattr(owner, name)
        else:
            setattr(owner, name, old)


def run_once(n_qubits: int, folder: Path, seed: int) -> tuple[Timers, int, int]:
    """One graph run on the dummy platform; (timers, jobs, nodes)."""
    from pulsecal.hardware.adapters.qibolab import QibolabBackend

    backend = QibolabBackend("dummy", qubits=list(range(n_qubits)))
    backend.platform.connect()  # outside the timing: instruments connect once per session
    backend._connected = True
    device = BackendGraphDevice(backend, ledger=hw_ledger.ShotLedger(folder / "jobs_ledger.json"),
                                journal=hw_journal.Journal(folder / "jobs.jsonl"), session_id=f"bench{seed}")
    qubits = list(device.qubits)
    graph = graph_from_definition(graph_definition(qubits), qubits, [])
    store = graph_store.ParameterStore(folder / "store.json")
    priors: dict[str, float] = {}
    for q in qubits:
        priors[f"{q}.frequency_hz"] = device.params.model.mode(q).frame_hz
        priors[f"{q}.pi_amplitude"] = 0.4
    store.record("priors", priors, experiment="bench", experiment_id="priors", run_id="bench")
    sched = graph_scheduler.Scheduler(graph, device, store, qubits=qubits, edges=[],
                                      journal=graph_journal.GraphJournal(folder), ledger=hw_ledger.ShotLedger(
                                          folder / "ledger.json"), seed=seed, run_id="bench")
    timers = Timers()
    undo = _patch(timers, backend)
    try:
        sched.run()
    finally:
        _unpatch(undo)
    return timers, timers.calls["platform"], len(graph)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qubits", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not 1 <= args.qubits <= 5:
        raise SystemExit(f"--qubits={args.qubits}: allowed 1 to 5 (the dummy platform's qubits)")
    if not 1 <= args.repeats <= 20:
        raise SystemExit(f"--repeats={args.repeats}: allowed 1 to 20")
    total = dict.fromkeys(CATEGORIES, 0.0)
    jobs = 0
    nodes = 0
    fsyncs: list[float] = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            timers, n_jobs, nodes = run_once(args.qubits, Path(tmp), r)
        for c in CATEGORIES:
            total[c] += timers.self_s[c]
        jobs += n_jobs
        fsyncs += timers.samples["fsync"]
    own = sum(v for c, v in total.items() if c != "platform")
    print(f"graph overhead on qibolab dummy: {args.repeats} runs x {nodes} nodes on {args.qubits} qubits, "
          f"{jobs} jobs")
    print(f"{'category':<12}{'ms/job':>9}{'share':>8}")
    for c in CATEGORIES:
        share = "" if c == "platform" else f"{100 * total[c] / own:7.1f}%"
        print(f"{c:<12}{1e3 * total[c] / jobs:9.3f}{share:>8}" + ("  (excluded)" if c == "platform" else ""))
    per_job_ms = 1e3 * own / jobs
    fsync_ms = 1e3 * statistics.median(fsyncs) if fsyncs else 0.0
    print(f"{'graph own':<12}{per_job_ms:9.3f}   target <= 5 ms per job: {'met' if per_job_ms <= 5 else 'NOT met'}")
    print(f"fsync: {len(fsyncs) / jobs:.2f} per job, median {fsync_ms:.3f} ms each; "
          f"graph own without the fsync wait {1e3 * (own - total['fsync']) / jobs:.3f} ms/job")
    return {"jobs": jobs, "per_job_ms": per_job_ms, "ms_per_job": {c: 1e3 * v / jobs for c, v in total.items()},
            "fsync_per_job": len(fsyncs) / jobs, "fsync_median_ms": fsync_ms}


if __name__ == "__main__":
    main()
