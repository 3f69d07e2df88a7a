"""Named simulated multi-qubit devices, a sampler of realistic variations, the held-out sets.

The multi-qubit sibling of ``envs.presets``: ``make_multi_qubit_device("two_transmons_cz")``
is what ``make_device("transmon_20ns")`` is for one transmon. Presets (docs/multi_qubit_devices.md):

- ``two_transmons_cr``: fixed-frequency, IBM-like; a cross-resonance pair (q0 control,
  q1 target 120 MHz below), α/2π ≈ −330 MHz, J/2π = 3 MHz, CR gate ~250 ns.
- ``two_transmons_cz``: flux-tunable, Google/Rigetti/IQM-like; q1 idles at its sweet spot
  600 MHz above q0 and is tuned down to the |11⟩↔|02⟩ crossing (f1 = f0 − α1, at a flux
  offset ≈ 0.15 Φ0 within ``max_offset`` 0.3) for a CZ of ~40–50 ns (J/2π = 8 MHz).
- ``grid_4x4``: 16 fixed-frequency qubits on a square grid in three frequency groups
  (no two neighbours share one), CR-style, for the calibration-graph work.
- ``ring_8``: 8 qubits on a ring, tunable (even) and fixed (odd) alternating, CZ-style.

``MultiQubitSampler`` draws realistic variations of a preset (frequencies, anharmonicities,
J, T1/T2, thermal population, readout, drive crosstalk); ``held_out_multi_qubit_devices``
is the fixed evaluation population, drawn from a stream no training seed reaches.

Every preset also carries a single-shot IQ readout (``params.iq``, for ``run_iq``;
docs/readout.md): SNR 2.5–4 per qubit, a 1.5 µs (tunable-frequency presets) or 2 µs
integration window, blobs at a different angle per qubit, and on ``grid_4x4``/``ring_8`` a
small IQ shift between coupled neighbours. It does not enter the counts of ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._validation import require
from .coupling_map import CouplingMap
from .drift import OrnsteinUhlenbeck, RandomWalk, Telegraph
from .iq_readout import IQCrosstalk, IQQubit, IQReadout
from .multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice, Spectators
from .multi_qubit_drift import ModeDrift, MultiQubitDrift
from .multi_qubit_model import DeviceModel
from .physics.coupled import Coupling, Crosstalk, FluxTuning, Mode
from .readout import QubitReadout, Readout, ReadoutCrosstalk


@dataclass(frozen=True)
class MultiQubitPreset:
    """A named multi-qubit device.

    Attributes:
        name: preset name.
        params: the truth at clock 0.
        coupling_map: which qubits are coupled.
        drift: drift processes, or None for a static device.
        gate_durations_s: intended gate durations by name (``x``, ``cr``, ``cz``).
    """

    name: str
    params: MultiQubitParams
    coupling_map: CouplingMap
    drift: MultiQubitDrift | None = None
    gate_durations_s: Mapping[str, float] = field(default_factory=dict)

    def make(self, rng: np.random.Generator | None = None, *, open_system: bool = True,
             spectators: Spectators = "neighbours", **kwargs: object) -> SimulatedMultiQubitDevice:
        """A fresh ``SimulatedMultiQubitDevice`` of this preset at clock 0."""
        return SimulatedMultiQubitDevice(self.params, self.drift, rng=rng, open_system=open_system,
                                         spectators=spectators, **kwargs)  # type: ignore[arg-type]


def _readout(qubits: tuple[str, ...], p10: float, p01: float,
             crosstalk: tuple[ReadoutCrosstalk, ...] = ()) -> Readout:
    return Readout({q: QubitReadout.two_state(p10, p01) for q in qubits}, crosstalk)


def _iq(qubits: tuple[str, ...], tau_s: float, edges: tuple[tuple[str, str], ...] = ()) -> IQReadout:
    """A fixed spread of IQ readouts: SNR 2.5, 3, 3.5 or 4 (σ = 1), the blobs at a
    different angle and place per qubit (a lab's demodulated signals sit anywhere in the
    plane), and a 0.1 σ shift of each neighbour's point while the other is excited."""
    qs = {q: IQQubit.from_snr(2.5 + 0.5 * ((3 * i) % 4), tau_s=tau_s, angle_rad=0.7 * i,
                              centre0=(1.5 * math.cos(0.9 * i), 1.5 * math.sin(0.9 * i)))
          for i, q in enumerate(qubits)}
    xt = tuple(x for a, b in edges for x in (IQCrosstalk(a, b, (0.1, 0.0)), IQCrosstalk(b, a, (0.0, 0.1))))
    return IQReadout(qs, xt)


