"""A one-transmon qibolab EMULATOR platform for pulsecal's offline adapter tests.

Single qutrit (3 levels, so leakage exists) with T1/T2, driven through ``0/drive`` and
read out through ``0/acquisition``. Hamiltonian parameters live in ``parameters.json``
(section ``configs.hamiltonian``); qibolab's emulator integrates the lab-frame
Lindblad equation with QuTiP. Loaded by name through ``QIBOLAB_PLATFORMS``.
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
    """Create the single-qutrit emulator platform."""
    qubit = Qubit.default(0, channels=["drive", "probe", "acquisition"])
    channels = {
        qubit.drive: IqChannel(mixer=None, lo=None),
        qubit.probe: IqChannel(mixer=None, lo=None),
        qubit.acquisition: AcquisitionChannel(probe=qubit.probe, twpa_pump=None),
    }
    instruments = {
        # 1 GSa/s AWG: the emulator holds each envelope sample for 1 ns.
        "emulator": EmulatorController(
            address="0.0.0.0", channels=channels, sampling_rate_=1.0
        ),
    }
    return Platform.load(path=FOLDER, instruments=instruments, qubits={0: qubit})
