"""A coupled two-transmon qibolab EMULATOR platform: flux-tunable q0, fixed q1, CR line.

q0 (5.0 GHz at its sweet spot, α/2π = −300 MHz, symmetric SQUID) has a flux line
(``0/flux``, offset 0: parked at the sweet spot); q1 (4.8 GHz, α/2π = −300 MHz) is fixed.
They are capacitively coupled, J/2π = 10 MHz (``pairs`` in ``parameters.json``), so a flux
pulse of 0.1238 Φ0 brings q0 onto q1 and swaps |10⟩ ↔ |01⟩ in 1/(4J) = 25 ns. q0's drive
line also has a cross-resonance channel ``0/drive_cr1`` at q1's frequency
(``Qubit.drive_extra[1]``), with q0's Rabi rate. Each qubit has its own drive and readout.
The emulator integrates the joint lab-frame Lindblad equation with QuTiP and samples both
readouts from the same shots (correlated counts). Loaded by name through
``QIBOLAB_PLATFORMS``.
"""

import pathlib

from qibolab import AcquisitionChannel, ConfigKinds, DcChannel, IqChannel, Platform, Qubit
from qibolab.instruments.emulator import (
    DriveEmulatorConfig,
    EmulatorController,
    FluxEmulatorConfig,
    HamiltonianConfig,
)

FOLDER = pathlib.Path(__file__).parent

ConfigKinds.extend([HamiltonianConfig, DriveEmulatorConfig, FluxEmulatorConfig])


def create() -> Platform:
    """Create the coupled two-qutrit emulator platform."""
    qubits = {
        0: Qubit.default(0, channels=["drive", "flux", "probe", "acquisition"], drive_extra={1: "0/drive_cr1"}),
        1: Qubit.default(1, channels=["drive", "probe", "acquisition"]),
    }
    channels = {}
    for qubit in qubits.values():
        channels[qubit.drive] = IqChannel(mixer=None, lo=None)
        channels[qubit.probe] = IqChannel(mixer=None, lo=None)
        channels[qubit.acquisition] = AcquisitionChannel(probe=qubit.probe, twpa_pump=None)
        for extra in qubit.drive_extra.values():
            channels[extra] = IqChannel(mixer=None, lo=None)
        if qubit.flux is not None:
            channels[qubit.flux] = DcChannel()
    instruments = {
        # 1 GSa/s AWG: the emulator holds each envelope sample for 1 ns.
        "emulator": EmulatorController(address="0.0.0.0", channels=channels, sampling_rate_=1.0),
    }
    return Platform.load(path=FOLDER, instruments=instruments, qubits=qubits)
