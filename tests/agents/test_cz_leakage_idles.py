"""The leakage probe's idle, chosen from the pair's f02 − f11: the closed forms of the
three-gate sum, a pair on which a fixed 1 ns idle is blind, and the probe on a simulated
pair of that kind seeing a leak that the 1 ns idle misses."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.agents.baselines.cz_leakage_idles import (
    FIXED_IDLES_S,
    choose_leakage_idles,
    pair_detuning_hz,
    repeated_leak_sensitivity,
    two_idle_sensitivity,
)
from pulsecal.agents.baselines.cz_textbook import CZTextbook

# ring_8's q7-q0: q0 tunable at 6.05 GHz (α −230 MHz), q7 fixed at 5.51 GHz.
RING_Q7_Q0_HZ = pair_detuning_hz(6.05e9, 5.51e9, -230e6)


def test_three_gate_sum_and_two_idle_sensitivity_match_their_closed_forms() -> None:
    # |1 + e^{iφ} + e^{2iφ}|²/9 = (1 + 2 cos φ)²/9: 1 at 0, 0 at ±1/3 turn, 1/9 at 1/2
    phi = np.linspace(0.0, 1.0, 37)
    assert repeated_leak_sensitivity(phi) == pytest.approx((1 + 2 * np.cos(2 * np.pi * phi)) ** 2 / 9, abs=1e-12)
    # an idle that shifts by 0 or ±1/3 turn leaves some inter-gate phase blind in both readings
    for shift in (0.0, 1 / 3, 2 / 3, 1.0):
        assert two_idle_sensitivity(shift) == pytest.approx(0.0, abs=1e-12)
    # half a turn: max((1 + 2c)², (1 − 2c)²)/9 >= 1/9, reached at c = 0
    assert two_idle_sensitivity(0.5) == pytest.approx(1 / 9, abs=1e-9)
    assert two_idle_sensitivity(0.25) < two_idle_sensitivity(0.5)


def test_pair_detuning_is_the_tunable_doubly_excited_state_above_eleven() -> None:
    assert pair_detuning_hz(6.1e9, 5.5e9, -230e6) == pytest.approx(0.37e9)  # two_transmons_cz
    assert RING_Q7_Q0_HZ == pytest.approx(0.31e9)
    with pytest.raises(ValueError, match="control_hz="):
        pair_detuning_hz(6e9, float("nan"), -2e8)


def test_a_pair_on_which_one_nanosecond_is_blind_gets_an_idle_that_is_not() -> None:
    # 0.31 GHz × 1 ns = 0.31 turn, 0.02 turn from 1/3: one cancelling phase onto the other
    assert two_idle_sensitivity(RING_Q7_Q0_HZ * 1e-9) < 0.005
    zero, d = choose_leakage_idles(RING_Q7_Q0_HZ, 1e-9, uncertainty_hz=15e6)
    assert zero == 0.0
    assert d / 1e-9 == pytest.approx(round(d / 1e-9), abs=1e-9)  # on the AWG grid
    assert d != pytest.approx(1e-9)
    # over the uncertainty interval of f02 − f11: several times 1 ns's sensitivity at every
    # point (measured: ≥ 17×), and 0.03 on average (measured: 0.054; 1 ns: 0.002)
    dets = RING_Q7_Q0_HZ + np.linspace(-15e6, 15e6, 7)
    for det in dets:
        assert two_idle_sensitivity(det * d) > 5 * two_idle_sensitivity(det * 1e-9)
    assert np.mean([two_idle_sensitivity(x * d) for x in dets]) > 0.03
    assert np.mean([two_idle_sensitivity(x * 1e-9) for x in dets]) < 0.005
    assert two_idle_sensitivity(RING_Q7_Q0_HZ * d) > 0.04
    # a known detuning gets the grid idle nearest half a turn (mod 1/3 turn: 3Δd nearest ½ mod 1)
    _, d0 = choose_leakage_idles(RING_Q7_Q0_HZ, 1e-9)
    assert two_idle_sensitivity(RING_Q7_Q0_HZ * d0) == pytest.approx(
        max(two_idle_sensitivity(RING_Q7_Q0_HZ * n * 1e-9) for n in range(1, 11)), abs=0.005)


@pytest.mark.parametrize(("kw", "key"), [({"detuning_hz": 0.0}, "detuning_hz="), ({"dt_s": 0.0}, "dt_s="),
                                         ({"uncertainty_hz": -1.0}, "uncertainty_hz="),
                                         ({"max_idle_s": 30e-9}, "max_idle_s="), ({"gates": 1}, "gates=")])
def test_bad_idle_settings_are_refused_by_name(kw: dict[str, float], key: str) -> None:
    args = {"detuning_hz": 0.37e9, "dt_s": 1e-9, **kw}
    det, dt = args.pop("detuning_hz"), args.pop("dt_s")
    with pytest.raises(ValueError, match=key):
        choose_leakage_idles(det, dt, **args)  # type: ignore[arg-type]


def test_textbook_chooses_its_idles_from_the_pair_unless_given() -> None:
    assert CZTextbook(leakage_delays_s=(0.0, 2e-9), pair_detuning_hz=RING_Q7_Q0_HZ).leakage_delays == (0.0, 2e-9)
    assert CZTextbook().leakage_delays == FIXED_IDLES_S == (0.0, 1e-9)  # f02 − f11 not known
    ring = CZTextbook(pair_detuning_hz=RING_Q7_Q0_HZ)
    assert ring.leakage_delays == choose_leakage_idles(RING_Q7_Q0_HZ, 1e-9, uncertainty_hz=15e6)
    # the same shots either way: two idles per length
    assert ring.min_budget() == CZTextbook(leakage_delays_s=(0.0, 1e-9)).min_budget() == 28_000


def _ring_like_pair():  # type: ignore[no-untyped-def]
    """two_transmons_cz with ring_8's q7 (control) and q0 (tunable) frequencies, closed."""
    from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
    from pulsecal.envs.multi_qubit_model import DeviceModel
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    base = get_multi_qubit_preset("two_transmons_cz").params
    m = base.model
    assert isinstance(m, DeviceModel)
    modes = (m.modes[0].replace(frequency_hz=5.51e9, anharmonicity_hz=-220e6, frame_hz=None),
             m.modes[1].replace(frequency_hz=6.05e9, anharmonicity_hz=-230e6, frame_hz=None))
    params = base.replace(model=DeviceModel(modes, m.couplings, m.crosstalk, m.dt_s))
    return SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)


