"""The Device protocol's operation types refuse what no device could run; the optional
batched extension is taken only when every device of a call supports it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from env_helpers import OpaqueDevice

from pulsecal.envs.physics import Transmon
from pulsecal.envs.protocol import (
    BatchedDevice,
    Delay,
    Device,
    Play,
    PulseSequence,
    SimulatedTruth,
    VirtualZ,
    batched_class,
    run_on_devices,
    truth_class,
)
from pulsecal.envs.simulated_device import DeviceParams, SimulatedDevice


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "empty"),
        ([0.1, np.nan], "NaN/inf"),
        ([0.1, np.inf], "NaN/inf"),
        ([0.1, complex(np.nan, 0.0)], "NaN/inf"),
        ([0.1, 1.0 + 1e-6], "peak"),
        ([0.8 + 0.8j], "peak"),
    ],
)
def test_play_refuses_bad_waveforms(samples: list[complex], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Play(np.asarray(samples, dtype=np.complex128))


def test_play_accepts_full_scale_and_freezes_its_samples() -> None:
    w = np.array([1.0, 1j, np.exp(1j * 0.3), 0.0])
    p = Play(w)
    assert p.waveform.dtype == np.complex128
    with pytest.raises(ValueError):
        p.waveform[0] = 0.5  # read-only: a shared waveform cannot be changed behind a cache
    assert p.key == w.astype(np.complex128).tobytes()


@pytest.mark.parametrize("phase", [math.nan, math.inf, -math.inf])
def test_virtual_z_refuses_non_finite_phase(phase: float) -> None:
    with pytest.raises(ValueError, match=r"VirtualZ\.phase"):
        VirtualZ(phase)


@pytest.mark.parametrize("duration_s", [-1e-9, math.nan, math.inf])
def test_delay_refuses_negative_or_non_finite(duration_s: float) -> None:
    with pytest.raises(ValueError, match=r"Delay\.duration_s"):
        Delay(duration_s)


def test_sequence_names_the_position_of_a_foreign_operation() -> None:
    ok = Play(np.array([0.5]))
    with pytest.raises(TypeError, match=r"ops\[2\] is str"):
        PulseSequence((ok, VirtualZ(0.1), "X"))  # type: ignore[arg-type]


def test_sequence_accepts_subclasses_of_the_operations() -> None:
    class LabelledZ(VirtualZ):
        pass

    seq = PulseSequence((Play(np.array([0.5])), LabelledZ(0.2), Delay(4e-9)))
    assert len(seq.ops) == 3


def _sim(seed: int) -> SimulatedDevice:
    return SimulatedDevice(DeviceParams(Transmon(), p1_given_0=0.02), rng=np.random.default_rng(seed))


def test_simulated_device_declares_both_extensions_and_plain_devices_neither() -> None:
    sim, plain = _sim(0), OpaqueDevice(_sim(0))
    assert isinstance(sim, BatchedDevice) and isinstance(sim, SimulatedTruth)
    assert isinstance(plain, Device)
    assert not isinstance(plain, BatchedDevice) and not isinstance(plain, SimulatedTruth)
    assert batched_class([sim, _sim(1)]) is SimulatedDevice
    assert truth_class([sim]) is SimulatedDevice
    assert batched_class([sim, plain]) is None and truth_class([plain, sim]) is None
    assert batched_class([]) is None


def test_run_on_devices_falls_back_to_run_with_the_same_counts() -> None:
    """A batch with a device lacking the extension runs every device through ``run``: the
    counts, generators and clocks are those of the batched path."""
    seq = [PulseSequence((Play(np.full(16, 0.3)), VirtualZ(0.4), Play(np.full(16, 0.2))))] * 3
    fast = [_sim(1), _sim(2)]
    slow = [OpaqueDevice(_sim(1)), _sim(2)]
    for _ in range(3):
        a = run_on_devices(fast, [seq, seq[:2]], [50, 20])
        b = run_on_devices(slow, [seq, seq[:2]], [50, 20])
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert slow[0].calls == 3
    assert [d.clock_s for d in fast] == [slow[0].clock_s, slow[1].clock_s]