def _tls_drift(qubits: tuple[str, ...], couplings: tuple[Coupling, ...]) -> MultiQubitDrift:
    """The single-qubit ``transmon_drifting`` processes on every qubit (frequency and
    amplitude random walks, T1 halved while a TLS is near resonance), plus slow Tφ and J
    fluctuations."""
    mode = ModeDrift(
        frequency_hz=RandomWalk(sigma_per_sqrt_hour=20e3),
        amplitude=RandomWalk(sigma_per_sqrt_hour=0.01),
        t1_factor=Telegraph(low=1.0, high=0.5, rate_up_hz=1.0 / 600.0, rate_down_hz=1.0 / 120.0),
        tphi_factor=OrnsteinUhlenbeck(sigma=0.1, tau_s=1800.0, mean=1.0),
    )
    return MultiQubitDrift({q: mode for q in qubits},
                           {(c.a, c.b): OrnsteinUhlenbeck(sigma=0.01 * abs(c.j_hz), tau_s=3600.0) for c in couplings})


def two_transmons_cr() -> MultiQubitPreset:
    cmap = CouplingMap.line(2)
    modes = (
        Mode("q0", 5.05e9, -330e6, t1_s=150e-6, t2_s=120e-6, thermal_population=0.01, rabi_max_hz=50e6),
        Mode("q1", 4.93e9, -325e6, t1_s=120e-6, t2_s=100e-6, thermal_population=0.01, rabi_max_hz=50e6),
    )
    model = cmap.build_model(modes, 3e6, (Crosstalk("q0", "q1", 0.02), Crosstalk("q1", "q0", 0.02)))
    params = MultiQubitParams(model, _readout(cmap.qubits, 0.015, 0.03), iq=_iq(cmap.qubits, 2e-6))
    return MultiQubitPreset("two_transmons_cr", params, cmap, None, {"x": 20e-9, "cr": 250e-9})


def two_transmons_cz() -> MultiQubitPreset:
    cmap = CouplingMap.line(2)
    modes = (
        Mode("q0", 5.5e9, -220e6, t1_s=40e-6, t2_s=30e-6, thermal_population=0.02, rabi_max_hz=50e6),
        Mode("q1", 6.1e9, -230e6, t1_s=30e-6, t2_s=20e-6, thermal_population=0.02, rabi_max_hz=50e6,
             flux=FluxTuning(max_offset=0.3, low_pass_tau_s=0.5e-9)),
    )
    model = cmap.build_model(modes, 8e6)
    params = MultiQubitParams(model, _readout(cmap.qubits, 0.02, 0.04), iq=_iq(cmap.qubits, 1.5e-6))
    return MultiQubitPreset("two_transmons_cz", params, cmap, None, {"x": 20e-9, "cz": 45e-9})


def grid_4x4() -> MultiQubitPreset:
    rows = cols = 4
    cmap = CouplingMap.grid(rows, cols)
    groups = (4.85e9, 4.97e9, 5.09e9)  # (r + 2c) mod 3 differs between any two neighbours
    modes = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            offset = 6e6 * (((7 * i) % 5) - 2)  # fixed per-qubit spread, ±12 MHz
            modes.append(Mode(f"q{i}", groups[(r + 2 * c) % 3] + offset, -330e6 + 2e6 * ((3 * i) % 5),
                              t1_s=100e-6, t2_s=80e-6, thermal_population=0.01, rabi_max_hz=50e6))
    xt = tuple(x for a, b in cmap.edges for x in (Crosstalk(a, b, 0.01), Crosstalk(b, a, 0.01)))
    model = cmap.build_model(tuple(modes), 3e6, xt)
    ro_xt = tuple(ReadoutCrosstalk(a, b, 0.005) for a, b in cmap.edges)
    params = MultiQubitParams(model, _readout(cmap.qubits, 0.015, 0.03, ro_xt), iq=_iq(cmap.qubits, 2e-6, cmap.edges))
    return MultiQubitPreset("grid_4x4", params, cmap, _tls_drift(cmap.qubits, model.couplings),
                            {"x": 20e-9, "cr": 250e-9})