def test_chosen_idle_sees_a_planted_leak_that_the_one_nanosecond_idle_misses() -> None:
    """The probe on a ring_8 q7-q0-like pair, at its π amplitude and 2 ns off its
    least-leaking length (the textbook's closed calibration: 0.1408 Φ0, 50.3 ns)."""
    from pulsecal.envs import cz_calibration_core as core

    dev = _ring_like_pair()
    amp, length = 0.1408, 48.3e-9
    fixed = CZTextbook(leakage_delays_s=(0.0, 1e-9))
    chosen = CZTextbook(pair_detuning_hz=RING_Q7_Q0_HZ)
    truth = core.true_metrics(dev, fixed.pulse, np.array([amp, length, 0.0, 0.0]))
    # measured: L1 9.9e-3 per gate
    assert truth["leakage"] > 5e-3
    ref = dev.outcome_probabilities([core.reference_sequences(fixed.pulse)[6]])[0, 3]

    def loss(tb: CZTextbook) -> float:
        seqs = [tb._eleven_delayed(amp, length, 3, d) for d in tb.leakage_delays]
        return float(ref - dev.outcome_probabilities(seqs)[:, 3].min())

    # measured: 0.014 with 0 and 1 ns (σ of one 250-shot reading ~0.02), 0.29 with 0 and 5 ns
    assert loss(fixed) < 0.03
    assert loss(chosen) > 0.15


def test_harness_gives_the_textbook_the_idles_of_its_mode() -> None:
    from pulsecal.agents.pipelines.two_qubit_eval import (
        TwoQubitEvalSettings,
        cz_leakage_idles,
        held_out_devices,
        textbook_for_budget,
    )

    params = held_out_devices("cz", 8)[7]
    m = params.model
    assert cz_leakage_idles("fixed", params) == {}
    # the device's qubit frequencies with the spec sheet's anharmonicity (−230 MHz), not its own
    det = cz_leakage_idles("measured", params)["pair_detuning_hz"]
    assert det == pytest.approx(m.mode("q1").frequency_hz - 230e6 - m.mode("q0").frequency_hz)
    assert det != pytest.approx(pair_detuning_hz(m.mode("q1").frequency_hz, m.mode("q0").frequency_hz,
                                                 m.mode("q1").anharmonicity_hz))
    assert cz_leakage_idles("spec_sheet", params)["pair_detuning_hz"] == pytest.approx(0.37e9)
    tb = textbook_for_budget("cz", 20_000, cz_idles=cz_leakage_idles("measured", params))
    assert tb is not None and tb.leakage_delays == choose_leakage_idles(det, 1e-9, uncertainty_hz=15e6)
    assert TwoQubitEvalSettings().cz_idles == "fixed"
    with pytest.raises(ValueError, match="cz_idles="):
        TwoQubitEvalSettings(cz_idles="auto")


def test_graph_node_takes_the_pair_from_the_store() -> None:
    from pulsecal.agents.graph.experiments.cz import CZCalibration
    from pulsecal.agents.graph.experiments.pair import PairRoles

    roles = PairRoles(control="q7", tunable="q0")
    params = {"q0.frequency_hz": 6.05e9, "q7.frequency_hz": 5.51e9}
    node = CZCalibration()
    assert node.leakage_idles(roles, params, 1e-9) == (0.0, 5e-9)
    # a stored anharmonicity of the tunable qubit wins over the spec sheet's
    stored = {**params, "q0.anharmonicity_hz": -250e6}
    assert node.leakage_idles(roles, stored, 1e-9) == choose_leakage_idles(0.29e9, 1e-9, uncertainty_hz=15e6)
    assert CZCalibration(leakage_delays_s=(0.0, 1e-9)).leakage_idles(roles, params, 1e-9) == (0.0, 1e-9)
    # two idles per length either way: the node's plan is unchanged
    assert node.shots(cheap=False) == CZCalibration(leakage_delays_s=(0.0, 1e-9)).shots(cheap=False) == 19_900
    with pytest.raises(ValueError, match="tunable_anharmonicity_hz="):
        CZCalibration(tunable_anharmonicity_hz=200e6)


def test_graph_node_keeps_the_fixed_idles_when_the_pair_gives_no_phase() -> None:
    from pulsecal.agents.graph.experiments.cz import CZCalibration
    from pulsecal.agents.graph.experiments.pair import PairRoles

    # f_t + α_t = f_c: |02⟩ degenerate with |11⟩ at idle, nothing to choose from
    params = {"q0.frequency_hz": 5.73e9, "q1.frequency_hz": 5.5e9}
    assert CZCalibration().leakage_idles(PairRoles("q1", "q0"), params, 1e-9) == FIXED_IDLES_S
