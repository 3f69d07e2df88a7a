"""Verdicts on baseline results: shots counted, rows and their honesty counts."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.agents.baselines import CalibrationResult
from pulsecal.agents.evaluation.verification import honesty, verdict_row, verify_result
from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.drag import optimal_params
from pulsecal.envs.presets import get_preset
from pulsecal.envs.verification import Reason, VerificationSettings


def test_verify_result_counts_its_shots_and_refuses_what_the_budget_cannot_pay() -> None:
    devs = [SimulatedDevice(get_preset("transmon_20ns").params, rng=np.random.default_rng(i)) for i in range(2)]
    task = CalibrationTask(list(devs), DragGate(20e-9))
    p = np.stack([optimal_params(d.current_transmon(), task.gate).as_array() for d in devs])
    # One stage and the RB cross-check that a passing gate runs.
    need = VerificationSettings().shots + VerificationSettings().rb_check_shots
    res = CalibrationResult(p, np.array([1000, 1000 - 1]))
    task.shots_used[:] = res.shots_used
    verdicts = verify_result(task, res, budget=1000 + need - 1)
    assert verdicts[0].reason is Reason.BUDGET_TOO_SMALL and verdicts[0].shots_used == 0
    assert verdicts[1].shots_used == need
    assert task.shots_used.tolist() == [1000, 999 + need]
    truth = task.true_metrics(p)
    assert truth is not None
    rows = [verdict_row({"infidelity": float(1 - truth["fidelity"][b])}, v) for b, v in enumerate(verdicts)]
    assert rows[1]["verdict"] == "calibrated" and rows[1]["covered"] and not rows[1]["false_calibrated"]
    assert rows[0]["covered"] is None
    # A row whose truth is far above the limit under a calibrated verdict is counted false.
    bad = verdict_row({"infidelity": 10 * verdicts[1].coherence_limit}, verdicts[1])
    h = honesty([rows[0], rows[1], bad])
    assert h["false_calibrated"] == 1 and h["calibrated"] == 2 and h["coverage"] == 0.5


def test_a_lengthened_gate_is_verified_at_the_gate_it_was_calibrated_at() -> None:
    """A 35 MHz device cannot play the 20 ns π pulse (|u| > 1): calibrated at the longer gate
    it fits, its verdict must judge that gate, not refuse the nominal one."""
    from pulsecal.agents.baselines import StandardCalibration, run_within_limits

    p = get_preset("transmon_20ns").params
    weak = SimulatedDevice(p.replace(transmon=p.transmon.replace(rabi_max_hz=35e6)), rng=np.random.default_rng(3))
    task = CalibrationTask([weak], DragGate(20e-9))
    start = optimal_params(weak.current_transmon(), DragGate(40e-9)).as_array()
    start[0] *= 40 / 20  # the same rotation's amplitude at the nominal 20 ns gate (> 1)
    res = run_within_limits(StandardCalibration(), task, start, 5000)
    assert res.gate_duration_s[0] > 20e-9 and res.failures == [None]
    (verdict,) = verify_result(task, res)
    assert verdict.reason is not Reason.AMPLITUDE_LIMIT
    truth = task.true_metrics(res.params)
    assert truth is not None
    assert verdict.status == "calibrated", verdict
    assert verdict.error_interval[0] <= 1 - truth["fidelity"][0] <= verdict.error_interval[1]


def test_an_evaluation_with_verify_writes_and_reads_back_the_verdict_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pulsecal.agents.baselines import StandardCalibration
    from pulsecal.agents.evaluation import (
        EvaluationSettings,
        read_results_csv,
        summarise,
        write_csv,
    )
    from pulsecal.agents.evaluation.benchmarks import calibration_rows

    settings = EvaluationSettings(out_dir=tmp_path, n_devices=3, budgets=(1000,), baselines=(StandardCalibration(),),
                                  workers=1, pulse_shaping=False, drift=False, progress=False, plots=False,
                                  verify=True)
    rows = calibration_rows(settings)
    assert len(rows) == 3
    s = VerificationSettings()
    for r in rows:
        assert r["verdict"] in ("calibrated", "failed")
        # Nothing (refused), one stage (failed), or one stage and the RB cross-check.
        assert r["verification_shots"] in (0, s.shots, s.shots + s.rb_check_shots)
        # The device counted the verification's shots on top of the calibration's.
        assert r["device_shots"] == r["shots_used"] or r["device_shots"] == r["shots_used"] + r["verification_shots"]
    back = read_results_csv(write_csv(tmp_path / "results.csv", rows))
    assert [r["verdict"] for r in back] == [r["verdict"] for r in rows]
    assert [r["false_calibrated"] for r in back] == [r["false_calibrated"] for r in rows]
    (s,) = summarise(rows)
    assert s["calibrated"] == sum(r["verdict"] == "calibrated" for r in rows)
    assert s["false_calibrated"] == sum(bool(r["false_calibrated"]) for r in rows)


def test_false_failed_counts_gates_within_the_criterion_that_the_verdict_did_not_pass() -> None:
    from pulsecal.envs.verification import failed

    limit = 1e-4
    ok = failed(Reason.BUDGET_TOO_SMALL, limit, "shots", "")
    rows = [verdict_row({"infidelity": 1.2 * limit}, ok),  # within 1.5×: a false failure
            verdict_row({"infidelity": 3.0 * limit}, ok)]  # over it: rightly failed
    assert [r["false_failed"] for r in rows] == [True, False]
    h = honesty(rows)
    assert h["false_failed"] == 1 and h["false_failed_rate"] == 1.0


def test_the_env_config_schema_lists_every_verification_setting() -> None:
    """An env config can set every ``VerificationSettings`` field (the ``quick()`` ones included)."""
    import dataclasses

    from pulsecal.configs.env_schema import VerificationConf

    assert {f.name for f in dataclasses.fields(VerificationConf)} == set(VerificationSettings.__dataclass_fields__)


def test_the_evaluation_takes_verification_settings_and_refuses_a_misspelt_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pulsecal.agents.evaluation import EvaluationSettings

    s = EvaluationSettings(out_dir=tmp_path, verify=True, verification={"measure_decay": False, "stages": 1})
    assert s.verification_settings() == VerificationSettings(measure_decay=False, stages=1)
    # Without a verification mapping the evaluation verifies with the trusted defaults.
    assert EvaluationSettings(out_dir=tmp_path).verification_settings() == VerificationSettings.trusted()
    with pytest.raises(ValueError, match="verification"):
        EvaluationSettings(out_dir=tmp_path, verification={"measure_decays": True})


@pytest.mark.slow  # composing the Hydra config costs ~6 s in a fresh process
def test_pulsecal_evaluate_sets_the_verification_from_its_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException

    from pulsecal.agents.pipelines.evaluate import to_settings

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"out_dir={tmp_path}", "verify=true", "verification.measure_decay=false",
                                             "verification.equator_trains=false", "verification.stages=1"])
        with pytest.raises(ConfigCompositionException):
            compose("evaluate", overrides=[f"out_dir={tmp_path}", "verification.measure_decays=true"])
    settings, _ = to_settings(cfg)
    v = settings.verification_settings()
    # The fields set change, the rest keep the (trusted) defaults: train_shots 256.
    assert (v.measure_decay, v.equator_trains, v.stages, v.train_shots) == (False, False, 1, 256)
