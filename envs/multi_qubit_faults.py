"""Planted faults of a simulated multi-qubit device: a TLS near a qubit, a dead qubit, a coupler stuck off.

A bring-up must find what is broken on a device, not only calibrate what works. These are
the three faults a lab meets most, planted in a device's truth (``MultiQubitParams`` and its
drift) so that a calibration graph can be scored on isolating them. What each is in the
model:

- ``tls``: a two-level defect (a material TLS) near resonance with ``qubit``: an extra
  two-level mode ``tls_<qubit>`` of kind ``"coupler"`` (no drive line, never read out, not a
  qubit of the device) at ``f_q + detuning_hz``, exchange-coupled to the qubit with
  ``coupling_hz`` and relaxing with ``t1_s``. The device simulates it with its qubit
  whatever ``spectators`` says (``MultiQubitParams.defects``): a defect is part of that
  qubit's environment. Near resonance the qubit's excitation swaps into the TLS and
  decays there: for g ≪ γ the qubit's T1 drops to 1/Γ with Γ = 4g²γ/(γ² + 4Δ²)
  (angular g, Δ; γ = 1/t1_s of the TLS); for g ≳ γ (the defaults: g/2π = 1 MHz, TLS T1
  0.5 µs, Δ = 0.3 MHz) the excitation swaps back and forth 2g apart while it decays, and
  the qubit's T1 falls to about 2·t1_s (1.3 µs measured on ring_8 q3), its T2* with it, and
  its frequency is pulled by the hybridisation. Nothing else about the qubit changes.
- ``dead``: the qubit answers no drive: its Rabi rate is 10⁻⁴ of the design's (an open
  drive line, a broken junction, a qubit tuned far out of band look the same from
  outside), and what little it is excited relaxes in ``t1_s`` (default 1 µs, T2 = 2·T1).
  It reads its thermal state at rest, shows no spectroscopy line and no Rabi oscillation.
  A T1 of nanoseconds ("T1 ≈ 0") is not used: the reference engine's idle channel (the
  ``expm`` of the Lindbladian) overflows to NaN once rate × delay passes ~700, i.e. for
  the long delays of a T1 scan.
- ``coupler_off``: the exchange coupling of ``pair`` ("q1-q2") is removed (J = 0 exactly,
  and its drift with it): the pair shows no static ZZ, no swap and no two-qubit gate.

``plant_faults(params, drift, faults)`` returns the faulty truth; ``parse_faults`` turns a
config's list of mappings into ``Fault``\\ s, refusing unknown keys and kinds by name. A
fault without its ``qubit`` (or ``pair``) is placed by the generator it is given, so a
seeded run plants the same fault on the same qubit every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._validation import finite, require
from .multi_qubit_device import MultiQubitParams
from .multi_qubit_drift import MultiQubitDrift
from .multi_qubit_model import DeviceModel
from .physics.coupled import Coupling, Mode

FaultKind = Literal["tls", "dead", "coupler_off"]
FAULT_KINDS: tuple[str, ...] = ("tls", "dead", "coupler_off")
_KEYS = {"tls": {"kind", "qubit", "detuning_hz", "coupling_hz", "t1_s"},
         "dead": {"kind", "qubit", "t1_s"},
         "coupler_off": {"kind", "pair"}}


@dataclass(frozen=True)
class Fault:
    """One planted fault (module docstring).

    Attributes:
        kind: ``"tls"``, ``"dead"`` or ``"coupler_off"``.
        qubit: the qubit of a ``tls`` or ``dead`` fault ("q3"); None: drawn when planted.
        pair: the coupler of a ``coupler_off`` fault ("q1-q2"); None: drawn when planted.
        detuning_hz: TLS frequency minus the qubit's, |Δ| <= 50 MHz.
        coupling_hz: TLS–qubit exchange g, in (0, 20 MHz].
        t1_s: the TLS's relaxation time (``tls``, default 0.5 µs) or the dead qubit's
            (``dead``, default 1 µs), in (0, 1 s]; a dead qubit's delays/t1_s must stay
            below ~700 (module docstring).
    """

    kind: FaultKind
    qubit: str | None = None
    pair: str | None = None
    detuning_hz: float = 0.3e6
    coupling_hz: float = 1.0e6
    t1_s: float | None = None

    def __post_init__(self) -> None:
        require(self.kind in FAULT_KINDS, "fault.kind", self.kind, f"one of {list(FAULT_KINDS)}")
        if self.kind == "coupler_off":
            require(self.qubit is None, "fault.qubit", self.qubit, "None for a coupler_off fault (give pair)")
            require(self.pair is None or (isinstance(self.pair, str) and self.pair.count("-") == 1),
                    "fault.pair", self.pair, "a coupler 'qA-qB' or None")
        else:
            require(self.pair is None, "fault.pair", self.pair, f"None for a {self.kind} fault (give qubit)")
            require(self.qubit is None or (isinstance(self.qubit, str) and bool(self.qubit)), "fault.qubit",
                    self.qubit, "a qubit name such as 'q3' or None")
        d = finite("fault.detuning_hz", self.detuning_hz)
        require(abs(d) <= 50e6, "fault.detuning_hz", d, "|Δ| <= 50e6 Hz")
        g = finite("fault.coupling_hz", self.coupling_hz)
        require(0 < g <= 20e6, "fault.coupling_hz", g, "(0, 20e6] Hz")
        if self.t1_s is not None:
            t = finite("fault.t1_s", self.t1_s)
            require(0 < t <= 1.0, "fault.t1_s", t, "(0, 1] s")

    @property
    def target(self) -> str | None:
        """The qubit or coupler it sits on."""
        return self.pair if self.kind == "coupler_off" else self.qubit

    def to_dict(self) -> dict[str, Any]:
        keys = _KEYS[self.kind]
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keys and v is not None}


def parse_faults(items: Sequence[Mapping[str, Any]] | None, key: str = "device.faults") -> tuple[Fault, ...]:
    """``Fault``\\ s from a config's list of mappings; a bad entry names ``key[i].field``."""
    if items is None:
        return ()
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise ValueError(f"{key}={items!r}: allowed a list of faults like [{{kind: dead, qubit: q5}}]")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{key}[{i}]={item!r}: allowed a mapping with kind and its fields")
        kind = item.get("kind")
        if kind not in _KEYS:
            raise ValueError(f"{key}[{i}].kind={kind!r}: allowed one of {list(FAULT_KINDS)}")
        unknown = sorted(set(item) - _KEYS[kind])
        if unknown:
            raise ValueError(f"{key}[{i}].{unknown[0]}: not a field of a {kind} fault: allowed "
                             f"{sorted(_KEYS[kind])}")
        try:
            out.append(Fault(**dict(item)))
        except ValueError as err:
            raise ValueError(f"{key}[{i}]: {err}") from None
    return tuple(out)


