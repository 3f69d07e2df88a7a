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


# -- the realistic population (docs/devices.md) -------------------------------------------------


def test_realistic_sampler_covers_its_documented_ranges() -> None:
    from pulsecal.envs.presets import realistic_held_out_devices

    devs = realistic_held_out_devices(400, seed=7)
    t = [d.transmon for d in devs]
    rabi = np.array([x.rabi_max_hz for x in t])
    alpha = np.array([x.anharmonicity_hz for x in t])
    t1 = np.array([x.t1_s for x in t])
    t2 = np.array([x.t2_s for x in t])
    p10 = np.array([d.p1_given_0 for d in devs])
    p01 = np.array([d.p0_given_1 for d in devs])
    levels = np.array([x.levels for x in t])
    assert np.all((rabi >= 30e6) & (rabi <= 200e6)) and rabi.min() < 40e6 and rabi.max() > 190e6
    assert np.all((alpha >= -400e6) & (alpha <= -150e6)) and alpha.min() < -390e6 and alpha.max() > -160e6
    assert np.all((t1 >= 10e-6) & (t1 <= 300e-6))
    # log-uniform: the median sits near the geometric mean √(10·300) µs ≈ 55 µs
    assert 40e-6 < np.median(t1) < 75e-6
    ratio = t2 / t1
    assert np.all((ratio >= 0.1 - 1e-12) & (ratio <= 2.0 + 1e-12)) and ratio.min() < 0.2 and ratio.max() > 1.8
    assert np.all((p10 >= 0) & (p10 <= 0.10)) and p10.max() > 0.09
    assert np.all((p01 >= 0) & (p01 <= 0.20)) and p01.max() > 0.18
    assert set(levels.tolist()) == {3, 4} and 0.15 < np.mean(levels == 4) < 0.35
    assert all(d.amplitude_scale == 1.0 for d in devs)


def test_default_sampler_draws_what_it_drew_before_four_level_fraction() -> None:
    # The ninth draw is made only when four_level_fraction > 0: the default stream (and with
    # it the trajectories and results recorded on it) is unchanged, and so is the rng after it.
    s = DeviceSampler()
    rng = np.random.default_rng(5)
    d = s.sample(rng)
    ref = np.random.default_rng(5)
    u = ref.random(8)
    assert d.transmon.anharmonicity_hz == -340e6 + 80e6 * u[0] and d.transmon.levels == 3
    assert rng.random() == ref.random()


def test_sampler_validation_names_field_value_and_range() -> None:
    with pytest.raises(ValueError, match=r"DeviceSampler\.four_level_fraction=1\.5 is out of range: allowed \[0, 1\]"):
        DeviceSampler(four_level_fraction=1.5)
    with pytest.raises(ValueError, match=r"DeviceSampler\.rabi_max_hz=\(30000000\.0, 20000000000\.0\) is out of range: allowed \(low, high\) with 1000\.0 <= low <= high <= 2000000000\.0"):
        DeviceSampler.realistic(rabi_max_hz=(30e6, 2e10))
    with pytest.raises(ValueError, match=r"sampler\.name='wide' is unknown: allowed \['default', 'emulator', 'realistic'\]"):
        DeviceSampler.from_mapping({"name": "wide"})
    with pytest.raises(ValueError, match=r"sampler keys \['rabi_hz'\] are unknown"):
        DeviceSampler.from_mapping({"name": "realistic", "rabi_hz": [1e6, 2e6]})


def test_sampler_from_a_config_mapping_starts_from_its_named_base() -> None:
    s = DeviceSampler.from_mapping({"name": "realistic", "four_level_fraction": 0.0, "t1_s": None})
    assert s == DeviceSampler.realistic(four_level_fraction=0.0)
    assert DeviceSampler.from_mapping({"rabi_max_hz": [80e6, 120e6]}) == DeviceSampler(rabi_max_hz=(80e6, 120e6))


def test_realistic_held_out_stream_differs_from_the_training_stream() -> None:
    from pulsecal.envs.presets import realistic_held_out_devices

    s = DeviceSampler.realistic()
    for seed in (0, 1, 12345, 20_261_206):
        held = realistic_held_out_devices(16, seed=seed)
        assert held == realistic_held_out_devices(16, seed=seed)
        assert realistic_held_out_devices(4, seed=seed) == held[:4]
        # What a training env draws for the same seed: its generator is SeedSequence(seed)
        # (gymnasium's seeding), and the default held-out generator default_rng([seed, i]).
        train = np.random.default_rng(seed)
        trained = {s.sample(train) for _ in range(64)}
        default_stream = {s.sample(np.random.default_rng([seed, i])) for i in range(16)}
        assert not trained & set(held) and not default_stream & set(held)
    assert realistic_held_out_devices(8, seed=1) != realistic_held_out_devices(8, seed=2)
    with pytest.raises(ValueError, match="seed=-1"):
        realistic_held_out_devices(2, seed=-1)


def test_vector_env_refuses_a_mixed_level_sampler_with_batched_copies() -> None:
    from pulsecal.envs.gate_calibration_v1 import GateCalibrationV1Core

    with pytest.raises(ValueError, match=r"sampler\.four_level_fraction=0\.25 is out of range: allowed 0 or 1 with 4"):
        GateCalibrationV1Core(4, sampler=DeviceSampler.realistic())
    GateCalibrationV1Core(4, sampler=DeviceSampler.realistic(four_level_fraction=0.0))
    GateCalibrationV1Core(1, sampler={"name": "realistic"})
