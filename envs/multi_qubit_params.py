"""The hidden truth of a simulated multi-qubit device: ``MultiQubitParams``.

What ``SimulatedMultiQubitDevice`` (``envs.multi_qubit_device``) simulates at clock 0: the
device model (or a bring-your-own operator model), its readout, the time per shot, an
optional single-shot IQ readout and the modes that are material defects. Validated at
construction; nothing here runs anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._validation import finite, require
from .iq_readout import IQReadout
from .multi_qubit_model import DeviceModel
from .physics.coupled import CoupledModel
from .physics.coupled.operators import OperatorModel
from .readout import Readout
from .schedule import ChannelSet


@dataclass(frozen=True)
class MultiQubitParams:
    """The hidden truth of a multi-qubit device at clock 0.

    Attributes:
        model: the device's modes and couplings (a ``CoupledModel`` is turned into the
            ``DeviceModel`` of the same parts) or a bring-your-own ``OperatorModel``.
        readout: assignment matrices, readout crosstalk, two- or three-state.
        rep_time_s: device time per shot (pulses, readout, reset), in (0, 1] s.
        iq: single-shot IQ readout for ``run_iq``, or None (counts only).
        defects: modes that are material defects (a planted TLS, ``envs.multi_qubit_faults``)
            rather than circuit modes: simulated with every touched mode they couple to,
            whatever ``spectators`` says, since a defect is part of its qubit's environment.
    """

    model: DeviceModel | OperatorModel
    readout: Readout = dataclasses.field(default_factory=Readout)
    rep_time_s: float = 200e-6
    iq: IQReadout | None = None
    defects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.model, CoupledModel):
            object.__setattr__(self, "model", DeviceModel.from_coupled(self.model))
        if not isinstance(self.model, DeviceModel | OperatorModel):
            raise TypeError(f"MultiQubitParams.model is {type(self.model).__name__}: "
                            "allowed DeviceModel, CoupledModel or OperatorModel")
        if not isinstance(self.readout, Readout):
            raise TypeError(f"MultiQubitParams.readout is {type(self.readout).__name__}: allowed Readout")
        r = finite("MultiQubitParams.rep_time_s", self.rep_time_s)
        require(0 < r <= 1, "MultiQubitParams.rep_time_s", self.rep_time_s, "(0, 1] s")
        qubits = self.qubits
        names = {x for c in self.readout.crosstalk for x in (c.source, c.target)} | set(self.readout.qubits)
        for q in sorted(names):
            require(q in qubits, "MultiQubitParams.readout", q, f"qubits of the model {list(qubits)}")
        if self.iq is not None:
            if not isinstance(self.iq, IQReadout):
                raise TypeError(f"MultiQubitParams.iq is {type(self.iq).__name__}: allowed IQReadout or None")
            names = {x for c in self.iq.crosstalk for x in (c.source, c.target)} | set(self.iq.qubits)
            for q in sorted(names):
                require(q in qubits, "MultiQubitParams.iq", q, f"qubits of the model {list(qubits)}")
        object.__setattr__(self, "defects", tuple(self.defects))
        for d in self.defects:
            ok = isinstance(self.model, DeviceModel) and d in self.model.names and d not in qubits
            require(ok, "MultiQubitParams.defects", d, "a non-qubit mode of the model")

    @property
    def qubits(self) -> tuple[str, ...]:
        return self.channels.qubits

    @property
    def channels(self) -> ChannelSet:
        m = self.model
        return m.channel_set() if isinstance(m, DeviceModel) else ChannelSet.of(m)

    def replace(self, **changes: Any) -> MultiQubitParams:
        return dataclasses.replace(self, **changes)
