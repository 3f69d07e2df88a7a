"""A whole multi-qubit device's modes and couplings, of any size.

``CoupledModel`` is what an engine simulates, so it refuses a Hilbert space above 4096
states; a 16-qubit grid (3^16 states) is a device, not a simulable model. ``DeviceModel``
holds the same parts (``Mode``, ``Coupling``, ``Crosstalk``, the AWG grid) for the whole
device, names its channels exactly as ``CoupledModel`` does, and cuts out the
``CoupledModel`` of any subset of its modes (``restrict``), which is what
``SimulatedMultiQubitDevice`` simulates for one sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .physics.coupled import CoupledModel, Coupling
from .physics.coupled.model import ModeParts, check_links
from .schedule import ChannelSet


@dataclass(frozen=True)
class DeviceModel(ModeParts):
    """Modes (basis order), exchange couplings and drive crosstalk of a device, on one AWG grid.

    The parts validate themselves (``Mode`` etc.); here: unique names, couplings and
    crosstalk between modes of the device, at most one coupling per pair. Frames: a mode
    with ``frame_hz=None`` is pinned at its idle frequency here, once, so that drift of its
    frequency later shows as a detuning instead of moving the lab's oscillator with it.
    """

    _holder = "device"

    def __post_init__(self) -> None:
        modes, names = self._checked_modes("DeviceModel.")
        modes = tuple(m if m.frame_hz is not None else m.replace(frame_hz=m.frame_frequency_hz) for m in modes)
        self._store_parts(modes, names)
        check_links(modes, self.couplings, self.crosstalk, "DeviceModel.")
        # dt_s is checked where CoupledModel checks it; build a one-mode model to reuse that.
        CoupledModel((modes[0],), dt_s=self.dt_s)

    @classmethod
    def from_coupled(cls, model: CoupledModel) -> DeviceModel:
        return cls(model.modes, model.couplings, model.crosstalk, model.dt_s)

    def coupling(self, a: str, b: str) -> Coupling:
        for c in self.couplings:
            if {c.a, c.b} == {a, b}:
                return c
        raise ValueError(f"coupling ({a!r}, {b!r}) is not in the device: allowed "
                         f"{[(c.a, c.b) for c in self.couplings]}")

    def neighbours(self, names: set[str]) -> set[str]:
        """Modes coupled to any of ``names`` and not among them."""
        out = {c.b for c in self.couplings if c.a in names} | {c.a for c in self.couplings if c.b in names}
        return out - names

    def channel_set(self) -> ChannelSet:
        """The device's channels, named as ``CoupledModel.channels`` names them."""
        drives: list[str] = []
        reals: dict[str, float] = {}
        for m in self.modes:
            if m.rabi_max_hz is not None:
                drives.extend(f"drive:{m.name}" if f is m else f"drive:{m.name}@{f.name}" for f in self.modes)
            if m.flux is not None:
                reals[f"{'flux' if m.kind == 'qubit' else 'coupler'}:{m.name}"] = m.flux.max_offset
        return ChannelSet(tuple(drives), reals, self.names, self.qubits, self.dt_s)

    def restrict(self, names: tuple[str, ...], levels: Mapping[str, int] | None = None) -> CoupledModel:
        """The ``CoupledModel`` of the modes ``names`` (basis order of the device) with the
        couplings and crosstalk among them; ``levels`` truncates some of them further."""
        keep = set(names)
        for n in names:
            self.mode(n)
        cut = dict(levels or {})
        return CoupledModel(
            tuple(m.replace(levels=min(m.levels, cut[m.name])) if m.name in cut else m
                  for m in self.modes if m.name in keep),
            tuple(c for c in self.couplings if c.a in keep and c.b in keep),
            tuple(x for x in self.crosstalk if x.line in keep and x.mode in keep),
            self.dt_s,
        )
