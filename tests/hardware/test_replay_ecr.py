"""Two-qubit ECR replay sessions (CRCalibration-v0) on the simulated multi-qubit backend:
end to end with injected faults, a CR drive over the envelope as a clean stop, a real
subprocess killed mid-session and resumed, an exported policy, the command line
(docs/lab_sessions.md, "ECR sessions")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_2q_kill import check_resumed_journal, journal_lines, kill_twice
from replay_ecr_worker import MAX_CR_AMPLITUDE, SMALL_RB, START, backend, session, settings

from pulsecal.agents.pipelines.replay_outcome import exit_code
from pulsecal.agents.policies import ScriptedECRPolicy
from pulsecal.agents.policies.ecr_scripted import single_length_rates
from pulsecal.envs.ecr_session import CR_ENV_ID, ECRSessionEnv
from pulsecal.envs.two_qubit_session import REPLAY_ENV_IDS
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.replay import session_env_class
from pulsecal.hardware.replay.two_qubit import run_two_qubit_session, two_qubit_limits

HERE = Path(__file__).resolve().parent


def _events(folder: Path, name: str) -> list[dict]:
    return [r for r in read_journal(folder / "journal.jsonl") if r["event"] == name]


def test_the_cr_env_is_replayable_through_the_env_contract() -> None:
    assert CR_ENV_ID in REPLAY_ENV_IDS and session_env_class(CR_ENV_ID) is ECRSessionEnv
    env = ECRSessionEnv(randomize_device=False)
    state = env.calibration_state()
    assert state.parameter_names == ("cr_amp", "cr_phase_rad", "cancel_amp", "cancel_phase_rad")
    assert state.gate.name == "ECR" and state.gate.duration_s == pytest.approx(260e-9)
    # The amplitude step is amp_step x the spec sheet's nominal amplitude, as the env applies it.
    assert state.action[0].per_unit_action == pytest.approx(0.1 * state.settings["nominal_cr_amp"])
    assert state.shot_plan.shots_per_step == 6 * 500
    with pytest.raises(ValueError, match=r"env\.verification"):
        ECRSessionEnv(verification={})
    with pytest.raises(ValueError, match="initial_params"):
        env.reset(seed=0, options={"initial_params": [1.5, 0, 0, 0]})


def test_single_length_rates_invert_a_known_rotation() -> None:
    # Control |0⟩: rotation about +x by 0.6 rad, control |1⟩: about −x by 0.6 rad
    # (a pure ZX with IX = 0): ZX = 0.6/τ, IX = IY = ZY = 0.
    tau = 1e-7
    b = np.array([[0.0, -np.sin(0.6), np.cos(0.6)], [0.0, np.sin(0.6), np.cos(0.6)]])
    h = single_length_rates(b, tau)
    assert h["zx"] == pytest.approx(0.6 / tau) and abs(h["ix"]) < 1e-6 and abs(h["zy"]) < 1e-6
    # A common rotation about +y by 0.3 rad on both: IY only.
    b = np.array([[np.sin(0.3), 0.0, np.cos(0.3)]] * 2)
    h = single_length_rates(0.9 * b, tau)  # a readout contrast of 0.9 drops out
    assert h["iy"] == pytest.approx(0.3 / tau) and abs(h["zx"]) < 1e-6


def test_ecr_session_with_faults_calibrates_and_counts_every_shot(tmp_path: Path) -> None:
    result, b = session(tmp_path / "s", fault_rate=0.2, fsync=False)
    assert result.stop is None and exit_code(result) == 0
    assert len(result.steps) == 6  # the reset's round and five steps
    assert result.ledger_shots == b.executed_shots == result.steps[-1].shots_used == 6 * 1200
    assert set(b.executions_per_key.values()) == {1}
    assert sum(b.stats.faults.values()) > 0
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["gate"] == "ECR" and rep["env_id"] == CR_ENV_ID
    e0, e1 = rep["truth_initial"]["infidelity"], rep["truth_final"]["infidelity"]
    # The truth of the start and final ECR on the hidden device (report only): 0.065 -> 0.0067.
    assert e0 > 0.05 and e1 < e0 / 5, (e0, e1)
    assert rep["estimated_infidelity_final"] < rep["estimated_infidelity_initial"] / 2
    started = _events(tmp_path / "s", "session_started")[0]
    assert {"drive:q0@q1", "drive:q1"} <= set(started["channels"])
    assert [r["step"] for r in _events(tmp_path / "s", "run_done")] == list(range(6))


def test_an_ecr_session_ends_with_a_verdict_from_rb_through_the_journaled_device(tmp_path: Path) -> None:
    result, b = session(tmp_path / "v", max_steps=2, fsync=False, settings={"verification": SMALL_RB})
    assert result.stop is None and result.verdict is not None
    rb_shots = 2 * 3 * 2 * 50
    assert result.verdict.shots_used == rb_shots
    # The RB programs ran through the ledger and the journal like the calibration's calls.
    assert result.ledger_shots == b.executed_shots == 3 * 1200 + rb_shots
    assert len(_events(tmp_path / "v", "run_done")) == 3 + 1
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rep["verdict"] == result.verdict.to_dict()
    assert "verdict (interleaved two-qubit RB): " + result.verdict.describe() in (tmp_path / "v" / "report.md").read_text()
    # exit 0 when calibrated, 8 when the verdict failed (a small RB cannot decide).
    assert exit_code(result) == (0 if result.verdict.calibrated else 8)
    with pytest.raises(ValueError, match=r"RB2QSettings\.lengths"):
        settings(verification={"lengths": [4, 1]})


@pytest.mark.slow  # two sessions with RB: ~10 s
def test_the_same_session_without_faults_ends_with_the_same_gate_and_verdict(tmp_path: Path) -> None:
    verify = {"verification": SMALL_RB}
    faulty, _ = session(tmp_path / "a", fault_rate=0.2, fsync=False, settings=verify)
    clean, _ = session(tmp_path / "b", fault_rate=0.0, fsync=False, settings=verify)
    assert faulty.steps[-1].params == clean.steps[-1].params
    assert faulty.verdict is not None and faulty.verdict == clean.verdict


def test_a_cr_drive_over_the_limit_is_a_clean_stop_with_a_report(tmp_path: Path) -> None:
    b = backend()
    folder = tmp_path / "cr"
    limits = two_qubit_limits(b, max_cr_amplitude=0.45)
    result = run_two_qubit_session(b, ScriptedECRPolicy(), folder, settings(), limits=limits, fsync=False)
    assert result.stop is not None and result.stop.reason == "safety_refused" and result.stop.terminal
    assert exit_code(result) == 5
    assert result.stop.env_step == 1  # the start (0.446) passes, the first raised amplitude does not
    assert "max_cr_amplitude" in result.stop.detail and "q0_q1_cr" in result.stop.detail
    assert b.executed_shots == result.ledger_shots == 1200
    rep = json.loads((folder / "report.json").read_text())
    assert rep["outcome"] == "safety_refused" and rep["initial_params"]["cr_amp"] == START[0]
    again = run_two_qubit_session(backend(), ScriptedECRPolicy(), folder, settings(), limits=limits, fsync=False)
    assert again.stop == result.stop and again.ledger_shots == result.ledger_shots
    assert len(_events(folder, "session_stopped")) == 1


@pytest.mark.slow  # subprocesses / an SB3 export: ~10-15 s
def test_a_killed_ecr_session_resumes_to_the_same_gate_and_verdict(tmp_path: Path) -> None:
    verify = {"verification": SMALL_RB}
    ref, _ = session(tmp_path / "ref", fsync=False, settings=verify)
    folder = tmp_path / "killed"
    kills = kill_twice("replay_ecr_worker.py", folder, journal_lines(tmp_path / "ref" / "journal.jsonl"), "verify")
    assert kills == 2  # both kills landed mid-session
    result, _ = session(folder, settings=verify)
    assert result.resumed and result.stop is None
    assert result.steps[-1].params == ref.steps[-1].params
    assert result.verdict is not None and result.verdict == ref.verdict
    # Six rounds and the RB call; at most one call (<= 24 jobs) in flight per kill.
    check_resumed_journal(folder, env_steps=5, device_calls=7, ref_ledger_shots=ref.ledger_shots,
                          max_in_flight=24 * kills)


@pytest.mark.slow  # subprocesses / an SB3 export: ~10-15 s
def test_an_sb3_model_and_its_onnx_export_of_the_cr_env_replay_alike(tmp_path: Path) -> None:
    """An untrained PPO of CRCalibration-v0 drives a session as an SB3 run directory and,
    exported as the trained CR agent is, as ONNX: the same Policy protocol, the same actions."""
    pytest.importorskip("onnxruntime")
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    from pulsecal.agents.export import export_policy, metadata_from_env
    from pulsecal.agents.policies import OnnxPolicy

    env = gym.make(CR_ENV_ID, randomize_device=False)
    model = sb3.PPO("MlpPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [8]})
    folder = export_policy(model, tmp_path / "export", metadata=metadata_from_env(env), check_samples=50)
    policy = OnnxPolicy(folder)
    assert policy.env_id == CR_ENV_ID
    result, b = session(tmp_path / "onnx", max_steps=2, fsync=False, policy=policy)
    assert result.stop is None and len(result.steps) == 3
    assert result.ledger_shots == b.executed_shots == 3 * 1200
    obs = _events(tmp_path / "onnx", "observation")
    acts = _events(tmp_path / "onnx", "action")
    expect = policy.act(np.asarray(obs[0]["observation"], dtype=np.float32), None)[0]
    assert acts[0]["action"] == [float(x) for x in expect]

    from pulsecal.agents.policies import SB3Policy

    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.zip")
    sb3_result, _ = session(tmp_path / "sb3", max_steps=2, fsync=False,
                            policy=SB3Policy(run, algo="ppo", normalization=None))
    assert sb3_result.stop is None and len(sb3_result.steps) == 3
    sb3_acts = _events(tmp_path / "sb3", "action")
    np.testing.assert_allclose([a["action"] for a in sb3_acts], [a["action"] for a in acts], atol=1e-5)


@pytest.mark.slow  # subprocesses / an SB3 export: ~10-15 s
def test_pulsecal_replay_runs_the_ecr_session_and_exits_5_on_a_cr_refusal(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "replay_experiment=ecr_session", "max_steps=2",
                               "verification.lengths=[1,2,4]", "verification.n_random=2", "verification.shots=50",
                               *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    ok = run()
    rep = json.loads((tmp_path / "runs/replay/ecr/report.json").read_text())
    assert rep["env_id"] == CR_ENV_ID and rep["outcome"] == "finished"
    # The session ends with a verdict; exit 0 only when it says calibrated (else 8).
    assert ok.returncode == (0 if rep["verdict"]["status"] == "calibrated" else 8), ok.stderr
    assert "session ecr: 2 steps, 4200 shots" in ok.stdout + ok.stderr and "verdict " in ok.stdout + ok.stderr
    assert rep["truth_final"]["infidelity"] < rep["truth_initial"]["infidelity"]
    assert MAX_CR_AMPLITUDE == 0.8  # the config's envelope is the tests' one
    refused = run("session_id=cr", "backend.limits.max_cr_amplitude=0.5")
    assert refused.returncode == 5, refused.stderr
    assert "max_cr_amplitude=0.505" in refused.stdout + refused.stderr
    assert "outcome: safety_refused" in (tmp_path / "runs/replay/cr/report.md").read_text()
