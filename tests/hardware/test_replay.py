"""Replay sessions: a policy calibrating through the full hardware path, exactly once under
injected faults, resumable from the journal, with its report; the console script and its
configs; the scripted policy on qibolab's emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hw_helpers import FakeClock

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.hardware.journal import read_journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.replay import (
    Policy,
    ReplayDivergence,
    ReplaySettings,
    miscalibrated_start,
    probes_from_json,
    run_session,
    simulated_backend,
    simulated_truth,
)

REPO = Path(__file__).resolve().parents[2]
GATE_S = 20e-9


def _settings(seed: int = 3, max_steps: int = 6, session: str = "s1", **env: object) -> ReplaySettings:
    b = simulated_backend(seed=seed)
    start = miscalibrated_start(b.device.current_transmon(), GATE_S, amplitude_rel=0.04, beta_rel=0.4,
                                detuning_hz=0.5e6)
    return ReplaySettings(session, seed, tuple(start.as_array()), max_steps=max_steps,  # type: ignore[arg-type]
                          env={"shots_per_probe": 50, "shot_budget": 100_000, **env})


def _run(folder: Path, settings: ReplaySettings, fault_rate: float = 0.0, **kw: object):
    backend = simulated_backend(seed=settings.seed, fault_rate=fault_rate, idempotent_submit=False)
    clock = FakeClock()
    result = run_session(backend, ScriptedPolicy(), folder, settings, clock=clock, sleep=clock.sleep,
                         fsync=False, truth=simulated_truth(backend, GATE_S), **kw)  # type: ignore[arg-type]
    return result, backend


def test_scripted_session_calibrates_the_simulated_device(tmp_path: Path) -> None:
    result, _ = _run(tmp_path / "s", _settings())
    rep = result.report
    assert isinstance(ScriptedPolicy(), Policy)
    # The measured error and the hidden truth both improve by more than an order of magnitude.
    assert rep["estimated_infidelity_final"] < rep["estimated_infidelity_initial"] / 10
    assert rep["truth"]["infidelity_ratio"] > 10
    assert 1 - rep["truth"]["final"]["fidelity"] < 5e-4
    for name in ("report.json", "report.md", "parameters.png", "populations.png", "session.json"):
        assert (tmp_path / "s" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "s" / "report.json").read_text())
    assert on_disk["final_params"]["amplitude"] == pytest.approx(result.final_params.amplitude)
    assert on_disk["shots_used"] == result.ledger_shots == 6 * 50 * 7


def test_20_percent_faults_no_lost_no_duplicated_jobs(tmp_path: Path) -> None:
    settings = _settings()
    clean, _ = _run(tmp_path / "clean", settings)
    result, backend = _run(tmp_path / "faulty", settings, fault_rate=0.2)
    # idempotent_submit=False: a second submit of a key would run it twice and show here.
    assert set(backend.executions_per_key.values()) == {1}
    n_jobs = len(backend.executions_per_key)
    assert n_jobs == 6 * 7
    assert backend.executed_shots == result.ledger_shots == ShotLedger(tmp_path / "faulty" / "ledger.json").used_shots
    events = [r["event"] for r in read_journal(tmp_path / "faulty" / "journal.jsonl")]
    assert "lost" not in events and "failed" not in events
    assert events.count("completed") == n_jobs
    assert {"retry", "recovered", "partial", "discarded"} <= set(events)
    assert len(backend.stats.faults) == 7  # every fault kind happened
    # Faults change nothing a policy sees: the same calibration as without them.
    assert result.final_params == clean.final_params


def test_journal_is_an_audit_of_every_applied_action(tmp_path: Path) -> None:
    result, _ = _run(tmp_path / "s", _settings(max_steps=4))
    recs = list(read_journal(tmp_path / "s" / "journal.jsonl"))
    actions = [r for r in recs if r["event"] == "action"]
    assert [r["env_step"] for r in actions] == [1, 2, 3, 4]
    assert [tuple(r["action"]) for r in actions] == [s.action for s in result.steps[1:]]
    # Every job: its program hash, key and id when submitted, its counts when completed.
    done = [r for r in recs if r["event"] == "completed"]
    assert all(r["program_hash"] and r["job_key"] and r["job_id"] and r["counts"] for r in done)
    runs = [r for r in recs if r["event"] == "run_done"]
    assert sum(len(r["program_hashes"]) for r in runs) == len(done)
    assert recs[0]["event"] == "session_started" and recs[-1]["event"] == "session_finished"


def _truncate_journal(src: Path, dst: Path, keep: int) -> None:
    dst.mkdir()
    lines = (src / "journal.jsonl").read_bytes().split(b"\n")
    (dst / "journal.jsonl").write_bytes(b"\n".join(lines[:keep]) + b"\n" + lines[keep][:7])  # torn tail
    (dst / "session.json").write_bytes((src / "session.json").read_bytes())


@pytest.mark.parametrize("fraction", [0.1, 0.45, 0.8, 0.99])
def test_resume_from_a_cut_journal_matches_the_uninterrupted_session(tmp_path: Path, fraction: float) -> None:
    """In-process half of the kill test (test_replay_kill.py does it with SIGKILL): the
    journal up to some line (with a torn tail) is all a resumed session gets."""
    settings = _settings(max_steps=4)
    ref, _ = _run(tmp_path / "ref", settings, fault_rate=0.1)
    n = len((tmp_path / "ref" / "journal.jsonl").read_bytes().split(b"\n")) - 1
    _truncate_journal(tmp_path / "ref", tmp_path / "cut", int(fraction * (n - 1)))
    resumed, backend = _run(tmp_path / "cut", settings, fault_rate=0.1)
    assert resumed.resumed and resumed.final_params == ref.final_params
    assert [s.params for s in resumed.steps] == [s.params for s in ref.steps]
    assert resumed.replayed_device_calls > 0 or fraction < 0.2
    # Nothing finished is run again: the fresh backend ran only the calls not yet done.
    assert backend.stats.executions <= 6 * (5 - resumed.replayed_device_calls)
    events = [r["event"] for r in read_journal(tmp_path / "cut" / "journal.jsonl")]
    assert events.count("session_finished") == 1
    assert [r["env_step"] for r in read_journal(tmp_path / "cut" / "journal.jsonl") if r["event"] == "action"] \
        == [1, 2, 3, 4]


def test_resume_refuses_other_settings_and_other_policies(tmp_path: Path) -> None:
    settings = _settings(max_steps=2)
    _run(tmp_path / "s", settings)
    with pytest.raises(ReplayDivergence, match="holds another session"):
        _run(tmp_path / "s", _settings(max_steps=3))

    class Lazy:
        def initial_state(self) -> None:
            return None

        def act(self, observation: np.ndarray, state: None) -> tuple[np.ndarray, None]:
            return np.zeros(3, dtype=np.float32), None

    backend = simulated_backend(seed=settings.seed)
    with pytest.raises(ReplayDivergence, match="the journal applied"):
        run_session(backend, Lazy(), tmp_path / "s", settings, fsync=False, sleep=lambda s: None)


def test_settings_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"ReplaySettings.max_steps=0: allowed an integer >= 1"):
        ReplaySettings("s", 0, (0.5, 0.0, 0.0, 0.0), max_steps=0)
    # An amplitude beyond full scale at the configured gate is a valid start (the env then
    # lengthens the gate, envs.amplitude_limit); a non-finite one or three values are not.
    with pytest.raises(ValueError, match=r"ReplaySettings.initial_params"):
        ReplaySettings("s", 0, (float("nan"), 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"ReplaySettings.initial_params"):
        ReplaySettings("s", 0, (0.5, 0.0, 0.0))  # type: ignore[arg-type]
    assert ReplaySettings("s", 0, (1.5, 0.0, 0.0, 0.0)).initial_params[0] == 1.5
    with pytest.raises(ValueError, match=r"ScriptedPolicy.gain=0: allowed \(0, 1\]"):
        ScriptedPolicy(gain=0)
    assert [p.name for p in probes_from_json([{"kind": "ramsey", "delay_s": 1e-7}])] == ["ramsey_100ns"]


def test_budget_stops_the_session_before_overspending(tmp_path: Path) -> None:
    settings = ReplaySettings(**{**_settings(max_steps=6).__dict__, "budget_shots": 3 * 300})
    result, _ = _run(tmp_path / "s", settings)
    assert result.stop is not None and result.stop.reason == "budget_exhausted" and "shot_budget" in result.stop.detail
    assert ShotLedger(tmp_path / "s" / "ledger.json").used_shots == 900


# -- the console script and its configs ------------------------------------------------------------


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.replay  # noqa: F401  (registers the schemas)

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        return compose(config_name="replay", overrides=overrides)


@pytest.mark.parametrize("backend", ["simulated", "simulated_faulty", "qibolab_emulator", "braket"])
@pytest.mark.parametrize("policy", ["scripted", "sb3", "onnx"])
def test_every_config_composes(backend: str, policy: str) -> None:
    extra = {"sb3": ["policy.run_dir=/nowhere"], "onnx": ["policy.folder=/nowhere"]}.get(policy, [])
    cfg = _compose([f"backend={backend}", f"policy={policy}", *extra])
    assert cfg.backend.kind in ("simulated", "qibolab", "braket") and cfg.policy.kind == policy


def test_wrong_type_fails_at_compose_time() -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="fault_rate"):
        _compose(["backend=simulated", "backend.fault_rate=lots"])


def test_replay_through_the_compose_api(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.replay import replay

    cfg = _compose(["backend=simulated_faulty", "policy=scripted", f"folder={tmp_path / 's'}", "max_steps=2"])
    r = replay(cfg)
    assert r.report["env_steps"] == 2 and r.ledger_shots == 3 * 6 * 50
    again = replay(cfg)  # the same folder: resumed entirely from the journal, nothing re-run
    assert again.resumed and again.replayed_device_calls == 3 and again.final_params == r.final_params


def test_console_script_from_another_directory(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pulsecal-replay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsecal.scripts.replay"]
    out = subprocess.run([*cmd, "backend=simulated", "policy=scripted", "max_steps=2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "runs" / "replay" / "replay"
    assert (folder / "report.json").exists() and "report in" in out.stdout
    bad = subprocess.run([*cmd, "policy=onnx"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "folder" in bad.stderr


# -- qibolab's emulator ---------------------------------------------------------------------------


@pytest.mark.slow
def test_scripted_policy_improves_the_x_gate_on_the_qibolab_emulator(tmp_path: Path) -> None:
    """π-pulse error measured by the emulator itself, before and after: the session's own
    probe estimate, and an independent amplified check SX·X^16 (P1 = (1 + sin(16.5·π·ε))/2)."""
    pytest.importorskip("qibolab")
    from pulsecal.agents.pipelines.replay import replay
    from pulsecal.envs.calibration import DragGate, Probe

    state = np.random.get_state()  # noqa: NPY002  (the emulator samples with NumPy's global generator)
    np.random.seed(20261101)  # noqa: NPY002
    try:
        cfg = _compose(["backend=qibolab_emulator", "policy=scripted", f"folder={tmp_path / 'emu'}",
                        "max_steps=4", "env.shots_per_probe=200", "miscalibration.amplitude_rel=0.05"])
        r = replay(cfg)
        rep = r.report
        # An independent check on a fresh emulator, outside the session's ledger and journal.
        from pulsecal.agents.pipelines.replay_build import build_backend
        from pulsecal.hardware.device import BackendDevice
        from pulsecal.hardware.journal import Journal
        from pulsecal.hardware.replay import default_limits

        emu = build_backend(dict(cfg.backend))
        check = BackendDevice(emu, limits=default_limits(emu), ledger=ShotLedger(None, fsync=False),
                              journal=Journal(tmp_path / "check.jsonl", fsync=False), session_id="check")
        errs = []
        for params in (rep["initial_params"], rep["final_params"]):
            p = np.array([params[k] for k in ("amplitude", "beta_s", "detuning_hz", "phase")])
            seq = _amplified(Probe("amplitude", 16), DragGate(40e-9), p, check.dt_s)
            n1 = check.run([seq], 400)[0, 1]
            errs.append(abs(n1 / 400 - 0.5))
    finally:
        np.random.set_state(state)  # noqa: NPY002
    print(f"emulator: estimated infidelity {rep['estimated_infidelity_initial']:.3g} -> "
          f"{rep['estimated_infidelity_final']:.3g}; |P1 - 1/2| of SX·X^16 {errs[0]:.3f} -> {errs[1]:.3f}")
    assert rep["estimated_infidelity_final"] < rep["estimated_infidelity_initial"] / 5
    assert errs[1] < errs[0] / 2


def _amplified(probe, gate, p: np.ndarray, dt_s: float):
    from pulsecal.envs.calibration import CalibrationTask

    class _Dt:
        def __init__(self, dt: float) -> None:
            self.dt_s = dt

    task = CalibrationTask([_Dt(dt_s)], gate, (probe,))  # type: ignore[list-item]
    return task.sequences(p[None])[0][0]


def test_sb3_run_directory_policy_is_a_swap_of_config(tmp_path: Path) -> None:
    """An (untrained) PPO saved in the training run layout drives a session unchanged."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from pulsecal.agents.persistence import save_normalization
    from pulsecal.agents.policies.sb3 import SB3Policy
    from pulsecal.envs.gate_calibration import GateCalibrationEnv

    run = tmp_path / "run"
    run.mkdir()
    venv = VecNormalize(DummyVecEnv([lambda: GateCalibrationEnv(shots_per_probe=50)]))
    PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu").save(str(run / "model.zip"))
    venv.obs_rms.mean = np.full(venv.observation_space.shape, 0.25)
    save_normalization(venv, run / "vecnormalize.npz")
    (run / "config.yaml").write_text("agent:\n  name: ppo\n")
    policy = SB3Policy(run)
    assert policy.describe()["algo"] == "ppo" and policy.describe()["normalized"]
    backend = simulated_backend(seed=3)
    r = run_session(backend, policy, tmp_path / "s", _settings(max_steps=2), fsync=False, plots=False,
                    sleep=lambda s: None)
    assert len(r.steps) == 3 and all(s.action is not None and max(map(abs, s.action)) <= 1 for s in r.steps[1:])
    assert r.report["policy"]["kind"] == "sb3"


