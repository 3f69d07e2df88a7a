"""A two-transmon qibolab EMULATOR platform for pulsecal's per-qubit sweep tests.

Two uncoupled 3-level transmons (5.0 and 5.3 GHz, so each drive is far detuned from the
other qubit), each with its own drive (``<q>/drive``, 50 and 40 MHz Rabi rate) and
readout (``<q>/acquisition``). Hamiltonian parameters live in ``parameters.json``; the
emulator integrates the joint lab-frame Lindblad equation with QuTiP. Loaded by name
through ``QIBOLAB_PLATFORMS``.
"""

import pathlib

from qibolab import AcquisitionChannel, ConfigKinds, IqChannel, Platform, Qubit
from qibolab.instruments.emulator import (
    DriveEmulatorConfig,
    EmulatorController,
    HamiltonianConfig,
)

FOLDER = pathlib.Path(__file__).parent

ConfigKinds.extend([HamiltonianConfig, DriveEmulatorConfig])


def create() -> Platform:
    """Create the two-qutrit emulator platform."""
    qubits = {q: Qubit.default(q, channels=["drive", "probe", "acquisition"]) for q in (0, 1)}
    channels = {}
    for qubit in qubits.values():
        channels[qubit.drive] = IqChannel(mixer=None, lo=None)
        channels[qubit.probe] = IqChannel(mixer=None, lo=None)
        channels[qubit.acquisition] = AcquisitionChannel(probe=qubit.probe, twpa_pump=None)
    instruments = {
        # 1 GSa/s AWG: the emulator holds each envelope sample for 1 ns.
        "emulator": EmulatorController(address="0.0.0.0", channels=channels, sampling_rate_=1.0),
    }
    return Platform.load(path=FOLDER, instruments=instruments, qubits=qubits)
