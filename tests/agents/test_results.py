"""``pulsecal-results`` bookkeeping without training: calibration variants and the
estimator reference become evaluation agents, and results.md states what each
calibration agent was trained on next to the estimator alone (numbers from the summary).
The whole pipeline runs end to end in tests/test_demo.py (``--quick``, slow)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml


def _run(tmp_path: Path, name: str, reward: str, env_id: str = "pulsecal/GateCalibration-v1") -> dict[str, Any]:
    run = tmp_path / name
    run.mkdir()
    config = {"env": {"id": env_id, "kwargs": {"shot_budget": 1000, "reward": reward}},
              "device": {"preset": "transmon_20ns"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return {"task": "calibration", "algo": "ppo", "experiment": f"exp_{name}", "run_dir": str(run),
            "env_id": env_id, "seed": 0, "steps": 150016}


def _conf(**kw: Any) -> Any:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from pulsecal.agents.pipelines.results import ResultsConf

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        cfg = compose(config_name="results", overrides=[f"{k}={v}" for k, v in kw.items()])
    conf = OmegaConf.to_object(cfg)
    assert isinstance(conf, ResultsConf)
    conf.check()
    return conf


def test_shipped_results_config_trains_the_measured_variant() -> None:
    from pulsecal.agents.pipelines.results import _runs

    conf = _conf()
    runs = {key: (task, experiment) for key, task, _a, experiment in _runs(conf)}
    assert runs["calibration_measured"] == ("calibration", "gate_calibration_agent_measured")
    assert conf.estimator_reference


def test_bad_variant_name_is_rejected() -> None:
    from pulsecal.agents.pipelines.common import PipelineError

    with pytest.raises(PipelineError, match=r"calibration_variants\.Bad-Name"):
        _conf(**{"+calibration_variants.Bad-Name": "gate_calibration_agent"})


def test_variants_and_estimator_become_evaluation_agents(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.results import ESTIMATOR, evaluation_agents

    records = {"calibration": _run(tmp_path, "calibration", "truth"),
               "calibration_measured": _run(tmp_path, "calibration_measured", "measured")}
    agents = {a["name"]: a for a in evaluation_agents(_conf(), records)}
    assert set(agents) == {"agent_ppo", "agent_ppo_measured", ESTIMATOR}
    est = agents[ESTIMATOR]
    assert est["algo"] == "zero" and est["env_id"] == "pulsecal/GateCalibration-v1"
    assert est["env_kwargs"]["shot_budget"] == 1000
    # On v0 the zero action is "change nothing": no estimator to compare with.
    v0 = {"calibration": _run(tmp_path, "v0", "truth", env_id="pulsecal/GateCalibration-v0")}
    assert ESTIMATOR not in {a["name"] for a in evaluation_agents(_conf(), v0)}


def test_notes_state_the_training_signal_and_the_estimator_numbers(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.results import ESTIMATOR, calibration_notes

    records = {"calibration": _run(tmp_path, "calibration", "truth"),
               "calibration_measured": _run(tmp_path, "calibration_measured", "measured")}

    def row(method: str, ratio: float) -> dict[str, Any]:
        return {"task": "calibration", "method": method, "budget": 1000, "ratio_median": ratio,
                "ratio_p90": ratio + 0.02, "infidelity_median": 1e-4 * ratio, "shots_median": 960.0}

    summary = [row("agent_ppo", 1.016), row("agent_ppo_measured", 1.017), row(ESTIMATOR, 1.020),
               row("standard", 1.019), row("cmaes", 8.6)]
    verdicts = [{"task": "calibration", "method": ESTIMATOR, "passed": True,
                 "detail": "median 1.020×, p90 1.040× at 1000 shots"}]
    text = "\n".join(calibration_notes(records, SimpleNamespace(summary=summary, verdicts=verdicts)))
    assert "`agent_ppo` (`exp_calibration`, seed 0, 150,016 steps) was trained with `reward: truth`" in text
    assert "privileged, simulation-only" in text and "never in the" in text
    assert "`agent_ppo_measured`" in text and "`reward: measured`" in text
    assert "| estimator_only | 1000 | 1.0200 | 1.0400 |" in text
    assert "| standard | 1000 | 1.0190 |" in text and "cmaes" not in text
    assert "The estimator alone meets the issue target by itself (median 1.020×, p90 1.040× at 1000 shots)" in text
    assert "- 1000 shots: `agent_ppo` -0.0040 / -0.0040; `agent_ppo_measured` -0.0030 / -0.0030" in text


def test_a_rewrite_keeps_the_benchmark_sections_after_the_marker(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.results import BENCHMARK_MARKER, kept_benchmark_sections

    path = tmp_path / "results.md"
    assert kept_benchmark_sections(path) == []  # no file yet
    path.write_text("# old\n\ngenerated table\n")
    assert kept_benchmark_sections(path) == []  # no marker: nothing to keep
    path.write_text(f"# old\n\ngenerated table\n{BENCHMARK_MARKER}\n\n## Bench\n\nquoted output\n")
    assert kept_benchmark_sections(path) == [BENCHMARK_MARKER, "", "## Bench", "", "quoted output"]
    shipped = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text().splitlines()
    assert BENCHMARK_MARKER in shipped  # the shipped file's hand-quoted sections are protected
