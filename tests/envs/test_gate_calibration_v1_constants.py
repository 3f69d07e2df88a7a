"""GateCalibration-v1's estimator constants, measured by ``measure_probe_constants``: the
hand-measured 20 ns defaults are reproduced, and the emulator-class env config carries the
constants of its 40 ns gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pulsecal.envs.calibration import DragGate
from pulsecal.envs.gate_calibration_v1 import GateCalibrationV1Config
from pulsecal.envs.physics import Transmon
from pulsecal.envs.presets import emulator_sampler, get_preset, transmon_emulator
from pulsecal.envs.probe_constants import ProbeConstants, measure_probe_constants

REPO = Path(__file__).resolve().parents[2]
EMULATOR_ENV = REPO / "configs" / "env" / "gate_calibration_v1_emulator.yaml"


def _close(got: float, want: float, rel: float) -> bool:
    return abs(got - want) <= rel * abs(want)


def test_reproduces_the_stored_20ns_constants() -> None:
    # The defaults were measured by hand on the 20 ns lifted Gaussian (σ = T/4), stated to
    # 1 % for the slope and ~15 % for the couplings.
    defaults = GateCalibrationV1Config()
    got = measure_probe_constants(get_preset("transmon_20ns").params, DragGate(20e-9))
    assert isinstance(got, ProbeConstants)
    assert _close(got.drag_slope_per_s, defaults.drag_slope_per_s, 0.01)
    for g, want in zip(got.couplings, defaults.couplings, strict=True):
        assert _close(g, want, 0.15), (got.couplings, defaults.couplings)


def test_slope_is_a_property_of_the_pulse_not_the_device() -> None:
    # Stated in the config docstring: within 1 % over α/2π in [−400, −180] MHz and Ω_R/2π
    # in [70, 130] MHz for the 20 ns gate.
    ref = measure_probe_constants(get_preset("transmon_20ns").params, DragGate(20e-9)).drag_slope_per_s
    for alpha, rabi in ((-400e6, 70e6), (-180e6, 130e6)):
        t = Transmon(anharmonicity_hz=alpha, rabi_max_hz=rabi, dt_s=1e-9)
        assert _close(measure_probe_constants(t, DragGate(20e-9)).drag_slope_per_s, ref, 0.01)
    # A longer gate is another pulse: the 40 ns slope is about half the 20 ns one.
    slow = measure_probe_constants(transmon_emulator().params, DragGate(40e-9)).drag_slope_per_s
    assert 0.4 < slow / ref < 0.6


def test_emulator_env_config_holds_its_measured_constants_and_ranges() -> None:
    kwargs = yaml.safe_load(EMULATOR_ENV.read_text())["kwargs"]
    preset = transmon_emulator()
    assert kwargs["gate_duration_s"] == preset.gate_duration_s
    got = measure_probe_constants(preset.params, DragGate(preset.gate_duration_s))
    assert _close(kwargs["drag_slope_per_s"], got.drag_slope_per_s, 0.01)
    for g, want in zip(kwargs["couplings"], got.couplings, strict=True):
        assert _close(g, want, 0.02)
    sampler = emulator_sampler()
    for name, (low, high) in kwargs["sampler"].items():
        assert getattr(sampler, name) == (low, high), name
    # And the config is a valid v1 config (the mapping becomes a DeviceSampler).
    cfg = GateCalibrationV1Config(**kwargs)
    assert cfg.sampler == sampler and cfg.shots_per_twin == 100


def test_emulator_class_devices_are_around_the_emulator() -> None:
    t = transmon_emulator().params.transmon
    s = emulator_sampler()
    assert s.anharmonicity_hz[0] < t.anharmonicity_hz < s.anharmonicity_hz[1]
    assert s.rabi_max_hz[0] < t.rabi_max_hz < s.rabi_max_hz[1]
    assert s.t1_s[0] < t.t1_s < s.t1_s[1]
    assert s.t2_fraction[0] < t.t2_s / (2 * t.t1_s) < s.t2_fraction[1]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"amplitude_depth": 3}, "amplitude_depth"),
    ({"drag_depth": 0}, "drag_depth"),
    ({"ramsey_delay_s": -1e-7}, "ramsey_delay_s"),
    ({"beta_step_rel": 1.5}, "beta_step_rel"),
    ({"detuning_step_hz": 0.0}, "detuning_step_hz"),
])
def test_bad_arguments_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        measure_probe_constants(transmon_emulator().params, DragGate(40e-9), **kwargs)  # type: ignore[arg-type]