def ring_8() -> MultiQubitPreset:
    cmap = CouplingMap.ring(8)
    modes = []
    for i in range(8):
        if i % 2 == 0:
            modes.append(Mode(f"q{i}", 6.05e9 + 25e6 * (i // 2), -230e6, t1_s=30e-6, t2_s=20e-6,
                              thermal_population=0.02, rabi_max_hz=50e6,
                              flux=FluxTuning(max_offset=0.3, low_pass_tau_s=0.5e-9)))
        else:
            modes.append(Mode(f"q{i}", 5.45e9 + 20e6 * (i // 2), -220e6, t1_s=40e-6, t2_s=30e-6,
                              thermal_population=0.02, rabi_max_hz=50e6))
    model = cmap.build_model(tuple(modes), 8e6)
    params = MultiQubitParams(model, _readout(cmap.qubits, 0.02, 0.04), iq=_iq(cmap.qubits, 1.5e-6, cmap.edges))
    return MultiQubitPreset("ring_8", params, cmap, _tls_drift(cmap.qubits, model.couplings),
                            {"x": 20e-9, "cz": 45e-9})


MULTI_QUBIT_PRESETS: dict[str, Callable[[], MultiQubitPreset]] = {
    "two_transmons_cr": two_transmons_cr,
    "two_transmons_cz": two_transmons_cz,
    "grid_4x4": grid_4x4,
    "ring_8": ring_8,
}


def multi_qubit_preset_names() -> tuple[str, ...]:
    return tuple(sorted(MULTI_QUBIT_PRESETS))


def get_multi_qubit_preset(name: str) -> MultiQubitPreset:
    """The preset called ``name``; raises ``ValueError`` listing the known names."""
    try:
        factory = MULTI_QUBIT_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"multi-qubit device preset {name!r} is unknown: allowed "
                         f"{list(multi_qubit_preset_names())}") from None
    return factory()


def make_multi_qubit_device(name: str, rng: np.random.Generator | None = None, *, open_system: bool = True,
                            spectators: Spectators = "neighbours", **kwargs: object) -> SimulatedMultiQubitDevice:
    """A fresh simulated multi-qubit device of preset ``name``."""
    return get_multi_qubit_preset(name).make(rng, open_system=open_system, spectators=spectators, **kwargs)


# -- random variations ------------------------------------------------------------------------

Range = tuple[float, float]


def _check_range(name: str, r: Range, lo: float, hi: float) -> None:
    ok = (isinstance(r, tuple) and len(r) == 2
          and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in r)
          and lo <= r[0] <= r[1] <= hi)
    if not ok:
        raise ValueError(f"MultiQubitSampler.{name}={r!r} is out of range: allowed (low, high) with "
                         f"{lo} <= low <= high <= {hi}")


