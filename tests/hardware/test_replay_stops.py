"""Normal ends of a session that are not its last step: the shot budget, a program the
safety envelope refuses, an action outside the box, a job lost beyond the retries. Each
is journaled (``session_stopped``), reported (report.json/report.md) and ends the console
script with one line and its exit code; a rerun of a terminal stop reports it again
without running a job, a lost job's session resumes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hw_helpers import FakeClock, OutOfBoxPolicy

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.backend import BackendError
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.policy import ActionOutOfRange
from pulsecal.hardware.replay import (
    ReplaySettings,
    default_limits,
    miscalibrated_start,
    run_session,
    simulated_backend,
)

GATE_S = 20e-9


def _settings(max_steps: int = 3, **changes: object) -> ReplaySettings:
    b = simulated_backend(seed=3)
    start = miscalibrated_start(b.device.current_transmon(), GATE_S, amplitude_rel=0.04, beta_rel=0.4,
                                detuning_hz=0.5e6)
    return ReplaySettings("s1", 3, tuple(start.as_array()), max_steps=max_steps,  # type: ignore[arg-type]
                          env={"shots_per_probe": 50, "shot_budget": 100_000}, **changes)  # type: ignore[arg-type]


def _run(folder: Path, settings: ReplaySettings, policy: object = None, **kw: object):
    backend = kw.pop("backend", None) or simulated_backend(seed=settings.seed, idempotent_submit=False)
    clock = FakeClock()
    result = run_session(backend, policy or ScriptedPolicy(), folder, settings, clock=clock,  # type: ignore[arg-type]
                         sleep=clock.sleep, fsync=False, plots=False, **kw)  # type: ignore[arg-type]
    return result, backend


def _events(folder: Path) -> list[dict]:
    return list(read_journal(folder / "journal.jsonl"))


def _check_stopped(folder: Path, reason: str, env_step: int) -> dict:
    """The journal's one stop record, and the report naming the same stop."""
    recs = _events(folder)
    stops = [r for r in recs if r["event"] == "session_stopped"]
    assert len(stops) == 1 and stops[0]["reason"] == reason and stops[0]["env_step"] == env_step
    assert not any(r["event"] == "session_finished" for r in recs)
    rep = json.loads((folder / "report.json").read_text())
    assert rep["outcome"] == reason and rep["stop"]["reason"] == reason and rep["stop"]["env_step"] == env_step
    assert rep["stop"]["detail"] == stops[0]["detail"]
    assert f"stopped: {reason}" in (folder / "report.md").read_text()
    return stops[0]


def test_budget_exhausted_is_journaled_reported_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    settings = _settings(max_steps=6, budget_shots=900)  # reset + 2 steps of 300 shots fit
    result, backend = _run(tmp_path / "s", settings)
    assert result.stop is not None and result.stop.reason == "budget_exhausted" and result.stop.terminal
    assert len(result.steps) == 3 and result.report["env_steps"] == 2
    stop = _check_stopped(tmp_path / "s", "budget_exhausted", 3)
    assert "shot_budget=1200, allowed <= 900" in stop["detail"]
    assert backend.executed_shots == ShotLedger(tmp_path / "s" / "ledger.json").used_shots == 900
    n_before = len(_events(tmp_path / "s"))

    again, backend2 = _run(tmp_path / "s", settings)
    assert again.resumed and again.stop == result.stop and again.final_params == result.final_params
    # Nothing ran and nothing was refused again: only the resume's own record was added.
    assert backend2.stats.executions == 0
    assert [r["event"] for r in _events(tmp_path / "s")[n_before:]] == ["session_resumed"]
    _check_stopped(tmp_path / "s", "budget_exhausted", 3)


