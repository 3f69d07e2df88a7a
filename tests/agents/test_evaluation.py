"""The evaluation suite on a tiny run (3 devices): well-formed results.csv / results.md,
exact shot accounting, plots, agents through the env, pass/fail logic, the Hydra entry."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pulsecal.agents.baselines import CMAESCalibration, NelderMeadCalibration, StandardCalibration
from pulsecal.agents.evaluation import (
    CSV_FIELDS,
    AgentSpec,
    EvaluationSettings,
    evaluate,
    summarise,
    verdicts,
)
from pulsecal.agents.policies import FunctionPolicy
from pulsecal.hardware.policy import Policy

QUICK = StandardCalibration(ramsey_delays_s=(1e-7, 4e-7), amplitude_depths=(4, 16), drag_depths=(8,),
                            allocation=(0.2, 0.0, 0.35, 0.45, 0.0))


def _settings(tmp_path: Path, **kw: object) -> EvaluationSettings:
    base: dict[str, object] = dict(out_dir=tmp_path, n_devices=3, budgets=(600,), workers=1, chunk_size=2,
                                   baselines=(QUICK, NelderMeadCalibration(), CMAESCalibration()),
                                   pulse_shaping=False, drift=False, progress=False, plots=False)
    base.update(kw)
    return EvaluationSettings(**base)  # type: ignore[arg-type]


def test_tiny_run_writes_well_formed_csv_and_md(tmp_path: Path) -> None:
    hold = FunctionPolicy(lambda obs: np.zeros(3, dtype=np.float32))
    assert isinstance(hold, Policy)
    rep = evaluate(_settings(tmp_path), [AgentSpec("hold", "calibration", hold, {"shots_per_probe": 20})])
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    methods = {r["method"] for r in rows}
    assert methods == {"standard", "nelder_mead", "cmaes", "hold"}
    assert len(rows) == 4 * 3  # methods × devices at one budget
    for r in rows:
        assert r["task"] == "calibration" and int(r["budget"]) == 600
        assert 0 < float(r["infidelity"]) < 1 and float(r["coherence_limit"]) > 0
        # every shot counted: what the method reports == what the device ran
        assert int(r["shots_used"]) == int(r["device_shots"]) <= 600
        assert float(r["ratio"]) == pytest.approx(float(r["infidelity"]) / float(r["coherence_limit"]))
    md = (tmp_path / "results.md").read_text()
    assert "| calibration | standard | 600 | 3 |" in md
    assert "## Targets" in md and "| calibration | hold | yes |" in md
    # Every table row has the header's column count.
    for table in md.split("\n\n"):
        lines = [ln for ln in table.splitlines() if ln.startswith("|")]
        if lines:
            assert len({ln.count("|") for ln in lines}) == 1
    assert all(s["shots_exact"] for s in rep.summary)
    # The same devices and starts for every method: holding still is the start itself.
    std = [float(r["infidelity"]) for r in rows if r["method"] == "standard"]
    held = [float(r["infidelity"]) for r in rows if r["method"] == "hold"]
    assert all(s < h for s, h in zip(std, held, strict=True))


def test_parallel_workers_give_the_same_rows(tmp_path: Path) -> None:
    one = evaluate(_settings(tmp_path / "a", methods=("standard",)))
    two = evaluate(_settings(tmp_path / "b", methods=("standard",), workers=2))
    key = lambda r: (r["method"], r["device"])  # noqa: E731
    for r1, r2 in zip(sorted(one.rows, key=key), sorted(two.rows, key=key), strict=True):
        assert r1["infidelity"] == r2["infidelity"] and r1["shots_used"] == r2["shots_used"]


def test_shaping_drift_and_plots(tmp_path: Path) -> None:
    zeros_shape = FunctionPolicy(lambda obs: np.zeros(11, dtype=np.float32))
    idle = FunctionPolicy(lambda obs: np.array([-1.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32))
    s = _settings(tmp_path, methods=("standard",), baselines=(StandardCalibration(),), pulse_shaping=True,
                  grape_restarts=1, grape_maxiter=20,
                  drift=True, drift_devices=1, drift_hours=2.0, plots=True)
    rep = evaluate(s, [AgentSpec("shape0", "pulse_shaping", zeros_shape),
                       AgentSpec("idle", "drift_tracking", idle)])
    for name in ("results.csv", "results.md", "infidelity_vs_shots.png", "pulse_shapes.png", "drift_timeline.png"):
        assert (tmp_path / name).stat().st_size > 0
    by = {(r["task"], r["method"]): r for r in rep.rows}
    assert by[("pulse_shaping", "grape")]["infidelity"] < 1e-3 < by[("pulse_shaping", "drag_calibrated")]["infidelity"]
    assert by[("drift_tracking", "idle")]["shots_used"] == 0
    assert by[("drift_tracking", "standard_hourly")]["shots_used"] > 0
    # Hourly recalibration beats doing nothing.
    assert by[("drift_tracking", "standard_hourly")]["infidelity"] < by[("drift_tracking", "no_recalibration")]["infidelity"]
    v = {(x["task"], x["method"]): x for x in rep.verdicts}
    assert v[("pulse_shaping", "shape0")]["passed"] is False
    assert v[("drift_tracking", "idle")]["passed"] is False


def test_verdicts_apply_the_issue_targets(tmp_path: Path) -> None:
    rows = []
    for d, (ratio_a, ratio_b) in enumerate([(1.05, 1.6), (1.08, 1.2), (1.2, 1.1), (1.0, 1.0)]):
        for m, r in (("agent_a", ratio_a), ("agent_b", ratio_b)):
            rows.append({"task": "calibration", "method": m, "budget": 1000, "device": d, "infidelity": r * 1e-4,
                         "coherence_limit": 1e-4, "ratio": r, "leakage": 0.0, "shots_used": 900,
                         "device_shots": 900, "wall_time_s": 0.1})
    v = {x["method"]: x for x in verdicts(summarise(rows), _settings(tmp_path))}
    # agent_a: median 1.065 but p90 1.16 ✓; agent_b: median 1.15 ✗
    assert v["agent_a"]["passed"] and not v["agent_b"]["passed"]


@pytest.mark.parametrize(("kw", "name"), [({"n_devices": 0}, "n_devices"), ({"budgets": (0,)}, "budgets"),
                                          ({"methods": ("grape",)}, "methods"), ({"workers": 0}, "workers"),
                                          ({"device_set": "wide"}, r"device_set='wide' is out of range: allowed "
                                                                  r"one of \['default', 'realistic', 'stress'\]")])
def test_settings_validation_names_the_field(tmp_path: Path, kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _settings(tmp_path, **kw)


def test_function_policy_runs_its_reset_hook_at_each_episode_start(tmp_path: Path) -> None:
    """A scripted agent with memory of its own starts every episode afresh: the evaluation
    asks for ``initial_state()`` per episode, which runs the hook; the state is None."""
    memory: list[int] = []
    starts: list[int] = []

    def act(obs: np.ndarray) -> np.ndarray:
        memory.append(1)
        return np.full(3, -0.1 * len(memory), dtype=np.float64)

    def reset() -> None:
        starts.append(len(memory))
        memory.clear()

    policy = FunctionPolicy(act, reset=reset)
    action, state = policy.act(np.zeros(3), policy.initial_state())
    assert state is None and action.dtype == np.float32 and starts == [0]
    evaluate(_settings(tmp_path, methods=()), [AgentSpec("scripted", "calibration", policy, {"shots_per_probe": 20})])
    assert len(starts) == 1 + 3 and all(n > 0 for n in starts[2:])  # one episode per device
    with pytest.raises(TypeError, match="fn"):
        FunctionPolicy(3)  # type: ignore[arg-type]


def test_agent_spec_validation() -> None:
    hold = FunctionPolicy(lambda obs: obs)
    with pytest.raises(ValueError, match="task"):
        AgentSpec("a", "juggling", hold)
    with pytest.raises(ValueError, match="name"):
        AgentSpec("standard", "calibration", hold)
    with pytest.raises(TypeError, match="policy"):
        AgentSpec("a", "calibration", object())  # type: ignore[arg-type]


def test_hydra_config_composes_and_runs(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from pulsecal.agents.pipelines import evaluate as script

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            f"out_dir={tmp_path}", "n_devices=2", "budgets=[600]", "methods=[standard]", "workers=1",
            "pulse_shaping=false", "drift=false", "progress=false", "plots=false", "baseline=quick"])
        assert cfg.baseline.standard.amplitude_depths == [2, 8]
        report = script.evaluate(cfg)
        assert (tmp_path / "results.csv").exists() and len(report.rows) == 2
        with pytest.raises(Exception, match="n_devices"):
            compose(config_name="evaluate", overrides=["n_devices=many"])


def test_results_csv_reads_back_and_replots(tmp_path: Path) -> None:
    """An evaluation's rows survive results.csv unchanged, so its plots can be redrawn from
    the file without running the evaluation again."""
    from pulsecal.agents.evaluation import plot_calibration, read_results_csv

    hold = FunctionPolicy(lambda obs: np.zeros(3, dtype=np.float32))
    rep = evaluate(_settings(tmp_path, budgets=(600, 1200), methods=("standard",)),
                   [AgentSpec("hold", "calibration", hold, {"shots_per_probe": 20})])
    back = read_results_csv(tmp_path / "results.csv")
    assert back == [{k: r[k] for k in CSV_FIELDS if k in r} for r in rep.rows]
    assert summarise(back) == rep.summary
    png = plot_calibration(back, tmp_path / "replot" / "infidelity_vs_shots.png")
    assert png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="missing columns"):
        (tmp_path / "bad.csv").write_text("task,method\ncalibration,x\n")
        read_results_csv(tmp_path / "bad.csv")


def test_zero_agent_is_the_v1_estimator_alone(tmp_path: Path) -> None:
    """``algo: zero`` needs no model: the all-zero action on the agent's env (on
    GateCalibration-v1 the env's running estimate alone), through the same devices."""
    from hydra import compose, initialize_config_module

    from pulsecal.agents.pipelines import evaluate as script
    from pulsecal.agents.pipelines.common import override

    agent = {"name": "estimator_only", "task": "calibration", "algo": "zero",
             "env_id": "pulsecal/GateCalibration-v1", "env_kwargs": {"shot_budget": 1000}}
    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            f"out_dir={tmp_path}", "n_devices=3", "budgets=[1000]", "methods=[]", "workers=1",
            "pulse_shaping=false", "drift=false", "progress=false", "plots=false", override("agents", [agent])])
        report = script.evaluate(cfg)
        with pytest.raises(ValueError, match=r"agents\[ppo\]\.path is missing"):
            script.evaluate(compose(config_name="evaluate", overrides=[
                f"out_dir={tmp_path}", "agents=[{name: ppo, task: calibration, algo: ppo}]"]))
    rows = [r for r in report.rows if r["method"] == "estimator_only"]
    assert len(rows) == 3 and all(r["shots_used"] == r["device_shots"] <= 1000 for r in rows)
    assert np.median([r["ratio"] for r in rows]) < 1.2  # as tests/agents/test_gate_agent.py finds