@dataclass(frozen=True)
class MultiQubitSampler:
    """Realistic variations of a multi-qubit preset, drawn independently per mode and edge.

    Every offset is uniform in its range; T1 is the preset's times a log-uniform factor,
    T2 a uniform fraction of 2·T1. The preset's frames move with the sampled frequencies
    (a lab calibrates its oscillators to the device it has).

    Attributes:
        preset: the preset varied.
        frequency_hz: additive offset of every mode's (sweet-spot) frequency.
        anharmonicity_hz: additive offset of every α.
        j_relative: relative change of every J.
        t1_factor: T1 multiplier (log-uniform).
        t2_fraction: T2 as a fraction of 2·T1.
        thermal_population: excited population of every mode.
        p1_given_0, p0_given_1: readout assignment errors per qubit.
        crosstalk: |fraction| of each existing drive-crosstalk term (phase kept).
        iq_snr: None keeps the preset's IQ readout; a range draws each qubit's IQ SNR
            (blob directions kept), after every other draw so that the rest of the device
            is the same as without it.
    """

    preset: str = "two_transmons_cr"
    frequency_hz: Range = (-20e6, 20e6)
    anharmonicity_hz: Range = (-15e6, 15e6)
    j_relative: Range = (-0.2, 0.2)
    t1_factor: Range = (0.5, 1.5)
    t2_fraction: Range = (0.3, 0.9)
    thermal_population: Range = (0.0, 0.03)
    p1_given_0: Range = (0.005, 0.03)
    p0_given_1: Range = (0.01, 0.06)
    crosstalk: Range = (0.0, 0.03)
    iq_snr: Range | None = None

    def __post_init__(self) -> None:
        require(self.preset in MULTI_QUBIT_PRESETS, "MultiQubitSampler.preset", self.preset,
                f"one of {list(multi_qubit_preset_names())}")
        _check_range("frequency_hz", self.frequency_hz, -100e6, 100e6)
        _check_range("anharmonicity_hz", self.anharmonicity_hz, -100e6, 100e6)
        _check_range("j_relative", self.j_relative, -0.9, 2.0)
        _check_range("t1_factor", self.t1_factor, 1e-2, 1e2)
        _check_range("t2_fraction", self.t2_fraction, 1e-3, 1.0)
        _check_range("thermal_population", self.thermal_population, 0.0, 0.2)
        _check_range("p1_given_0", self.p1_given_0, 0.0, 0.49)
        _check_range("p0_given_1", self.p0_given_1, 0.0, 0.49)
        _check_range("crosstalk", self.crosstalk, 0.0, 1.0)
        if self.iq_snr is not None:
            _check_range("iq_snr", self.iq_snr, 0.1, 100.0)

    def sample(self, rng: np.random.Generator) -> MultiQubitParams:
        """One device (draws in a fixed order: modes, then couplings, crosstalk, readout)."""
        base = get_multi_qubit_preset(self.preset).params
        model = base.model
        assert isinstance(model, DeviceModel)

        def lin(r: Range) -> float:
            return r[0] + (r[1] - r[0]) * float(rng.random())

        modes = []
        for m in model.modes:
            f = m.frequency_hz + lin(self.frequency_hz)
            t1 = m.t1_s * math.exp(lin((math.log(self.t1_factor[0]), math.log(self.t1_factor[1]))))
            modes.append(m.replace(
                frequency_hz=f, anharmonicity_hz=m.anharmonicity_hz + lin(self.anharmonicity_hz),
                t1_s=t1, t2_s=2.0 * t1 * lin(self.t2_fraction), thermal_population=lin(self.thermal_population),
                frame_hz=None,
            ))
        couplings = tuple(Coupling(c.a, c.b, c.j_hz * (1.0 + lin(self.j_relative))) for c in model.couplings)
        crosstalk = tuple(Crosstalk(x.line, x.mode, x.fraction / abs(x.fraction) * lin(self.crosstalk))
                          for x in model.crosstalk if x.fraction != 0)
        qubits = model.qubits
        readout = Readout({q: QubitReadout.two_state(lin(self.p1_given_0), lin(self.p0_given_1)) for q in qubits},
                          base.readout.crosstalk, base.readout.three_state)
        iq = base.iq
        if self.iq_snr is not None and iq is not None:
            iq = IQReadout({q: r.replace_snr(lin(self.iq_snr)) for q, r in iq.qubits.items()}, iq.crosstalk)
        return base.replace(model=DeviceModel(tuple(modes), couplings, crosstalk, model.dt_s), readout=readout,
                            iq=iq)


# The evaluation stream's spawn key: training seeds plain integers (SeedSequence(seed),
# spawn key ()), so a non-empty spawn key never meets a training stream (as in envs.presets).
MULTI_QUBIT_HELD_OUT_SPAWN_KEY = 0x4D51484F  # "MQHO"


def held_out_multi_qubit_devices(n: int, sampler: MultiQubitSampler | None = None,
                                 seed: int = 20_261_207) -> tuple[MultiQubitParams, ...]:
    """``n`` devices of ``sampler`` (default: two_transmons_cr variations), device i from
    ``SeedSequence(seed, spawn_key=(MULTI_QUBIT_HELD_OUT_SPAWN_KEY, i))``: device i depends
    only on (seed, i), and the stream is disjoint from every training stream."""
    require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "n", n, "an integer >= 1")
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed", seed, "an integer >= 0")
    s = MultiQubitSampler() if sampler is None else sampler
    return tuple(
        s.sample(np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(seed, spawn_key=(MULTI_QUBIT_HELD_OUT_SPAWN_KEY, i)))))
        for i in range(n)
    )
