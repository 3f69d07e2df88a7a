"""Drift of a multi-qubit device: one process per parameter, per mode and per coupling.

The processes are those of ``envs.drift`` (Ornstein–Uhlenbeck, random walk, 1/f,
telegraph), each with exact transitions over any time step. ``MultiQubitDrift`` holds them
per mode (frequency, anharmonicity, T1 factor, Tφ factor, drive amplitude) and per
coupling (J), keeps their joint state explicit and applies the values to a
``DeviceModel``:

    frequency_hz      f → f + value (Hz; a tunable mode's sweet-spot frequency)
    anharmonicity_hz  α → α + value (Hz)
    t1_factor         T1 → T1·value, Tφ held (a TLS changes relaxation, not dephasing);
                      a ``Telegraph`` here is the TLS switching in and out of resonance
    tphi_factor       Tφ → Tφ·value, T1 held; then T2 = 1/(1/(2·T1) + 1/Tφ) <= 2·T1
    amplitude         Ω → Ω·(1 + value) (relative drive-line scale)
    flux_offset       idle flux bias Φ → Φ + value (Φ0; flux-tunable modes only): the
                      qubit's frequency moves to second order at a sweet spot, to first
                      order at a flux pulse's plateau (the CZ's |11⟩–|20⟩ resonance)
    j_hz              J → J + value (Hz, per coupling)

Every mode's frame stays where it was at clock 0 (``DeviceModel`` pins it: the lab's
oscillators do not follow the drift), so a frequency drift shows as a detuning, as on
hardware.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .drift import DriftProcess, RandomWalk
from .multi_qubit_model import DeviceModel
from .physics.coupled import Coupling

_MODE_FIELDS = ("frequency_hz", "anharmonicity_hz", "t1_factor", "tphi_factor", "amplitude", "flux_offset")
# Drawn and advanced after every other process (couplings included): a device with a flux
# drift sees the same paths of all its other parameters as the device without one, and a
# device without it draws exactly what it did before the field existed.
_LAST_FIELDS = ("flux_offset",)
_MIN_FACTOR = 1e-3


@dataclass(frozen=True)
class ModeDrift:
    """Drift processes of one mode's parameters (None: that parameter does not drift)."""

    frequency_hz: DriftProcess | None = None
    anharmonicity_hz: DriftProcess | None = None
    t1_factor: DriftProcess | None = None
    tphi_factor: DriftProcess | None = None
    amplitude: DriftProcess | None = None
    flux_offset: DriftProcess | None = None

    def __post_init__(self) -> None:
        for name in _MODE_FIELDS:
            p = getattr(self, name)
            if p is not None and not isinstance(p, DriftProcess):
                raise TypeError(f"ModeDrift.{name} is {type(p).__name__}: allowed a drift process "
                                "(OrnsteinUhlenbeck, RandomWalk, OneOverF, Telegraph) or None")


