"""Ramsey's ``require_t2star``: a T2* far beyond the delays fails the full form by default,
and with ``require_t2star=False`` the node still calibrates the frequency (the setting of
configs/graph/bringup_emulator.yaml, whose emulator T2 of 40-50 µs is beyond its 2.5 µs scan)."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.agents.graph.experiments import Ramsey
from pulsecal.agents.graph.experiments.pulses import DEFAULT_GATE
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.physics.coupled import CoupledModel, Mode
from pulsecal.envs.readout import Readout

F0 = 5.0e9
RABI_MAX = 50e6


def _device() -> SimulatedMultiQubitDevice:
    # T2 = 400 µs against a 2 µs scan: the fringes decay by 0.5 %
    mode = Mode("q0", F0, -250e6, levels=2, t1_s=500e-6, t2_s=400e-6, rabi_max_hz=RABI_MAX, frame_hz=F0)
    return SimulatedMultiQubitDevice(MultiQubitParams(CoupledModel((mode,)), Readout()),
                                     rng=np.random.default_rng(0), open_system=True)


def _params(dev: SimulatedMultiQubitDevice) -> dict[str, float]:
    return {"q0.frequency_hz": F0 + 60e3, "q0.pi_amplitude": 1.0 / (2.0 * RABI_MAX * DEFAULT_GATE.area_s(dev.dt_s)),
            "q0.drag_beta": 0.0}


def test_an_unresolved_t2star_is_bad_data_unless_not_required() -> None:
    dev = _device()
    strict = Ramsey(max_delay_s=2e-6, points=21).run(dev, "q0", _params(dev), np.random.default_rng(1))
    assert strict.status == "bad_data" and "not resolved" in strict.message and strict.values == {}
    lenient = Ramsey(max_delay_s=2e-6, points=21, require_t2star=False).run(dev, "q0", _params(dev),
                                                                            np.random.default_rng(1))
    assert lenient.status == "out_of_spec", lenient.message  # the stored frequency is 60 kHz high
    se = lenient.quality["frequency_hz_stderr"]
    assert abs(lenient.values["q0.frequency_hz"] - F0) <= 3 * se
    assert "q0.t2star_s" not in lenient.values and "beyond the scan" in lenient.message


def test_require_t2star_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="require_t2star='no'"):
        Ramsey(require_t2star="no")  # type: ignore[arg-type]
