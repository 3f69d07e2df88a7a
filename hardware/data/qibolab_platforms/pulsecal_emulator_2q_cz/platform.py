"""A coupled two-transmon qibolab EMULATOR platform with ``two_transmons_cz``'s nominal model.

The CZ env (``pulsecal/CZCalibration-v0``) plays its flux pulse on the tunable qubit q1,
in Φ0 of that qubit's SQUID, and its single-qubit gates at a 50 MHz Rabi rate; this
platform is that preset's nominal device in qibolab's terms, so a CZ session runs on it
with the env's own pulse and amplitudes:

- q0 fixed at 5.5 GHz, α/2π = −220 MHz, T1 40 µs, T2 30 µs;
- q1 flux-tunable (symmetric SQUID, idle at the sweet spot, flux line ``1/flux``) at
  6.1 GHz, α/2π = −230 MHz, T1 30 µs, T2 20 µs;
- J/2π = 8 MHz (``pairs``); each drive at its qubit's frequency with Ω/2π = 50 MHz;
- the emulator's SQUID formula f(Φ) = (f − α)·|cos πΦ|^{1/2} + α is the preset's
  ``Mode.frequency_at`` with E_C = −α, so the |11⟩↔|02⟩ crossing is at the preset's
  ≈ 0.154 Φ0; the 1→2 relaxation time is T1/2 (what the preset's ladder operators imply).

What the preset has and this platform does not (docs/lab_sessions.md): thermal
population, readout error and the flux line's 0.5 ns low-pass. Loaded by name through
``QIBOLAB_PLATFORMS``.
"""

import pathlib

from qibolab import Platform, Qubit

from pulsecal.hardware.adapters.qibolab_emulator import emulator_platform

FOLDER = pathlib.Path(__file__).parent


def create() -> Platform:
    """Create the two-qutrit CZ emulator platform (1 GSa/s: the CZ env's 1 ns sample)."""
    return emulator_platform(FOLDER, {
        0: Qubit.default(0, channels=["drive", "probe", "acquisition"]),
        1: Qubit.default(1, channels=["drive", "flux", "probe", "acquisition"]),
    })
