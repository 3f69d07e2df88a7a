"""Named devices, the random-device sampler and the held-out evaluation set."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.presets import (
    DeviceSampler,
    get_preset,
    held_out_devices,
    make_device,
    preset_names,
    transmon_emulator,
)


def test_presets_match_their_specification() -> None:
    assert preset_names() == ("transmon_20ns", "transmon_drifting", "transmon_emulator", "transmon_short")
    p = get_preset("transmon_20ns")
    t = p.params.transmon
    assert (t.anharmonicity_hz, t.t1_s, t.t2_s, t.dt_s, t.rabi_max_hz) == (-300e6, 100e-6, 100e-6, 1e-9, 100e6)
    assert p.gate_duration_s == 20e-9 and p.drift is None
    s = get_preset("transmon_short").params.transmon
    assert (s.anharmonicity_hz, s.dt_s) == (-200e6, 0.5e-9)
    d = get_preset("transmon_drifting")
    assert d.drift is not None and d.params == p.params
    e = get_preset("transmon_emulator")  # the qibolab emulator platform's simulated twin
    assert e == transmon_emulator() and e.gate_duration_s == 40e-9 and e.drift is None
    assert (e.params.transmon.rabi_max_hz, e.params.transmon.dt_s) == (50e6, 1e-9)


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"transmon_20ns.*transmon_drifting.*transmon_short"):
        get_preset("transmon_7ns")


def test_drifting_preset_drifts_along_the_clock() -> None:
    dev = make_device("transmon_drifting", np.random.default_rng(0))
    assert isinstance(dev, SimulatedDevice)
    t0 = dev.current_transmon()
    dev.advance(3600.0)
    t1 = dev.current_transmon()
    assert t1.detuning_hz != t0.detuning_hz and t1.rabi_max_hz != t0.rabi_max_hz
    assert abs(t1.detuning_hz) < 200e3  # a 20 kHz/√h walk stays near 20 kHz (≤ 10 σ)


def test_sampler_draws_valid_devices_in_range() -> None:
    s = DeviceSampler()
    rng = np.random.default_rng(1)
    devs = [s.sample(rng) for _ in range(200)]
    assert all(isinstance(d, DeviceParams) for d in devs)
    t1 = np.array([d.transmon.t1_s for d in devs])
    t2 = np.array([d.transmon.t2_s for d in devs])
    assert np.all(t2 <= 2 * t1) and np.all((t1 >= 50e-6) & (t1 <= 200e-6))
    alpha = np.array([d.transmon.anharmonicity_hz for d in devs])
    assert np.all((alpha >= -340e6) & (alpha <= -260e6))
    scale = np.array([d.amplitude_scale for d in devs])
    assert np.all(np.abs(scale - 1) <= 0.05) and scale.std() > 0.01
    with pytest.raises(ValueError, match=r"DeviceSampler\.t2_fraction"):
        DeviceSampler(t2_fraction=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"DeviceSampler\.rabi_max_hz"):
        DeviceSampler(rabi_max_hz=(2e8, 1e8))


def test_held_out_set_is_fixed_by_its_seed() -> None:
    a = held_out_devices(8, seed=3)
    assert a == held_out_devices(8, seed=3)
    assert held_out_devices(3, seed=3) == a[:3]
    assert held_out_devices(8, seed=4) != a
    assert len(set(a)) == 8
    with pytest.raises(ValueError, match="n="):
        held_out_devices(0)