class _ZeroAction:
    """GateCalibration-v1's residual policy at zero: the env's own running estimate."""

    def initial_state(self) -> None:
        return None

    def act(self, observation: np.ndarray, state: None) -> tuple[np.ndarray, None]:
        return np.zeros(4, dtype=np.float32), None


def test_session_runs_the_env_version_it_is_given(tmp_path: Path) -> None:
    # A policy trained on GateCalibration-v1 must be replayed in v1 (its observation and
    # action spaces differ from v0's); the whole hardware path stays the same.
    base = _settings(max_steps=8)
    settings = ReplaySettings(base.session_id, base.seed, base.initial_params, max_steps=8,
                              env={"shot_budget": 4800}, env_id="pulsecal/GateCalibration-v1")
    backend = simulated_backend(seed=settings.seed, idempotent_submit=False)
    clock = FakeClock()
    result = run_session(backend, _ZeroAction(), tmp_path / "v1", settings, clock=clock, sleep=clock.sleep,
                         fsync=False, truth=simulated_truth(backend, GATE_S))
    rep = result.report
    assert rep["truth"]["infidelity_ratio"] > 10
    limit = rep["truth"]["final"]["coherence_limit"]
    assert 1 - rep["truth"]["final"]["fidelity"] < 2 * limit
    assert result.ledger_shots == rep["shots_used"] <= 4800
    with pytest.raises(ValueError, match="env_id"):
        ReplaySettings("s", 0, base.initial_params, env_id="pulsecal/PulseShaping-v0")