def test_a_new_baseline_is_one_class_and_runs_by_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything implementing ``Baseline`` joins the evaluation; its rows carry its name and
    its shots are what the devices counted."""
    from dataclasses import dataclass

    from pulsecal.agents.baselines import (
        Baseline,
        CalibrationResult,
        make_baseline,
        protocol,
        register_baseline,
    )

    # A registry of this test's own: the default baseline set of later tests stays as shipped.
    monkeypatch.setattr(protocol, "_REGISTRY", dict(protocol._REGISTRY))

    @register_baseline("hold_start")
    @dataclass(frozen=True)
    class HoldStart:
        name: str = "hold_start"

        def min_budget(self) -> int:
            return 1

        def run(self, task, start, budget, rng=None, index=None):  # type: ignore[no-untyped-def]
            params = np.atleast_2d(np.asarray(start, dtype=np.float64))
            return CalibrationResult(params, np.zeros(len(params), dtype=np.int64))

    assert isinstance(make_baseline("hold_start"), Baseline)
    rep = evaluate(_settings(tmp_path, baselines=(QUICK, HoldStart())))
    held = [r for r in rep.rows if r["method"] == "hold_start"]
    assert len(held) == 3 and all(r["shots_used"] == r["device_shots"] == 0 for r in held)
    with pytest.raises(ValueError, match="baselines"):
        _settings(tmp_path, baselines=(QUICK, QUICK))


def test_misspelt_baseline_key_fails_at_compose_time() -> None:
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.evaluate  # noqa: F401  (registers evaluate_schema)
    from pulsecal.agents.pipelines.console import format_error

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        with pytest.raises(Exception) as exc:
            compose(config_name="evaluate", overrides=["baseline.standard.rabi_pionts=3"])
    assert format_error(exc.value).startswith("error: baseline.standard.rabi_pionts: ")


def test_evaluate_schema_is_the_settings_fields_typed_at_compose_time(tmp_path: Path) -> None:
    """The evaluate schema is derived from ``EvaluationSettings``: every settings field but
    the two built elsewhere (baselines, targets) is a key, a default config gives the
    settings' defaults, an override reaches the settings, and a wrong type fails at compose
    time naming the key."""
    import dataclasses

    from hydra import compose, initialize_config_module

    from pulsecal.agents.evaluation import EvaluationSettings
    from pulsecal.agents.pipelines.console import format_error
    from pulsecal.agents.pipelines.evaluate import EvaluateConf, to_settings

    settings_names = [f.name for f in dataclasses.fields(EvaluationSettings) if f.name not in ("baselines", "targets")]
    assert [f.name for f in dataclasses.fields(EvaluateConf)] == ["baseline", *settings_names, "agents"]
    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[f"out_dir={tmp_path}", "budgets=[7,8]",
                                                         "methods=[standard]", "drift_hours=2.5"])
        with pytest.raises(Exception) as exc:
            compose(config_name="evaluate", overrides=["drift_devices=many"])
    assert format_error(exc.value).startswith("error: drift_devices: ")
    settings, agents = to_settings(cfg)
    assert agents == []
    assert (settings.budgets, settings.methods, settings.drift_hours) == ((7, 8), ("standard",), 2.5)
    defaults = EvaluationSettings(out_dir=tmp_path)
    for name in settings_names:
        if name not in ("budgets", "methods", "drift_hours", "verification"):
            assert getattr(settings, name) == getattr(defaults, name), name


def test_stress_and_realistic_device_sets_run_every_method_on_the_same_devices(tmp_path: Path) -> None:
    """``device_set=stress``: the five stress kinds (4th level, TLS at f01 and f12,
    quasi-static noise, AWG low-pass), batched by device class and level count, through a
    baseline and an agent on the v1 env; ``realistic`` mixes 3- and 4-level devices."""
    from pulsecal.agents.evaluation.benchmarks import _chunks, calibration_devices
    from pulsecal.envs.presets import REALISTIC_MISCALIBRATION
    from pulsecal.envs.stress import STRESS_KINDS

    zero = FunctionPolicy(lambda obs: np.zeros(4, dtype=np.float32))  # v1: 3 moves and the depth
    agent = AgentSpec("estimator_only", "calibration", zero, {}, "pulsecal/GateCalibration-v1")
    s = _settings(tmp_path, n_devices=5, device_set="stress", methods=("standard",), baselines=(QUICK,))
    devices = calibration_devices(s)
    assert [d.label for d in devices] == list(STRESS_KINDS)  # type: ignore[union-attr]
    chunks = _chunks(devices, s.chunk_size)
    assert sorted(i for c in chunks for i in c) == list(range(5))
    assert all(len({devices[i].group for i in c}) == 1 for c in chunks)  # type: ignore[union-attr]
    rep = evaluate(s, [agent])
    for m in ("standard", "estimator_only"):
        rows = sorted((r for r in rep.rows if r["method"] == m), key=lambda r: r["device"])
        assert [r["device"] for r in rows] == list(range(5)), m
        assert all(0 < r["infidelity"] < 1 and r["coherence_limit"] > 0 for r in rows)
        assert all(r["shots_used"] == r["device_shots"] <= 600 for r in rows)  # TLS devices count too
    real = _settings(tmp_path / "r", n_devices=12, device_set="realistic", miscalibration=REALISTIC_MISCALIBRATION)
    params = calibration_devices(real)
    levels = [p.transmon.levels for p in params]  # type: ignore[union-attr]
    assert set(levels) == {3, 4}
    assert all(len({levels[i] for i in c}) == 1 for c in _chunks(params, 2))
