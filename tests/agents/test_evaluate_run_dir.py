"""``pulsecal-evaluate`` on a training run directory takes the run's own settings: its
algorithm, env id and env settings come from its config.yaml; an explicit env setting
wins; an algorithm, env id or task other than the run's, or a setting that gives the
model other spaces, is refused naming the key before any benchmark runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# A real GateCalibration-v0 run with a non-default shots_per_probe, one PPO rollout long.
TINY = [
    "logger=csv", "total_timesteps=16", "env.n_envs=1", "env.shots_per_probe=20", "agent.n_steps=16",
    "agent.batch_size=16", "agent.n_epochs=1", "agent.policy_kwargs.net_arch=[8]",
    "callbacks.eval_every_steps=1000", "callbacks.eval_episodes=1", "callbacks.checkpoint_every_steps=1000",
    "callbacks.progress_bar=false", "device.n_eval_devices=1",
]
QUICK = ["n_devices=2", "budgets=[600]", "methods=[standard]", "workers=1", "pulse_shaping=false", "drift=false",
         "progress=false", "plots=false"]


def _compose(name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.evaluate  # noqa: F401  (registers the evaluate schema)

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from pulsecal.agents.pipelines.train import train

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("ppo") / "run"
    train(_compose("train", TINY), run_dir=run)
    return run


def _agents(entry: str) -> str:
    return f"agents=[{entry}]"


@pytest.fixture()
def baseline_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every baseline chunk the evaluation starts."""
    from pulsecal.agents.evaluation import benchmarks

    calls: list[str] = []
    real = benchmarks._baseline_chunk

    def spy(settings: Any, baseline: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(baseline.name)
        return real(settings, baseline, *args, **kwargs)

    monkeypatch.setattr(benchmarks, "_baseline_chunk", spy)
    return calls


def test_a_run_directory_gives_its_algorithm_env_and_settings(run_dir: Path, tmp_path: Path,
                                                             baseline_calls: list[str]) -> None:
    from pulsecal.agents.pipelines.evaluate import evaluate, to_settings

    cfg = _compose("evaluate", [f"out_dir={tmp_path}", *QUICK, _agents(f"{{name: mine, path: {run_dir}}}")])
    _, (agent,) = to_settings(cfg)
    assert (agent.task, agent.resolved_env_id, agent.policy.algo) == ("calibration", "pulsecal/GateCalibration-v0",
                                                                       "ppo")
    assert agent.env_kwargs == {"device": "transmon_20ns", "shots_per_probe": 20}
    report = evaluate(cfg)
    mine = [r for r in report.rows if r["method"] == "mine"]
    assert len(mine) == 2 and baseline_calls
    # 6 probes x 20 shots a step, as the run trained, within the 600-shot budget.
    assert all(r["shots_used"] % 120 == 0 and 0 < r["shots_used"] <= 600 for r in mine)


def test_an_explicit_env_setting_wins_over_the_runs(run_dir: Path, tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.evaluate import to_settings

    entry = f"{{name: mine, path: {run_dir}, env_kwargs: {{shots_per_probe: 10}}}}"
    _, (agent,) = to_settings(_compose("evaluate", [f"out_dir={tmp_path}", *QUICK, _agents(entry)]))
    assert agent.env_kwargs == {"device": "transmon_20ns", "shots_per_probe": 10}


@pytest.mark.parametrize(("entry", "message"), [
    ("algo: sac", r"agents\[mine\]\.algo='sac': the run trained 'ppo' \(.*config\.yaml: agent\.name\)"),
    ("env_id: pulsecal/GateCalibration-v1",
     r"agents\[mine\]\.env_id='pulsecal/GateCalibration-v1': the run trained 'pulsecal/GateCalibration-v0'"),
    ("task: drift_tracking", r"agents\[mine\]\.task='drift_tracking': .* allowed 'calibration'"),
    ("env_kwargs: {parameters: [amplitude]}",
     r"agents\[mine\]\.env_kwargs\.parameters=\['amplitude'\]: changes the observation or action space"),
])
def test_a_contradicting_override_is_refused_before_any_baseline(run_dir: Path, tmp_path: Path, entry: str,
                                                                 message: str, baseline_calls: list[str]) -> None:
    from pulsecal.agents.pipelines.evaluate import evaluate

    cfg = _compose("evaluate", [f"out_dir={tmp_path / 'out'}", *QUICK,
                                _agents(f"{{name: mine, path: {run_dir}, {entry}}}")])
    with pytest.raises(ValueError, match=message):
        evaluate(cfg)
    assert baseline_calls == [] and not (tmp_path / "out").exists()


def test_an_agent_spec_whose_env_does_not_fit_its_model_is_refused_first(run_dir: Path, tmp_path: Path,
                                                                         baseline_calls: list[str]) -> None:
    """Built directly (no run to read), a v0 model sent to v1 stops before the baselines,
    not with a broadcast error after them."""
    from pulsecal.agents.evaluation import AgentSpec, EvaluationSettings, evaluate
    from pulsecal.agents.policies import SB3Policy

    policy = SB3Policy.from_run_dir(run_dir, "ppo")
    settings = EvaluationSettings(out_dir=tmp_path / "out", n_devices=2, budgets=(600,), methods=("standard",),
                                  workers=1, pulse_shaping=False, drift=False, progress=False, plots=False)
    with pytest.raises(ValueError, match=r"agents\[v1\]: pulsecal/GateCalibration-v1 .* observation_space"):
        evaluate(settings, [AgentSpec("v1", "calibration", policy, {}, "pulsecal/GateCalibration-v1")])
    assert baseline_calls == [] and not (tmp_path / "out").exists()


def test_make_pinned_silences_only_gymnasiums_out_of_date_warning() -> None:
    import warnings

    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the ids)
    from pulsecal.agents.pinned_env import make_pinned

    def messages(make: Any, **kwargs: Any) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make("pulsecal/GateCalibration-v0", **kwargs).close()
        return [str(w.message) for w in caught]

    assert any("is out of date" in m for m in messages(gym.make))  # what plain gym.make says
    assert not any("is out of date" in m for m in messages(make_pinned))


def test_make_pinned_lets_every_other_warning_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import gymnasium as gym

    from pulsecal.agents import pinned_env

    def noisy_make(env_id: str, **kwargs: Any) -> str:
        warnings.warn(f"The environment {env_id} is out of date. You should consider upgrading to version `v1`.",
                      DeprecationWarning, stacklevel=2)
        warnings.warn("something else about the env", UserWarning, stacklevel=2)
        return "env"

    monkeypatch.setattr(gym, "make", noisy_make)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pinned_env.make_pinned("pulsecal/GateCalibration-v0") == "env"
    assert [str(w.message) for w in caught] == ["something else about the env"]


def test_a_run_on_another_device_class_is_refused_before_any_baseline(tmp_path: Path,
                                                                      baseline_calls: list[str]) -> None:
    """The calibration benchmark's held-out devices are of the 20 ns class: a transmon_short
    run takes its preset from the run, and its env refuses those devices at the first reset,
    which the up-front check reaches before any baseline."""
    import torch

    from pulsecal.agents.pipelines.evaluate import evaluate
    from pulsecal.agents.pipelines.train import train

    torch.set_num_threads(1)
    run = tmp_path / "short"
    train(_compose("train", [*TINY, "device=transmon_short"]), run_dir=run)
    cfg = _compose("evaluate", [f"out_dir={tmp_path / 'out'}", *QUICK, _agents(f"{{name: short, path: {run}}}")])
    with pytest.raises(ValueError, match=r"agents\[short\]: .*'device': 'transmon_short'.* refuses the benchmark's "
                                         r"devices: .*dt_s"):
        evaluate(cfg)
    assert baseline_calls == [] and not (tmp_path / "out").exists()