def test_session_on_a_weak_drive_qubit_states_the_longer_gate(tmp_path: Path) -> None:
    """Ω_R/2π = 35 MHz (amplitude scale 0.35 of the preset's 100 MHz): the textbook start
    needs |u| ≈ 1.4 at 20 ns; the session's env calibrates at the shortest gate that fits
    0.9 of full scale (31 ns for this start) and the report says so, its truth at 31 ns."""
    from pulsecal.hardware.replay import start_values

    backend = simulated_backend(seed=3, amplitude_scale=0.35)
    start = start_values(backend.device.current_transmon(), GATE_S, amplitude_rel=0.04, beta_rel=0.4,
                         detuning_hz=0.5e6)
    assert start[0] > 1.3
    settings = ReplaySettings("weak", 3, start, max_steps=6, env={"shots_per_probe": 50, "shot_budget": 100_000})
    clock = FakeClock()
    result = run_session(backend, ScriptedPolicy(), tmp_path / "w", settings, clock=clock, sleep=clock.sleep,
                         fsync=False, truth=simulated_truth(backend, GATE_S), plots=False)
    rep = result.report
    assert rep["nominal_gate_duration_s"] == GATE_S
    assert rep["gate_duration_s"] == pytest.approx(31e-9)
    assert rep["limit_failure"] is None and rep["limits"] == {}
    assert abs(rep["initial_params"]["amplitude"]) <= 0.9
    final = rep["truth"]["final"]
    assert (1 - final["fidelity"]) / final["coherence_limit"] < 1.5
    assert "- gate duration: 31 ns (configured 20 ns: lengthened" in (tmp_path / "w" / "report.md").read_text()