@dataclass(frozen=True)
class MultiQubitDrift:
    """Drift of a whole device.

    Attributes:
        modes: mode name -> its ``ModeDrift``.
        couplings: (a, b) -> process of J's additive change (Hz), either order.
    """

    modes: Mapping[str, ModeDrift] = field(default_factory=dict)
    couplings: Mapping[tuple[str, str], DriftProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, d in self.modes.items():
            if not isinstance(d, ModeDrift):
                raise TypeError(f"MultiQubitDrift.modes[{name!r}] is {type(d).__name__}: allowed ModeDrift")
        for pair, p in self.couplings.items():
            if not isinstance(p, DriftProcess):
                raise TypeError(f"MultiQubitDrift.couplings[{pair!r}] is {type(p).__name__}: allowed a drift process")
        object.__setattr__(self, "modes", dict(self.modes))
        object.__setattr__(self, "couplings", {tuple(k): v for k, v in self.couplings.items()})

    def processes(self) -> list[tuple[tuple[str, ...], DriftProcess]]:
        """(key, process) in the fixed order states are drawn and advanced."""
        out: list[tuple[tuple[str, ...], DriftProcess]] = []
        for name, d in self.modes.items():
            out.extend(((name, f), p) for f in _MODE_FIELDS
                       if f not in _LAST_FIELDS and (p := getattr(d, f)) is not None)
        out.extend(((a, b, "j_hz"), p) for (a, b), p in self.couplings.items())
        for f in _LAST_FIELDS:
            out.extend(((name, f), p) for name, d in self.modes.items() if (p := getattr(d, f)) is not None)
        return out

    def check(self, model: DeviceModel) -> None:
        """Refuse drift on modes or couplings the model does not have."""
        for name, d in self.modes.items():
            if name not in model.names:
                raise ValueError(f"drift.modes[{name!r}]: not a mode of the model: allowed {list(model.names)}")
            if d.flux_offset is not None and model.mode(name).flux is None:
                tunable = [m.name for m in model.modes if m.flux is not None]
                raise ValueError(f"drift.modes[{name!r}].flux_offset: {name} has no flux line: allowed on the "
                                 f"flux-tunable modes {tunable}")
        pairs = {frozenset((c.a, c.b)) for c in model.couplings}
        for a, b in self.couplings:
            if frozenset((a, b)) not in pairs:
                raise ValueError(f"drift.couplings[{(a, b)!r}]: not a coupling of the model: allowed "
                                 f"{[(c.a, c.b) for c in model.couplings]}")

    def init_state(self, rng: np.random.Generator) -> dict[tuple[str, ...], Any]:
        return {k: p.init_state(rng) for k, p in self.processes()}

    def advance(self, state: Mapping[tuple[str, ...], Any], dt_s: float,
                rng: np.random.Generator) -> dict[tuple[str, ...], Any]:
        return {k: p.advance(state[k], dt_s, rng) for k, p in self.processes()}

    def values(self, state: Mapping[tuple[str, ...], Any]) -> dict[tuple[str, ...], float]:
        return {k: float(p.value(state[k])) for k, p in self.processes()}

    @staticmethod
    def apply(model: DeviceModel, values: Mapping[tuple[str, ...], float]) -> DeviceModel:
        """``model`` with the drift ``values`` applied (module docstring); frames pinned."""
        modes = []
        for m in model.modes:
            v = {f: values[(m.name, f)] for f in _MODE_FIELDS if (m.name, f) in values}
            changes: dict[str, Any] = {}
            if "frequency_hz" in v:
                changes["frequency_hz"] = m.frequency_hz + v["frequency_hz"]
            if "anharmonicity_hz" in v:
                changes["anharmonicity_hz"] = m.anharmonicity_hz + v["anharmonicity_hz"]
            if "t1_factor" in v or "tphi_factor" in v:
                t1 = m.t1_s * max(v.get("t1_factor", 1.0), _MIN_FACTOR)
                tphi = m.tphi_s * max(v.get("tphi_factor", 1.0), _MIN_FACTOR)
                rate = 0.5 / t1 + (0.0 if math.isinf(tphi) else 1.0 / tphi)
                changes["t1_s"] = t1
                changes["t2_s"] = min(1.0 / rate, 2.0 * t1)
            if "amplitude" in v and m.rabi_max_hz is not None:
                changes["rabi_max_hz"] = m.rabi_max_hz * max(1.0 + v["amplitude"], _MIN_FACTOR)
            if "flux_offset" in v and m.flux is not None:
                # FluxTuning refuses |Φ| > Φ0/2: a walk that far is no longer a small drift
                bias = min(max(m.flux.idle_flux + v["flux_offset"], -0.5), 0.5)
                changes["flux"] = dataclasses.replace(m.flux, idle_flux=bias)
            modes.append(m.replace(**changes) if changes else m)
        couplings = tuple(
            Coupling(c.a, c.b, c.j_hz + values.get((c.a, c.b, "j_hz"), values.get((c.b, c.a, "j_hz"), 0.0)))
            for c in model.couplings
        )
        return model.replace(modes=tuple(modes), couplings=couplings)


# A lab-typical slow walk of a tunable transmon's idle flux bias, Φ0 per sqrt(hour): 1/f
# flux noise of sqrt(A) ≈ 1-5 µΦ0 (Bylander et al. 2011, Nat. Phys. 7, 565; Yan et al.
# 2016, Nat. Commun. 7, 12964) integrates to ~10-50 µΦ0 between seconds and a day; a
# random walk of 1e-5 Φ0/sqrt(h) reaches 49 µΦ0 after 24 h, the upper end of that,
# standing in for the flux noise plus the DC source's slow drift. At ring_8's CZ plateau
# (~0.15 Φ0 from the sweet spot, df/dΦ ≈ 4.8 GHz/Φ0) that is ~50 kHz/sqrt(h) of the
# |11⟩–|20⟩ detuning; at the sweet spot, where the qubit idles, 49 µΦ0 moves it by ~40 Hz.
FLUX_DRIFT_PHI0_PER_SQRT_HOUR = 1e-5


def with_flux_drift(drift: MultiQubitDrift | None, model: DeviceModel,
                    sigma_phi0_per_sqrt_hour: float = FLUX_DRIFT_PHI0_PER_SQRT_HOUR) -> MultiQubitDrift:
    """``drift`` with a random walk of the idle flux bias on every flux-tunable mode of
    ``model`` (``ModeDrift.flux_offset``). A preset's drift has none, so its devices keep
    their drift paths; this adds one where a study wants the CZ to drift."""
    s = sigma_phi0_per_sqrt_hour
    if not (isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and 0 < s <= 0.01):
        raise ValueError(f"sigma_phi0_per_sqrt_hour={s!r}: allowed a number > 0 and <= 0.01 Φ0/sqrt(h)")
    modes = dict(drift.modes) if drift is not None else {}
    for m in model.modes:
        if m.flux is not None:
            modes[m.name] = dataclasses.replace(modes.get(m.name, ModeDrift()),
                                                flux_offset=RandomWalk(sigma_per_sqrt_hour=float(s)))
    return MultiQubitDrift(modes, dict(drift.couplings) if drift is not None else {})
