"""qibolab EMULATOR platforms as our model: the ``Transmon`` that matches one of its qubits.

The emulator's physics relative to ours (``emulator_transmon`` builds the matching
``Transmon``): drive amplitude a on a channel with ``rabi_frequency`` Ω gives our
|u|·rabi_max_hz with rabi_max_hz = Ω (a π pulse needs a·T = 1/(2Ω) for a square pulse);
qubit ``frequency`` f_q and channel ``frequency`` f_d give detuning_hz = f_q − f_d; its
``anharmonicity`` is our anharmonicity_hz; t1["0-1"], t2["0-1"] (ns) are T1, T2. It keeps
counter-rotating terms (lab frame), interpolates the held samples with a cubic spline, and
relaxes 1→2 with its own t1["1-2"] (our model implies T1/2); these are the residual
differences to our piecewise-constant rotating-frame model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pulsecal.envs.physics import Transmon

_NS = 1e-9


def emulator_transmon(platform: Any, qubit: Any = None) -> Transmon:
    """Our ``Transmon`` equivalent of a qibolab EMULATOR platform's qubit and drive channel
    (see the module docstring for the convention mapping); raises ValueError on a platform
    that is not an emulator."""
    from pulsecal.envs.physics import Transmon

    from .qibolab import _import_qibolab

    qibolab = _import_qibolab()
    if isinstance(platform, str):
        platform = qibolab.create_platform(platform)
    q = next(iter(platform.qubits)) if qubit is None else qubit
    try:
        ham = platform.config("hamiltonian")
    except KeyError:
        raise ValueError(f"platform {platform.name!r} has no 'hamiltonian' config: allowed "
                         "a qibolab emulator platform") from None
    params = ham.qubits[q]
    drive = platform.config(platform.qubits[q].drive)
    rabi_hz = getattr(drive, "rabi_frequency", None)
    if rabi_hz is None:
        raise ValueError(f"drive channel of qubit {q!r} has no rabi_frequency: allowed a "
                         "'drive-emulator' channel config")
    t1_ns = params.t1.get((0, 1))
    t2_ns = params.t2.get((0, 1))
    # No T1/T2 entry means no dissipation in the emulator; 1000 s is closed-system for any
    # pulse while keeping Transmon's finite-value validation.
    return Transmon(
        levels=int(ham.transmon_levels),
        anharmonicity_hz=float(params.anharmonicity),
        rabi_max_hz=float(rabi_hz),
        detuning_hz=float(params.detuned_frequency(0.0)) - float(drive.frequency),
        t1_s=1e3 if t1_ns is None else float(t1_ns) * _NS,
        t2_s=(1e3 if t1_ns is None else 2 * float(t1_ns) * _NS) if t2_ns is None
        else float(t2_ns) * _NS,
        dt_s=1.0 / (float(platform.sampling_rate) * 1e9),
    )


def emulator_platform(folder: str | Path, qubits: Mapping[Any, Any]) -> Any:
    """A qibolab EMULATOR platform from ``folder``'s ``parameters.json``: one 1 GSa/s
    ``EmulatorController`` (it holds each envelope sample for 1 ns) with every channel of
    ``qubits`` ({id: ``qibolab.Qubit``}): drive, probe and acquisition, the extra drives and
    the flux line. What a shipped platform's ``create()`` returns."""
    from .qibolab import _import_qibolab

    qibolab = _import_qibolab()
    from qibolab.instruments.emulator import (
        DriveEmulatorConfig,
        EmulatorController,
        FluxEmulatorConfig,
        HamiltonianConfig,
    )

    known = qibolab.ConfigKinds.registered()
    qibolab.ConfigKinds.extend([k for k in (HamiltonianConfig, DriveEmulatorConfig, FluxEmulatorConfig)
                                if k not in known])
    channels: dict[str, Any] = {}
    for qubit in qubits.values():
        for ch in (qubit.drive, qubit.probe, *qubit.drive_extra.values()):
            if ch is not None:
                channels[ch] = qibolab.IqChannel(mixer=None, lo=None)
        if qubit.acquisition is not None:
            channels[qubit.acquisition] = qibolab.AcquisitionChannel(probe=qubit.probe, twpa_pump=None)
        if qubit.flux is not None:
            channels[qubit.flux] = qibolab.DcChannel()
    controller = EmulatorController(address="0.0.0.0", channels=channels, sampling_rate_=1.0)
    return qibolab.Platform.load(path=Path(folder), instruments={"emulator": controller}, qubits=dict(qubits))


__all__ = ["emulator_platform", "emulator_transmon"]