def test_safety_refusal_at_the_first_measurement_still_writes_a_report(tmp_path: Path) -> None:
    settings = _settings()
    backend = simulated_backend(seed=settings.seed)
    limits = default_limits(backend, 0, max_amplitude=0.05)
    result, _ = _run(tmp_path / "s", settings, backend=backend, limits=limits)
    assert result.stop is not None and result.stop.reason == "safety_refused" and result.steps == ()
    stop = _check_stopped(tmp_path / "s", "safety_refused", 0)
    assert "max_amplitude" in stop["detail"] and "allowed <= 0.05" in stop["detail"]
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["env_steps"] == 0 and rep["shots_used"] == 0 and rep["final_params"] == rep["initial_params"]
    assert rep["estimated_infidelity_final"] is None  # not measured
    refused = sum(r["event"] == "refused" for r in _events(tmp_path / "s"))

    again, _ = _run(tmp_path / "s", settings, backend=simulated_backend(seed=settings.seed), limits=limits)
    assert again.stop == result.stop
    assert sum(r["event"] == "refused" for r in _events(tmp_path / "s")) == refused


def test_an_action_outside_the_box_stops_the_session_unapplied(tmp_path: Path) -> None:
    settings = _settings(max_steps=4)
    result, _ = _run(tmp_path / "s", settings, policy=OutOfBoxPolicy(at=2))
    assert result.stop is not None and result.stop.reason == "action_out_of_range"
    assert "allowed finite values in [-1, 1]" in result.stop.detail
    _check_stopped(tmp_path / "s", "action_out_of_range", 2)
    # Step 1's action was applied and journaled; step 2's never was.
    assert [r["env_step"] for r in _events(tmp_path / "s") if r["event"] == "action"] == [1]
    assert len(result.steps) == 2

    again, backend = _run(tmp_path / "s", settings, policy=OutOfBoxPolicy(at=2))
    assert again.stop == result.stop and backend.stats.executions == 0


def test_a_policy_that_refuses_to_act_is_an_action_stop(tmp_path: Path) -> None:
    from pulsecal.agents.policies.onnx import OnnxPolicy
    from pulsecal.agents.runner import ActionError

    class Refusing:
        recurrent = False

        def act(self, obs: np.ndarray) -> np.ndarray:
            raise ActionError("graph returned a NaN/inf action; refusing to act")

    onnx = OnnxPolicy.__new__(OnnxPolicy)  # the runner alone, without an exported folder
    onnx.policy = Refusing()  # type: ignore[assignment]
    with pytest.raises(ActionOutOfRange, match="NaN/inf action"):
        onnx.act(np.zeros(7, dtype=np.float32), None)


def test_a_lost_job_stops_resumably_and_the_rerun_finishes(tmp_path: Path) -> None:
    settings = _settings()
    backend = simulated_backend(seed=settings.seed)
    real_submit = backend.submit
    calls = {"n": 0}

    def submit(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] > 6:  # the reset's six jobs go through, then the backend rejects every job
            raise BackendError("queue rejected the job")
        return real_submit(*args, **kw)

    backend.submit = submit  # type: ignore[method-assign]
    result, _ = _run(tmp_path / "s", settings, backend=backend)
    assert result.stop is not None and result.stop.reason == "backend_failed" and not result.stop.terminal
    _check_stopped(tmp_path / "s", "backend_failed", 1)
    assert "rerun the same command to resume" in (tmp_path / "s" / "report.md").read_text()

    again, _ = _run(tmp_path / "s", settings)
    assert again.resumed and again.stop is None and len(again.steps) == 4
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["outcome"] == "finished" and rep["stop"] is None
    assert sum(r["event"] == "session_finished" for r in _events(tmp_path / "s")) == 1


# -- the console script: one line, the documented exit code ----------------------------------------