def _place(faults: Sequence[Fault], qubits: Sequence[str], pairs: Sequence[str],
           rng: np.random.Generator | None) -> tuple[Fault, ...]:
    """Faults with every qubit and pair named, in their given order: a missing qubit is
    drawn from ``rng`` among the qubits no other fault sits on, then a missing pair among
    the couplers between healthy qubits (a coupler of a dead qubit could not be told off)."""
    taken_q = {f.qubit for f in faults if f.qubit is not None}
    taken_p = {f.pair for f in faults if f.pair is not None}
    placed: dict[int, Fault] = {}
    order = [i for i, f in enumerate(faults) if f.kind != "coupler_off"] + \
            [i for i, f in enumerate(faults) if f.kind == "coupler_off"]
    for i in order:
        f = faults[i]
        if f.target is None:
            if rng is None:
                raise ValueError(f"fault {f.kind}: no {'pair' if f.kind == 'coupler_off' else 'qubit'} given and "
                                 "no generator to draw one: allowed a named target or a seeded device")
            if f.kind == "coupler_off":
                free = [p for p in pairs if p not in taken_p and not set(p.split("-")) & taken_q]
                require(bool(free), "fault.pair", None, "a coupler between qubits no other fault takes")
                f = dataclasses.replace(f, pair=free[int(rng.integers(len(free)))])
                taken_p.add(str(f.pair))
            else:
                free = [q for q in qubits if q not in taken_q]
                require(bool(free), "fault.qubit", None, "a qubit no other fault takes")
                f = dataclasses.replace(f, qubit=free[int(rng.integers(len(free)))])
                taken_q.add(str(f.qubit))
        placed[i] = f
    return tuple(placed[i] for i in range(len(faults)))


