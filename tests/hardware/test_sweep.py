"""Calibration sweeps: one session per simulated qubit under a global shot budget, failures
isolated, the summary recomputed from disk, the parameter store feeding the next sweep,
and an interrupted sweep finishing only what was left (a real SIGKILL of the CLI)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware import sweep as sw
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.params_store import ParamsStore
from pulsecal.hardware.replay import simulated_truth

GATE_S = 20e-9


# -- simulated qubits and the budget ------------------------------------------------------------


def test_each_qubit_is_its_own_deterministic_device() -> None:
    assert sw.qubit_seed(0, 3) == sw.qubit_seed(0, 3) != sw.qubit_seed(0, 4) != sw.qubit_seed(1, 3)
    a, b = sw.sampled_qubit_params(0, 0), sw.sampled_qubit_params(0, 1)
    assert a == sw.sampled_qubit_params(0, 0) and a.amplitude_scale != b.amplitude_scale
    assert a.transmon.detuning_hz != b.transmon.detuning_hz
    start = sw.lab_start(a, GATE_S)
    assert start.detuning_hz == 0.0  # the lab does not know the hidden detuning
    with pytest.raises(ValueError, match=r"qubit=-1: allowed an integer >= 0"):
        sw.qubit_seed(0, -1)


def test_budget_grants_never_exceed_the_total_and_settle_hands_back(tmp_path: Path) -> None:
    b = sw.SweepBudget(tmp_path / "budget.json", 1000)
    assert b.grant(0, 600) == 600
    assert b.grant(0, 900) == 600  # a resume gets its first grant again
    assert b.grant(1, 600) == 400  # what is left
    assert b.grant(2, 600, minimum=100) == 0  # spent: not started, nothing recorded
    b.settle(0, 450)
    assert b.grant(2, 600, minimum=100) == 150
    data = b.read()
    assert data["granted_shots"] == 1000 and data["used_shots"] == 450 and "2" in data["qubits"]
    with pytest.raises(ValueError, match=r"total_shots=1000: allowed the same budget"):
        sw.SweepBudget(tmp_path / "budget.json", 2000).grant(5, 10)
    with pytest.raises(ValueError, match=r"SweepBudget.total_shots=0: allowed an integer >= 1 or None"):
        sw.SweepBudget(tmp_path / "b2.json", 0)


def _grabber(path: str, first: int, out: mp.Queue) -> None:
    b = sw.SweepBudget(path, 5000)
    out.put([b.grant(q, 300) for q in range(first, first + 10)])


def test_parallel_grants_share_one_total(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")  # the test module is not importable by name in a spawned child
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_grabber, args=(str(tmp_path / "budget.json"), 10 * k, q)) for k in range(3)]
    for p in procs:
        p.start()
    grants = [g for _ in procs for g in q.get(timeout=60)]
    for p in procs:
        p.join(60)
    assert sum(grants) == 5000 and sorted(grants).count(300) == 16 and sorted(grants).count(0) == 13


# -- run_qubit: failures stay with their qubit -----------------------------------------------------


def _job(tmp_path: Path, qubit: int, **kw: object) -> sw.QubitJob:
    params = sw.sampled_qubit_params(5, qubit)
    start = tuple(sw.lab_start(params, GATE_S, beta_rel=0.4).as_array())
    args: dict[str, object] = {"qubit": qubit, "sweep_dir": tmp_path / "sweep", "sweep_name": "t",
                               "seed": sw.qubit_seed(5, qubit), "default_start": start, "max_steps": 2,
                               "env": {"shots_per_probe": 50, "shot_budget": 100_000},
                               "total_shots": 20_000, "params_store": tmp_path / "store.yaml"}
    args.update(kw)
    return sw.QubitJob(**args)  # type: ignore[arg-type]


def _run(job: sw.QubitJob, *, fault_rate: float = 0.0, broken: bool = False) -> sw.QubitOutcome:
    def make_backend(attempt: int):
        if broken:
            raise RuntimeError("control stack offline")
        return sw.sampled_qubit_backend(seed=5, qubit=job.qubit, fault_rate=fault_rate, fault_stream=attempt)

    return sw.run_qubit(job, make_backend=make_backend, make_policy=ScriptedPolicy,
                        truth=lambda be: simulated_truth(be, GATE_S), plots=False, fsync=False,
                        sleep=lambda s: None)


def test_a_failed_qubit_does_not_stop_the_others_and_is_resumed_later(tmp_path: Path) -> None:
    outcomes = [_run(_job(tmp_path, q), broken=(q == 1)) for q in range(3)]
    assert [o.state for o in outcomes] == ["finished", "failed", "finished"]
    assert "control stack offline" in (outcomes[1].error or "")
    s = sw.write_summary(tmp_path / "sweep", [0, 1, 2, 3], plots=False)
    assert [r.status for r in s.rows] == ["finished", "failed", "finished", "pending"]
    assert "| 1 | failed |" in (tmp_path / "sweep" / "summary.md").read_text()
    # The next run skips the finished ones and runs the failed one.
    again = [_run(_job(tmp_path, q)) for q in range(3)]
    assert [(o.state, o.skipped) for o in again] == [("finished", True), ("finished", False), ("finished", True)]
    assert again[1].attempts == 2  # the failed attempt stays on record
    assert ParamsStore(tmp_path / "store.yaml").qubits() == (0, 1, 2)


def test_a_lost_job_is_resumed_from_the_journal_in_the_same_run(tmp_path: Path) -> None:
    # 40 % faults lose some job after every submit attempt; the qubit resumes on a fresh backend.
    job = _job(tmp_path, 0, max_steps=4, attempts=6)
    out = _run(job, fault_rate=0.4)
    assert out.state == "finished" and out.attempts > 1, out
    # The earlier attempts' backend_failed stops do not outlive the attempt that finished:
    # the qubit (and so its exit code) and its status name no stop.
    assert out.stop_reason is None, out
    assert json.loads((job.folder / "status.json").read_text())["stop_reason"] is None
    events = [r["event"] for r in read_journal(job.folder / "journal.jsonl")]
    assert "session_resumed" in events and events.count("session_finished") == 1
    clean = _run(_job(tmp_path / "clean", 0, max_steps=4))
    assert out.result is not None and clean.result is not None
    assert out.result.final_params == clean.result.final_params  # faults change nothing seen


def test_budget_spent_qubits_are_not_started(tmp_path: Path) -> None:
    # 2 steps x 6 probes x 50 shots = 900 a session; the request is 900 x 1.1 + 3 x 300 = 1890.
    # q0 and q1 are granted 1890 and 1600 and hand back all but 900; 700 < 900 is left.
    outs = [_run(_job(tmp_path, q, total_shots=2500, params_store=None)) for q in range(4)]
    assert [o.state for o in outs] == ["finished", "finished", "budget_exhausted", "budget_exhausted"]
    s = sw.summarize(tmp_path / "sweep")
    assert s.total_shots == 1800 and not (tmp_path / "sweep" / "q2" / "journal.jsonl").exists()
    assert [r.status for r in s.rows] == ["finished", "finished", "budget_exhausted", "budget_exhausted"]
    assert s.budget is not None and s.budget["used_shots"] == 1800 and s.budget["granted_shots"] == 1800


def test_a_bad_store_entry_fails_its_qubit_only_and_the_summary_is_written(tmp_path: Path) -> None:
    store = ParamsStore(tmp_path / "store.yaml", fsync=False)
    for q in range(3):
        start = dict(zip(("amplitude", "beta_s", "detuning_hz", "phase"), _job(tmp_path, q).default_start, strict=True))
        store.record(q, start, provenance={"session_id": f"old-q{q}", "journal": "j"})
    lines = store.path.read_text().splitlines()
    n = next(i for i in range(lines.index("  1:"), len(lines)) if "amplitude: " in lines[i])
    lines[n] = re.sub(r"amplitude: [^,]+,", "amplitude: '0.5x',", lines[n])
    store.path.write_text("\n".join(lines) + "\n")

    outcomes = [_run(_job(tmp_path, q)) for q in range(3)]
    assert [o.state for o in outcomes] == ["finished", "failed", "finished"], [o.error for o in outcomes]
    error = outcomes[1].error or ""
    # q0's new version moved q1's entry down; the bad value is kept as it was written.
    n = next(i for i, line in enumerate(store.path.read_text().splitlines()) if "0.5x" in line)
    assert error.startswith(f"{store.path}:{n + 1}: qubit 1: versions[0]: params.amplitude='0.5x': allowed a "
                            "finite number") and "\n" not in error
    # Not started: no session, no grant; the others started from the store.
    q1 = tmp_path / "sweep" / "q1"
    assert not (q1 / "journal.jsonl").exists() and "1" not in sw.SweepBudget(tmp_path / "sweep" / "budget.json",
                                                                               20_000).read()["qubits"]
    assert json.loads((tmp_path / "sweep" / "q0" / "status.json").read_text())["start_source"] == "params_store v1"
    s = sw.write_summary(tmp_path / "sweep", [0, 1, 2], plots=False)
    assert [r.status for r in s.rows] == ["finished", "failed", "finished"]
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert f"- q1: {store.path}:{n + 1}: qubit 1: versions[0]: params.amplitude='0.5x'" in md
    assert [c.version for c in store.history(0)] == [1, 2] and [c.version for c in store.history(2)] == [1, 2]


def test_a_finished_session_the_store_cannot_record_is_recorded_on_the_next_run(tmp_path: Path) -> None:
    store_path = tmp_path / "store.yaml"
    store_path.write_text("format: pulsecal.params-store/1\nqubits: {0: [\n")  # a syntax error on line 3
    job = _job(tmp_path, 0, start_from_store=False)
    out = _run(job)
    assert out.state == "failed" and out.result is not None
    assert (out.error or "").startswith(f"calibrated, but not recorded in the parameter store: {store_path}:3: "
                                        "YAML syntax error"), out.error
    shots = ShotLedger(job.folder / "ledger.json").used_shots
    assert shots > 0 and sw.summarize(tmp_path / "sweep").rows[0].status == "failed"
    store_path.unlink()  # fixed (here: started afresh)
    again = _run(job)
    assert (again.state, again.skipped, again.error) == ("finished", False, None)
    assert ShotLedger(job.folder / "ledger.json").used_shots == shots  # replayed from the journal, no shot run
    events = [r["event"] for r in read_journal(job.folder / "journal.jsonl")]
    assert events.count("session_finished") == 1 and events.count("submitting") == shots // 50
    cal = ParamsStore(store_path).latest(0)
    assert cal is not None and cal.params == dict(zip(("amplitude", "beta_s", "detuning_hz", "phase"),
                                                      out.result.final_params.as_array().tolist(), strict=True))


# -- the acceptance sweep ---------------------------------------------------------------------------


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.replay  # noqa: F401  (registers the schemas)

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        return compose(config_name="replay", overrides=overrides)


def _sweep(tmp_path: Path, name: str, qubits: range, *extra: str) -> list[sw.QubitOutcome]:
    from pulsecal.agents.pipelines.replay import replay

    out = []
    for q in qubits:  # what the basic launcher does, job by job, in this process
        cfg = _compose(["replay_experiment=sweep_8q", f"qubit={q}", f"sweep.name={name}",
                        f"sweep.dir={tmp_path / name}", f"sweep.params_store={tmp_path / 'params.yaml'}",
                        "plots=false", *extra])
        out.append(replay(cfg))
    return out


def test_eight_qubit_sweep_with_faults_reaches_the_coherence_limit(tmp_path: Path) -> None:
    """Acceptance: 8 simulated qubits with their own hidden errors, 20 % injected faults,
    the scripted policy: every qubit below 2x its coherence limit, journals complete, the
    summary equal to what the sessions report, the global budget respected; the next sweep
    starts from the parameter store."""
    outcomes = _sweep(tmp_path, "dev", range(8))
    assert all(o.state == "finished" for o in outcomes), [(o.qubit, o.error) for o in outcomes]
    s = sw.write_summary(tmp_path / "dev", plots=True)
    print()
    for r in s.rows:
        print(f"q{r.qubit}: 1-F {r.true_infidelity:.3g}, coherence limit {r.coherence_limit:.3g}, "
              f"ratio {r.limit_ratio:.3f}, shots {r.shots}, attempts {r.attempts}")
    assert [r.qubit for r in s.rows] == list(range(8))
    ratios = [r.limit_ratio for r in s.rows]
    assert all(x is not None and x < 2.0 for x in ratios), ratios
    assert all(r.status == "finished" and r.journal_complete for r in s.rows)
    assert len({round(r.coherence_limit or 0, 12) for r in s.rows}) == 8  # 8 different devices
    # The table is what the sessions themselves wrote.
    for r, o in zip(s.rows, outcomes, strict=True):
        assert o.result is not None
        assert r.final_params == dict(zip(("amplitude", "beta_s", "detuning_hz", "phase"),
                                          o.result.final_params.as_array().tolist(), strict=True))
        assert r.shots == o.result.ledger_shots == ShotLedger(tmp_path / "dev" / f"q{r.qubit}" / "ledger.json").used_shots
        rep = json.loads((tmp_path / "dev" / f"q{r.qubit}" / "report.json").read_text())
        assert r.true_infidelity == pytest.approx(1 - rep["truth"]["final"]["fidelity"])
    on_disk = json.loads((tmp_path / "dev" / "summary.json").read_text())
    assert on_disk["counts"] == {"finished": 8} and on_disk["total_shots"] == s.total_shots
    assert s.total_shots <= 170_000 and on_disk["budget"]["used_shots"] == s.total_shots
    assert (tmp_path / "dev" / "summary.png").stat().st_size > 0
    assert len((tmp_path / "dev" / "summary.csv").read_text().splitlines()) == 9

    store = ParamsStore(tmp_path / "params.yaml")
    assert store.qubits() == tuple(range(8))
    v1 = store.latest(0)
    assert v1 is not None and v1.provenance["policy"]["kind"] == "scripted"
    assert v1.provenance["journal"].endswith("dev/q0/journal.jsonl") and v1.provenance["backend"]["fault_rate"] == 0.2
    # The next sweep starts every qubit from the store and adds version 2.
    _sweep(tmp_path, "dev2", range(2), "max_steps=2")
    st = json.loads((tmp_path / "dev2" / "q0" / "status.json").read_text())
    assert st["start_source"] == "params_store v1"
    first = json.loads((tmp_path / "dev2" / "q0" / "session.json").read_text())["settings"]["initial_params"]
    assert first == pytest.approx(list(v1.as_tuple()))
    assert [c.version for c in store.history(0)] == [1, 2] and store.latest(5).version == 1  # type: ignore[union-attr]


def test_interrupted_sweep_finishes_only_the_remaining_qubits(tmp_path: Path) -> None:
    """SIGKILL the CLI sweep (basic launcher, qubit by qubit) in the middle of a qubit, run
    the same command again: finished qubits are skipped untouched, the killed one resumes
    from its journal, the rest start; the results equal an uninterrupted sweep's."""
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsecal.scripts.replay"]
    args = [*cmd, "-m", "replay_experiment=sweep_8q", "hydra/launcher=basic", "plots=false", "sweep.plots=false",
            "sweep.params_store=null", "qubit=0,1,2,3", "sweep.qubits=[0,1,2,3]",
            "max_steps=4", "env.shots_per_probe=50"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    root = tmp_path / "runs" / "sweep" / "device8"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    victim = root / "q2" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if victim.exists() and sum(1 for r in read_journal(victim) if r.get("event") == "observation") >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    before = {q: (root / f"q{q}" / "journal.jsonl").read_bytes() for q in (0, 1)}
    cut = sw.summarize(root, [0, 1, 2, 3])
    assert [r.status for r in cut.rows] == ["finished", "finished", "incomplete", "pending"], cut.rows
    assert not cut.rows[2].journal_complete

    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "qubit 0: skipped, finished" in again.stdout and "qubit 1: skipped, finished" in again.stdout
    assert {q: (root / f"q{q}" / "journal.jsonl").read_bytes() for q in (0, 1)} == before
    events2 = [r["event"] for r in read_journal(root / "q2" / "journal.jsonl")]
    assert "session_resumed" in events2 and events2.count("session_finished") == 1
    assert "session_resumed" not in [r["event"] for r in read_journal(root / "q3" / "journal.jsonl")]
    final = json.loads((root / "summary.json").read_text())
    assert final["counts"] == {"finished": 4}
    assert all(q["journal_complete"] for q in final["qubits"])

    # Same results as a sweep nobody interrupted.
    _sweep(tmp_path, "ref", range(4), "max_steps=4", "env.shots_per_probe=50", "sweep.params_store=null")
    ref = sw.summarize(tmp_path / "ref")
    for a, b in zip(final["qubits"], ref.rows, strict=True):
        assert np.allclose([a["final_params"][k] for k in ("amplitude", "beta_s", "detuning_hz")],
                           [b.final_params[k] for k in ("amplitude", "beta_s", "detuning_hz")], rtol=0, atol=0)  # type: ignore[index]


def test_a_failed_verdict_keeps_the_stores_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    first = _run(_job(tmp_path / "a", 0, params_store=tmp_path / "store.yaml"))
    assert first.state == "finished"
    before = ParamsStore(tmp_path / "store.yaml").latest(0)
    assert before is not None
    real = sw.run_session

    def failing(*args: object, **kwargs: object) -> object:
        res = real(*args, **kwargs)  # type: ignore[arg-type]
        verdict = {"status": "failed", "reason": "decay_faster_than_coherence"}
        return dataclasses.replace(res, report={**res.report, "verdict": verdict})

    monkeypatch.setattr(sw, "run_session", failing)
    second = _run(_job(tmp_path / "b", 0, params_store=tmp_path / "store.yaml", seed=sw.qubit_seed(6, 0)))
    assert "verdict failed: decay_faster_than_coherence" in (second.error or "")
    after = ParamsStore(tmp_path / "store.yaml").latest(0)
    assert after is not None and after.version == before.version and after.as_tuple() == before.as_tuple()
    _run(_job(tmp_path / "b", 2, params_store=tmp_path / "store.yaml"))  # q2 also gets a failed verdict
    monkeypatch.setattr(sw, "run_session", real)
    _run(_job(tmp_path / "b", 1, params_store=tmp_path / "store.yaml"))
    md = sw.summary_markdown(sw.summarize(tmp_path / "b" / "sweep", [0, 1, 2]))
    table = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| ") and "qubit" not in ln]
    assert table == ["0", "2", "1"] and "q2: verdict failed" in md  # failed verdicts listed first
