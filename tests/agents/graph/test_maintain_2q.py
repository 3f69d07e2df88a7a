"""Maintenance of the two-qubit nodes: the CZ's maintenance check (``MaintainedCZ``), the
coupler nodes of ``configs/graph/maintain.yaml``, and the time averages that split 1Q and
2Q gates."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
from test_two_qubit_nodes import CZ_PARAMS, _cz_params

from pulsecal.agents.graph.experiments.cz_check import MaintainedCZ
from pulsecal.agents.graph.maintain import MaintenanceReport
from pulsecal.agents.pipelines.bench_maintain import maintenance_graph, table
from pulsecal.agents.pipelines.bench_nodes import true_cz_errors
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device


def test_the_cz_check_passes_a_calibrated_cz_and_corrects_drifted_phases() -> None:
    """The open two_transmons_cz its CZ_PARAMS were calibrated on (~1 s): the calibrated CZ
    passes at the reference and one round; with its virtual Zs 0.25 rad off the check is out of spec and returns
    corrected phases (check_corrects takes them) that bring the true error back down."""
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0),
                                  spectators="none")
    # 4x the default shots per round: the default round reads this CZ's phases to ~0.1 rad,
    # too coarse for a test of what the check decides
    e = MaintainedCZ(shots_round=800)
    good = e.run(dev, ("q0", "q1"), _cz_params(), np.random.default_rng(4), cheap=True)
    assert good.status == "in_spec", good.message
    assert not good.values and good.shots == 7 * e.shots_reference + 8 * e.shots_round
    off = {**_cz_params(), "q0-q1.cz_phase_a_rad": CZ_PARAMS["q0-q1.cz_phase_a_rad"] + 0.25,
           "q0-q1.cz_phase_b_rad": CZ_PARAMS["q0-q1.cz_phase_b_rad"] - 0.25}
    r = e.run(dev, ("q0", "q1"), off, np.random.default_rng(4), cheap=True)
    assert r.status == "out_of_spec", r.message
    assert set(r.values) == {"q0-q1.cz_phase_a_rad", "q0-q1.cz_phase_b_rad"}
    assert r.shots == e.shots(cheap=True)
    for k in r.values:
        assert abs(math.remainder(r.values[k] - CZ_PARAMS[k], 2 * math.pi)) < 0.1, (k, r.values[k])
    before = true_cz_errors(dev, ("q0", "q1"), off)["error"]
    after = true_cz_errors(dev, ("q0", "q1"), {**off, **r.values})["error"]
    assert before > 0.02 and after < before / 4, (before, after)


def test_a_moved_conditional_phase_asks_for_the_full_calibration() -> None:
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0),
                                  spectators="none")
    # 3 mΦ0 off the calibrated plateau: the exchange no longer closes at π
    p = {**_cz_params(), "q0-q1.cz_amplitude_phi0": CZ_PARAMS["q0-q1.cz_amplitude_phi0"] + 0.003}
    r = MaintainedCZ(shots_round=800).run(dev, ("q0", "q1"), p, np.random.default_rng(4), cheap=True)
    assert r.status == "out_of_spec" and not r.values, r.message
    assert "full calibration" in r.message


def test_an_alarm_is_confirmed_and_an_unverified_correction_escalates() -> None:
    """With an in-spec bound no reading can meet, the first look's alarm takes the confirming
    look (reference and round again), and the phase correction cannot pass its verification
    round: out of spec without values, so maintenance runs the full calibration."""
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), spectators="none")
    e = MaintainedCZ(shots_round=800, check_max_estimated_error=1e-5)
    r = e.run(dev, ("q0", "q1"), _cz_params(), np.random.default_rng(4), cheap=True)
    assert r.status == "out_of_spec" and not r.values, r.message
    assert r.quality["check_rounds"] == 2 and "verification round does not pass" in r.message
    assert r.shots == e.shots(cheap=True) == 2 * 7 * e.shots_reference + 5 * 8 * e.shots_round
    alone = MaintainedCZ(shots_round=800, check_max_estimated_error=1e-5, confirm_rounds=0, verify_correction=False)
    a = alone.run(dev, ("q0", "q1"), _cz_params(), np.random.default_rng(4), cheap=True)
    assert a.quality["check_rounds"] == 1 and set(a.values) == {"q0-q1.cz_phase_a_rad", "q0-q1.cz_phase_b_rad"}
    assert a.shots == 7 * alone.shots_reference + 3 * 8 * alone.shots_round


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"MaintainedCZ.confirm_rounds=5 is out of range"):
        MaintainedCZ(confirm_rounds=5)
    with pytest.raises(ValueError, match=r"MaintainedCZ.check_max_estimated_error=0 is out of range"):
        MaintainedCZ(check_max_estimated_error=0)
    with pytest.raises(ValueError, match=r"MaintainedCZ.correct_phase_tolerance_rad=4.0 is out of range"):
        MaintainedCZ(correct_phase_tolerance_rad=4.0)


def test_maintain_yaml_maintains_the_couplers_of_ring_8() -> None:
    g = maintenance_graph(["q0", "q1", "q2"], True,
                          str(resources.files("pulsecal.configs") / "graph" / "maintain.yaml"))
    pairs = ("q0-q1", "q1-q2")
    for t in ("idle_pair", "coupler_probe", "static_zz", "cz_chevron", "cz_calibration"):
        assert {f"{t}:{p}" for p in pairs} <= set(g.names), t
    # every ring_8 pair has a tunable qubit: a flux CZ, no ECR
    assert not [n for n in g.names if n.startswith("ecr_calibration:")]
    cz = g["cz_calibration:q0-q1"]
    assert isinstance(cz.experiment, MaintainedCZ) and cz.timeout_s == 3600
    assert math.isinf(g["cz_chevron:q0-q1"].timeout_s)  # looked at through diagnose
    deps = {d.name for d in g.dependencies("cz_chevron:q0-q1")}
    assert {"idle_pair:q0-q1", "coupler_probe:q0-q1", "rb1q:q0", "rb1q:q1"} <= deps


def test_time_averages_split_qubits_and_couplers() -> None:
    rep = MaintenanceReport(samples=[
        (0.0, {"q0": (5e-4, 4e-4, 4e-4), "q1": (7e-4, 6e-4, 5e-4), "q0-q1": (6e-3, 1e-3, 3e-3)}),
        (300.0, {"q0": (7e-4, 4e-4, 4e-4), "q1": (7e-4, 6e-4, 5e-4), "q0-q1": (8e-3, 1e-3, 3e-3)}),
    ])
    me = rep.mean_errors()
    assert me["x_error"] == pytest.approx(6.5e-4) and me["x_excess"] == pytest.approx(2e-4)
    assert me["cz_error"] == pytest.approx(7e-3) and me["cz_excess"] == pytest.approx(4e-3)
    assert me["cz_leakage"] == pytest.approx(1e-3)
    # every gate-tick alike: (4 X errors + 2 CZ errors) / 6
    assert me["gate_error"] == pytest.approx((26e-4 + 14e-3) / 6)
    assert me["gate_excess"] == pytest.approx((8e-4 + 8e-3) / 6)
    assert math.isnan(MaintenanceReport().mean_errors()["cz_error"])


def test_the_bench_table_lists_1q_2q_and_every_gate_with_ratios() -> None:
    def row(x: float, cz: float, shots: int) -> dict[str, object]:
        return {"x_error": x, "sx_error": x, "coherence_limit": 4e-4, "x_excess": x - 4e-4, "cz_error": cz,
                "cz_limit": 3e-3, "cz_excess": cz - 3e-3, "gate_error": (x + cz) / 2,
                "gate_excess": (x + cz) / 2 - 1.7e-3, "shots": shots, "checks": 1, "calibrations": 0, "wall_s": 1.0}
    out = {"qubits": ["q0", "q1"], "pairs": ["q0-q1"], "hours": 24.0, "tick_s": 300.0, "drift_seed": 5,
           "flux_drift_phi0_per_sqrt_hour": 1e-5, "bringup": {"shots": 1000},
           "strategies": {"graph": row(5e-4, 5e-3, 100), "fixed": row(6e-4, 7e-3, 200)}}
    text = table(out)
    assert "CZ error" in text and "gate err" in text and "couplers q0-q1" in text
    assert ("fixed/graph: X error 1.20× (excess 2.00×), CZ error 1.40× (excess 2.00×), gate error 1.38× "
            "(excess 2.00×); shots (graph/fixed) 0.50× as run, 0.08× with its bring-up share") in text