def plant_faults(params: MultiQubitParams, drift: MultiQubitDrift | None, faults: Sequence[Fault],
                 rng: np.random.Generator | None = None
                 ) -> tuple[MultiQubitParams, MultiQubitDrift | None, tuple[Fault, ...]]:
    """(params, drift, faults placed) of the device with ``faults`` planted (module
    docstring); ``rng`` draws the targets a fault leaves open. No faults: the inputs."""
    if not faults:
        return params, drift, ()
    model = params.model
    if not isinstance(model, DeviceModel):
        raise ValueError("faults: a bring-your-own OperatorModel has no modes to plant faults in: allowed a "
                         "DeviceModel device")
    qubits = model.qubits
    pairs = [f"{c.a}-{c.b}" for c in model.couplings if c.a in qubits and c.b in qubits]
    placed = _place(faults, qubits, pairs, rng)
    modes = list(model.modes)
    couplings = list(model.couplings)
    defects = list(params.defects)
    drift_couplings = dict(drift.couplings) if drift is not None else {}
    for f in placed:
        if f.kind == "coupler_off":
            a, _, b = str(f.pair).partition("-")
            hit = [c for c in couplings if {c.a, c.b} == {a, b}]
            require(bool(hit), "fault.pair", f.pair, f"a coupler of the device {pairs}")
            couplings = [c for c in couplings if c not in hit]
            drift_couplings = {k: v for k, v in drift_couplings.items() if set(k) != {a, b}}
            continue
        q = str(f.qubit)
        require(q in qubits, "fault.qubit", q, f"a qubit of the device {list(qubits)}")
        i = [m.name for m in modes].index(q)
        if f.kind == "dead":
            t1 = 1e-6 if f.t1_s is None else float(f.t1_s)
            rabi = modes[i].rabi_max_hz
            modes[i] = modes[i].replace(t1_s=t1, t2_s=2.0 * t1,
                                        rabi_max_hz=None if rabi is None else 1e-4 * rabi)
            continue
        host = modes[i]
        name = f"tls_{q}"
        require(name not in [m.name for m in modes], "fault.qubit", q, "one TLS per qubit")
        t1 = 0.5e-6 if f.t1_s is None else float(f.t1_s)
        # Its frame is the qubit's: the defect sits Δ from the qubit, in the qubit's band.
        modes.append(Mode(name, host.frequency_hz + f.detuning_hz, host.anharmonicity_hz, levels=2, t1_s=t1,
                          t2_s=2.0 * t1, thermal_population=0.0, rabi_max_hz=None, kind="coupler"))
        couplings.append(Coupling(q, name, f.coupling_hz))
        defects.append(name)
    new_model = DeviceModel(tuple(modes), tuple(couplings), model.crosstalk, model.dt_s)
    new_drift = None if drift is None else MultiQubitDrift(drift.modes, drift_couplings)
    return params.replace(model=new_model, defects=tuple(defects)), new_drift, placed


__all__ = ["FAULT_KINDS", "Fault", "parse_faults", "plant_faults"]
