"""Short SB3 training on PulseShaping-v1 and DriftTracking-v1 beats a random policy.

The full runs (configs/experiment/pulse_shaping_agent.yaml, drift_tracking_agent.yaml)
take tens of minutes; these check in seconds that the envs carry a learnable signal
through the project's own factory (batched env, VecNormalize, SB3 algorithm).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.agents.factory import AlgorithmSpec, build_algorithm, make_vec_env, wrap_normalization

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _returns(venv: Any, act: Any, episodes: int) -> float:
    """Mean episode return over ``episodes`` episodes of a VecEnv (one per copy)."""
    obs = venv.reset()
    total = np.zeros(venv.num_envs)
    done_any = np.zeros(venv.num_envs, dtype=bool)
    while not done_any.all():
        obs, rew, done, _ = venv.step(act(obs))
        total += np.where(done_any, 0.0, rew)
        done_any |= done
    assert venv.num_envs == episodes
    return float(total.mean())


def _final_infidelity(venv: Any, act: Any) -> float:
    """Median 1 − F at the end of one episode per copy."""
    obs = venv.reset()
    done = np.zeros(venv.num_envs, dtype=bool)
    last = np.ones(venv.num_envs)
    while not done.all():
        obs, _, d, infos = venv.step(act(obs))
        for i, info in enumerate(infos):
            if d[i] and not done[i]:
                last[i] = 1.0 - info["fidelity"]
        done |= d
    return float(np.median(last))


def _random(venv: Any, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1, 1, (venv.num_envs, *venv.action_space.shape)).astype(np.float32)


def _policy(model: Any, norm: Any) -> Any:
    return lambda obs: model.predict(norm.normalize_obs(obs), deterministic=True)[0]


def test_short_ppo_beats_random_on_drift_tracking_v1() -> None:
    kwargs = {"episode_s": 2 * 3600.0}  # 12 decisions per episode
    spec = AlgorithmSpec("ppo", hyperparams={"n_steps": 24, "batch_size": 96, "gamma": 0.95, "n_epochs": 5},
                         net_arch=(32, 32), log_std_init=-1.0, normalize_reward=True)
    venv = wrap_normalization(make_vec_env("pulsecal/DriftTracking-v1", 8, 0, kwargs, 12), spec)
    model = build_algorithm(spec, venv, seed=0)
    model.learn(total_timesteps=2304)
    ev = make_vec_env("pulsecal/DriftTracking-v1", 8, 1000, kwargs, 12)
    trained = _returns(ev, _policy(model, venv), 8)
    random = _returns(make_vec_env("pulsecal/DriftTracking-v1", 8, 1000, kwargs, 12), _random(ev, 0), 8)
    assert trained > random


def test_short_sac_beats_random_on_pulse_shaping_v1() -> None:
    spec = AlgorithmSpec("sac", hyperparams={"learning_starts": 400, "batch_size": 64, "gamma": 0.9,
                                             "gradient_steps": 1, "train_freq": 1},
                         net_arch=(64, 64), activation="relu")
    venv = wrap_normalization(make_vec_env("pulsecal/PulseShaping-v1", 4, 0, {}, 10), spec)
    model = build_algorithm(spec, venv, seed=0)
    model.learn(total_timesteps=2000)
    trained = _final_infidelity(make_vec_env("pulsecal/PulseShaping-v1", 8, 1000, {}, 10), _policy(model, venv))
    ev = make_vec_env("pulsecal/PulseShaping-v1", 8, 1000, {}, 10)
    random = _final_infidelity(ev, _random(ev, 0))
    assert trained < random


@pytest.mark.parametrize("experiment", ["pulse_shaping_agent", "drift_tracking_agent"])
def test_agent_experiment_smoke_runs(experiment: str, tmp_path: Path) -> None:
    from test_configs import _smoke

    metrics = _smoke(experiment, tmp_path)
    assert metrics["num_timesteps"] >= 256 and (tmp_path / "model.zip").is_file()


def test_evaluation_runs_v1_agents_and_the_held_out_shaping_set(tmp_path: Path) -> None:
    from pulsecal.agents.evaluation import AgentSpec, EvaluationSettings, evaluate
    from pulsecal.agents.policies import FunctionPolicy

    hold = FunctionPolicy(lambda obs: np.zeros(11, dtype=np.float32))
    idle = FunctionPolicy(lambda obs: np.array([-1.0, -1.0, 0.0, 0.0], dtype=np.float32))
    s = EvaluationSettings(out_dir=tmp_path, n_devices=1, budgets=(1000,), methods=(), workers=1,
                           shaping_held_out=2, grape_restarts=1, grape_maxiter=20,
                           drift_devices=1, drift_hours=2.0, progress=False, plots=False)
    rep = evaluate(s, [AgentSpec("hold", "pulse_shaping", hold, env_id="pulsecal/PulseShaping-v1"),
                       AgentSpec("idle", "drift_tracking", idle, env_id="pulsecal/DriftTracking-v1")])
    methods = {(r["task"], r["method"]) for r in rep.rows}
    assert {("pulse_shaping", m) for m in ("hold", "hold_heldout", "grape_heldout", "drag_calibrated_heldout")} <= methods
    assert sum(r["method"] == "hold_heldout" for r in rep.rows) == 2
    idle_row = next(r for r in rep.rows if r["method"] == "idle")
    assert idle_row["shots_used"] == 0
    v = {(x["task"], x["method"]): x for x in rep.verdicts}
    assert "GRAPE" in v[("pulse_shaping", "hold_heldout")]["detail"]
    with pytest.raises(ValueError, match="env_id"):
        AgentSpec("x", "drift_tracking", idle, env_id="pulsecal/PulseShaping-v1")
