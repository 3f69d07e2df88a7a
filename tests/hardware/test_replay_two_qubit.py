"""Two-qubit (CZ) replay sessions on the simulated multi-qubit backend: end to end with
injected faults, a flux pulse over the envelope as a clean stop, and a real subprocess
killed mid-session and resumed (docs/lab_sessions.md, "Two-qubit sessions")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_2q_kill import check_resumed_journal, journal_lines, kill_twice
from replay_2q_worker import START, backend, session, settings

from pulsecal.agents.pipelines.replay_outcome import exit_code
from pulsecal.agents.policies import ScriptedCZPolicy
from pulsecal.envs.two_qubit_session import REPLAY_ENV_IDS
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.replay import ReplaySettings, session_env_class
from pulsecal.hardware.replay.two_qubit import (
    run_two_qubit_session,
    session_channels,
    two_qubit_limits,
)

HERE = Path(__file__).resolve().parent


def _events(folder: Path, name: str) -> list[dict]:
    return [r for r in read_journal(folder / "journal.jsonl") if r["event"] == name]


def test_cz_env_is_replayable_through_the_env_contract() -> None:
    assert "pulsecal/CZCalibration-v0" in REPLAY_ENV_IDS
    env = session_env_class("pulsecal/CZCalibration-v0")(open_system=False)
    state = env.calibration_state()
    assert state.parameter_names == ("amplitude_phi0", "length_s", "phase_q0_rad", "phase_q1_rad")
    assert [e.per_unit_action for e in state.action][:2] == [0.004, 2e-9]
    with pytest.raises(ValueError, match="two-qubit one of"):
        ReplaySettings("x", 0, START, env_id="pulsecal/NotAnEnv-v0")


def test_session_channels_are_the_backends_frames() -> None:
    chans = session_channels(backend().capabilities())
    assert {c: f.name for c, f in chans.items()} == {
        "drive:q0": "q0_drive", "drive:q0@q1": "q0_q1_cr", "drive:q1@q0": "q1_q0_cr", "drive:q1": "q1_drive",
        "flux:q1": "q1_flux"}
    assert {c: f.kind for c, f in chans.items()}["flux:q1"] == "flux"


def test_cz_session_with_faults_calibrates_and_counts_every_shot(tmp_path: Path) -> None:
    result, b = session(tmp_path / "s", fault_rate=0.2, fsync=False)
    assert result.stop is None and exit_code(result) == 0
    assert len(result.steps) == 7  # the reset's round and six steps
    # Every shot the device played is in the ledger, and none twice: the backend runs a
    # resubmitted key again (idempotent_submit=False), so a double submit would show.
    assert result.ledger_shots == b.executed_shots == result.steps[-1].shots_used
    assert set(b.executions_per_key.values()) == {1}
    assert sum(b.stats.faults.values()) > 0  # the faults did happen
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    e0 = 1 - rep["truth_initial"]["fidelity"]
    e1 = 1 - rep["truth_final"]["fidelity"]
    # The truth of the start and final gates on the hidden device (report only).
    assert e0 > 0.2 and e1 < e0 / 20, (e0, e1)
    # As applied (the session's own virtual Zs, no search): 0.29 at the start.
    assert rep["truth_final"]["fidelity_set"] > 0.95, rep["truth_final"]
    # The probes read π at an amplitude where the truth is ~0.3 rad short of it (2.81 rad
    # here): the env's Ramsey reading of the conditional phase has that bias on this device.
    assert abs(abs(rep["truth_final"]["conditional_phase"]) - np.pi) < 0.5
    assert rep["estimated_infidelity_final"] < rep["estimated_infidelity_initial"] / 5
    # Journal: the programs used drive and flux frames, one job per probe and call.
    started = _events(tmp_path / "s", "session_started")[0]
    assert "flux:q1" in started["channels"]
    assert [r["step"] for r in _events(tmp_path / "s", "run_done")] == list(range(8))


def test_the_same_session_without_faults_ends_with_the_same_gate(tmp_path: Path) -> None:
    faulty, _ = session(tmp_path / "a", fault_rate=0.2, fsync=False)
    clean, _ = session(tmp_path / "b", fault_rate=0.0, fsync=False)
    assert faulty.steps[-1].params == clean.steps[-1].params


def test_a_flux_pulse_over_the_limit_is_a_clean_stop_with_a_report(tmp_path: Path) -> None:
    b = backend()
    folder = tmp_path / "flux"
    limits = two_qubit_limits(b, max_flux_amplitude=0.1)
    result = run_two_qubit_session(b, ScriptedCZPolicy(), folder, settings(), limits=limits, fsync=False)
    assert result.stop is not None and result.stop.reason == "safety_refused" and result.stop.terminal
    assert exit_code(result) == 5
    assert result.stop.env_step == 0  # the reset's first round plays the flux pulse
    assert "max_flux_amplitude" in result.stop.detail and "q1_flux" in result.stop.detail
    assert b.executed_shots == result.ledger_shots == 7 * 400  # only the reference (no flux) ran
    rep = json.loads((folder / "report.json").read_text())
    assert rep["outcome"] == "safety_refused" and rep["initial_params"]["amplitude_phi0"] == START[0]
    assert "outcome: safety_refused" in (folder / "report.md").read_text()
    # A rerun reports the recorded stop and runs no job.
    again = run_two_qubit_session(backend(), ScriptedCZPolicy(), folder, settings(), limits=limits, fsync=False)
    assert again.stop == result.stop and again.ledger_shots == result.ledger_shots
    assert len(_events(folder, "session_stopped")) == 1


def test_a_killed_cz_session_resumes_to_the_same_gate(tmp_path: Path) -> None:
    ref, _ = session(tmp_path / "ref", fsync=False)
    folder = tmp_path / "killed"
    kills = kill_twice("replay_2q_worker.py", folder, journal_lines(tmp_path / "ref" / "journal.jsonl"))
    assert kills == 2  # both kills landed mid-session
    result, _ = session(folder)
    assert result.resumed and result.stop is None
    assert result.steps[-1].params == ref.steps[-1].params
    # At most one device call (8 probes) in flight per kill.
    check_resumed_journal(folder, env_steps=6, device_calls=8, ref_ledger_shots=ref.ledger_shots,
                          max_in_flight=8 * kills)


def test_an_exported_onnx_policy_of_the_cz_env_replays(tmp_path: Path) -> None:
    """An untrained PPO of CZCalibration-v0, exported as the trained agents will be, drives
    a session through the same Policy protocol (the export path and the lab runner)."""
    pytest.importorskip("onnxruntime")
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    from pulsecal.agents.export import export_policy, metadata_from_env
    from pulsecal.agents.policies import OnnxPolicy

    env = gym.make("pulsecal/CZCalibration-v0", open_system=False)
    model = sb3.PPO("MlpPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [8]})
    folder = export_policy(model, tmp_path / "export", metadata=metadata_from_env(env), check_samples=50)
    policy = OnnxPolicy(folder)
    assert policy.env_id == "pulsecal/CZCalibration-v0"
    result, b = session(tmp_path / "onnx", max_steps=2, fsync=False, policy=policy)
    assert result.stop is None and len(result.steps) == 3
    assert result.ledger_shots == b.executed_shots == 4400 + 2 * 1600
    # The session applied the policy's own actions.
    obs = _events(tmp_path / "onnx", "observation")
    acts = _events(tmp_path / "onnx", "action")
    expect = policy.act(np.asarray(obs[0]["observation"], dtype=np.float32), None)[0]
    assert acts[0]["action"] == [float(x) for x in expect]


def test_pulsecal_replay_runs_the_cz_session_and_exits_5_on_a_flux_refusal(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "replay_experiment=cz_session", "max_steps=2", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert "session cz: 2 steps, 7600 shots" in ok.stdout
    rep = json.loads((tmp_path / "runs/replay/cz/report.json").read_text())
    assert rep["env_id"] == "pulsecal/CZCalibration-v0" and rep["outcome"] == "finished"
    refused = run("session_id=flux", "+backend.limits.max_flux_amplitude=0.1")
    assert refused.returncode == 5, refused.stderr
    assert "max_flux_amplitude=0.1583, allowed <= 0.1" in refused.stderr
    assert "outcome: safety_refused" in (tmp_path / "runs/replay/flux/report.md").read_text()


@pytest.mark.slow  # a session and its RB through the backend: ~10 s
def test_a_cz_session_ends_with_a_verdict_from_rb_through_the_journaled_device(tmp_path: Path) -> None:
    rb = {"lengths": [1, 2, 4], "n_random": 2, "shots": 50}
    b = backend(idempotent_submit=False)
    s = ReplaySettings("cz", 3, START, max_steps=2, env={"open_system": False, "shot_budget": 20_000,
                                                         "shots_per_probe": 200, "reference_shots": 400},
                       env_id="pulsecal/CZCalibration-v0", verification=rb)
    result = run_two_qubit_session(b, ScriptedCZPolicy(), tmp_path / "v", s, fsync=False, sleep=lambda x: None)
    assert result.stop is None and result.verdict is not None
    rb_shots = 2 * 3 * 2 * 50
    assert result.verdict.shots_used == rb_shots
    assert result.ledger_shots == b.executed_shots == result.steps[-1].shots_used + rb_shots
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rep["verdict"] == result.verdict.to_dict()
    assert exit_code(result) == (0 if result.verdict.calibrated else 8)
    with pytest.raises(ValueError, match=r"env\.verification"):
        session_env_class("pulsecal/CZCalibration-v0")(verification={})
