"""The Device protocol's operation types refuse what no device could run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.protocol import Delay, Play, PulseSequence, VirtualZ


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