def _console(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> int:
    from pulsecal.scripts import replay as script

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["pulsecal-replay", *args, "plots=false"])
    try:
        script.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.mark.parametrize(("args", "code", "reason"), [
    (["budget_shots=900", "max_steps=4"], 4, "budget_exhausted"),
    (["+backend.limits.max_amplitude=0.05"], 5, "safety_refused"),
    (["policy._target_=hw_helpers.OutOfBoxPolicy", "max_steps=4"], 6, "action_out_of_range"),
])
def test_console_prints_one_line_and_exits_with_the_stop_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], args: list[str],
                                                              code: int, reason: str) -> None:
    from pulsecal.agents.pipelines.replay_outcome import EXIT_CODES

    assert EXIT_CODES[reason] == code
    assert _console(monkeypatch, tmp_path, "session_id=x", *args) == code
    err = _outcome_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("session x stopped: ") and "Traceback" not in err[0]
    assert json.loads((tmp_path / "runs/replay/x/report.json").read_text())["outcome"] == reason
    # The same command again: the recorded stop, the same code, one line.
    assert _console(monkeypatch, tmp_path, "session_id=x", *args) == code
    assert len(_outcome_lines(capsys.readouterr().err)) == 1


# The session's progress lines (hardware.progress, plain when piped) share stderr with the
# outcome line; everything else on stderr is what these tests count.
_PROGRESS_LINE = re.compile(r"^\S+: step \d+/\d+, shots \d+(/\d+)?, estimated infidelity \S+$")


def _outcome_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if not _PROGRESS_LINE.match(line)]


# -- a refused command leaves nothing behind ------------------------------------------------------


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "key"), [
    (["env.shot_budget=0"], "env.shot_budget"),
    (["budget_shots=0"], "budget_shots"),
    (["backend.fault_rate=1.5"], "backend.fault_rate"),
    (["miscalibration.amplitude_rel=nan"], "miscalibration.amplitude_rel"),
    (["+foo=1"], "foo"),
    (["policy=onnx"], "policy.folder"),
    (["session_id=../../escaped"], "session_id"),
])
def test_a_refused_command_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], args: list[str], key: str) -> None:
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    before = _listing(tmp_path)
    assert _console(monkeypatch, cwd, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}: "), err
    assert _listing(tmp_path) == before  # no runs/, no .hydra, no replay.log, nothing above cwd


def test_other_settings_name_the_keys_and_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _console(monkeypatch, tmp_path, "session_id=b", "max_steps=1") == 0
    folder = tmp_path / "runs/replay/b"
    assert list(folder.glob(".hydra/*/config.yaml")) and (folder / "journal.jsonl").exists()
    capsys.readouterr()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert _console(monkeypatch, tmp_path, "session_id=b", "max_steps=2", "env.shots_per_probe=20") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "Traceback" not in "".join(err)
    assert "env.shots_per_probe 50 → 20" in err[0] and "max_steps 1 → 2" in err[0]
    assert "env.shots_per_probe=50 max_steps=1" in err[1] and "session_id" in err[2]
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # The corrected command (the recorded values) resumes the session.
    assert _console(monkeypatch, tmp_path, "session_id=b", "max_steps=1") == 0


def test_a_sweep_name_is_checked_before_hydra_makes_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = _listing(tmp_path)
    assert _console(monkeypatch, tmp_path, "-m", "qubit=0", "sweep.name=../x") == 2
    assert capsys.readouterr().err.strip().startswith("error: sweep.name: '../x' is out of range")
    assert _listing(tmp_path) == before


def test_a_journal_that_does_not_retrace_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A session whose journal records other actions than the policy now takes (here: an
    edited journal) is refused with one line, exit 1, and no job is sent."""
    assert _console(monkeypatch, tmp_path, "session_id=d", "max_steps=2") == 0
    capsys.readouterr()
    path = tmp_path / "runs/replay/d/journal.jsonl"
    lines = path.read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    k = next(i for i, r in enumerate(recs) if r.get("event") == "action")
    recs[k]["action"] = [a + 0.25 for a in recs[k]["action"]]
    lines[k] = json.dumps(recs[k])
    path.write_text("\n".join(lines) + "\n")
    before = path.read_text()
    assert _console(monkeypatch, tmp_path, "session_id=d", "max_steps=2") == 1
    err = _outcome_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("error: env step 1: the policy acts"), err
    # The journal notes the attempt (session_resumed) and nothing else: no job was sent.
    after = path.read_text()
    assert after.startswith(before)
    assert [json.loads(line)["event"] for line in after[len(before):].splitlines()] == ["session_resumed"]
