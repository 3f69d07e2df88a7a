"""Named simulated devices and a sampler of random ones.

Presets are the devices Hydra configs refer to by name (``device=transmon_20ns``); the
sampler draws whole device populations for training with domain randomisation, and
``held_out_devices`` is the fixed, seeded population every evaluation reports on.
``DeviceSampler.realistic()`` is the wide population labs meet (docs/devices.md), and
``realistic_held_out_devices`` its evaluation set, drawn from a stream of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .drift import DriftModel, RandomWalk, Telegraph
from .physics import Transmon
from .simulated_device import DeviceParams, SimulatedDevice


@dataclass(frozen=True)
class DevicePreset:
    """A named device: its truth at clock 0, its drift, and the gate length it is meant for.

    Attributes:
        name: preset name.
        params: hidden true parameters at clock 0.
        drift: drift processes, or None for a static device.
        gate_duration_s: intended single-qubit gate duration (a whole number of samples).
    """

    name: str
    params: DeviceParams
    drift: DriftModel | None = None
    gate_duration_s: float = 20e-9

    def __post_init__(self) -> None:
        from .pulses import n_samples

        n_samples(self.gate_duration_s, self.params.dt_s, name="DevicePreset.gate_duration_s")

    def make(self, rng: np.random.Generator | None = None, *, open_system: bool = True) -> SimulatedDevice:
        """A fresh ``SimulatedDevice`` of this preset at clock 0."""
        return SimulatedDevice(self.params, self.drift, rng=rng, open_system=open_system)


def _static_transmon(name: str, *, anharmonicity_hz: float, rabi_max_hz: float, dt_s: float,
                     gate_duration_s: float) -> DevicePreset:
    """A preset without drift whose transmon has T1 = T2 = 100 µs."""
    return DevicePreset(
        name=name,
        params=DeviceParams(
            transmon=Transmon(
                anharmonicity_hz=anharmonicity_hz, rabi_max_hz=rabi_max_hz, t1_s=100e-6, t2_s=100e-6, dt_s=dt_s
            ),
        ),
        gate_duration_s=gate_duration_s,
    )


def _transmon_20ns() -> DevicePreset:
    return _static_transmon("transmon_20ns", anharmonicity_hz=-300e6, rabi_max_hz=100e6, dt_s=1e-9,
                            gate_duration_s=20e-9)


def _transmon_short() -> DevicePreset:
    return _static_transmon("transmon_short", anharmonicity_hz=-200e6, rabi_max_hz=400e6, dt_s=0.5e-9,
                            gate_duration_s=6e-9)


def _transmon_drifting() -> DevicePreset:
    base = _transmon_20ns()
    return DevicePreset(
        name="transmon_drifting",
        params=base.params,
        drift=DriftModel(
            # PHYSICS.md stress presets: ~20 kHz/√h frequency and ~1 %/√h amplitude walks,
            # T1 halved while a TLS is near resonance (dwell ~10 min out, ~2 min in).
            detuning_hz=RandomWalk(sigma_per_sqrt_hour=20e3),
            amplitude=RandomWalk(sigma_per_sqrt_hour=0.01),
            t1_factor=Telegraph(low=1.0, high=0.5, rate_up_hz=1.0 / 600.0, rate_down_hz=1.0 / 120.0),
        ),
        gate_duration_s=20e-9,
    )


PRESETS: dict[str, Callable[[], DevicePreset]] = {
    "transmon_20ns": _transmon_20ns,
    "transmon_short": _transmon_short,
    "transmon_drifting": _transmon_drifting,
    "transmon_emulator": lambda: transmon_emulator(),  # defined below, with its sampler
}


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(PRESETS))


def get_preset(name: str) -> DevicePreset:
    """The preset called ``name``; raises ``ValueError`` listing the known names."""
    try:
        factory = PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"device preset {name!r} is unknown: allowed {list(preset_names())}") from None
    return factory()


def make_device(
    name: str, rng: np.random.Generator | None = None, *, open_system: bool = True
) -> SimulatedDevice:
    """A fresh simulated device of preset ``name``."""
    return get_preset(name).make(rng, open_system=open_system)


# -- random devices ---------------------------------------------------------------------------

Range = tuple[float, float]


def _check_range(name: str, r: Range, lo: float, hi: float) -> None:
    ok = (
        isinstance(r, tuple) and len(r) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in r)
        and lo <= r[0] <= r[1] <= hi
    )
    if not ok:
        raise ValueError(f"DeviceSampler.{name}={r!r} is out of range: allowed (low, high) with {lo} <= low <= high <= {hi}")


@dataclass(frozen=True)
class DeviceSampler:
    """Ranges of random devices around the ``transmon_20ns`` preset.

    Every parameter is drawn uniformly from its (low, high) range, except T1 and T2 which
    are log-uniform; T2 is drawn as a fraction of 2·T1 (``t2_fraction`` of the maximum),
    so T2 <= 2·T1 by construction. ``amplitude_error`` is relative (scale = 1 + error).

    Attributes:
        anharmonicity_hz, rabi_max_hz, t1_s, t2_fraction, amplitude_error, detuning_hz,
        p1_given_0, p0_given_1: (low, high) ranges.
        levels, dt_s, rep_time_s: fixed for the whole population.
        four_level_fraction: probability in [0, 1] that a device is simulated with
            ``levels + 1`` levels instead (a ninth draw, made only when it is > 0, so a
            sampler without it draws the same devices as before it existed). One physics
            call needs one level count, so a vector env refuses a mixed sampler with more
            than one copy and an evaluation runs each level count in its own batches.

    ``realistic()`` is the wide population of docs/devices.md; ``from_mapping`` builds a
    sampler from a config mapping, whose optional ``name`` picks the base (``SAMPLERS``).
    """

    anharmonicity_hz: Range = (-340e6, -260e6)
    rabi_max_hz: Range = (90e6, 110e6)
    t1_s: Range = (50e-6, 200e-6)
    t2_fraction: Range = (0.25, 1.0)
    amplitude_error: Range = (-0.05, 0.05)
    detuning_hz: Range = (-200e3, 200e3)
    p1_given_0: Range = (0.005, 0.03)
    p0_given_1: Range = (0.01, 0.05)
    levels: int = 3
    dt_s: float = 1e-9
    rep_time_s: float = 200e-6
    four_level_fraction: float = 0.0

    def __post_init__(self) -> None:
        _check_range("anharmonicity_hz", self.anharmonicity_hz, -1e9, 0.0)
        _check_range("rabi_max_hz", self.rabi_max_hz, 1e3, 2e9)
        _check_range("t1_s", self.t1_s, 1e-7, 1.0)
        _check_range("t2_fraction", self.t2_fraction, 1e-3, 1.0)
        _check_range("amplitude_error", self.amplitude_error, -0.5, 0.5)
        _check_range("detuning_hz", self.detuning_hz, -1e9, 1e9)
        _check_range("p1_given_0", self.p1_given_0, 0.0, 0.49)
        _check_range("p0_given_1", self.p0_given_1, 0.0, 0.49)
        if self.t1_s[0] <= 0:
            raise ValueError(f"DeviceSampler.t1_s={self.t1_s!r}: allowed low > 0")
        f = self.four_level_fraction
        if not (isinstance(f, int | float) and not isinstance(f, bool) and 0.0 <= f <= 1.0):
            raise ValueError(f"DeviceSampler.four_level_fraction={f!r} is out of range: allowed [0, 1]")
        # levels, dt_s and rep_time_s are validated by Transmon / DeviceParams on sampling;
        # check them once here so a bad sampler fails at construction.
        self.sample(np.random.default_rng(0))

    def sample(self, rng: np.random.Generator) -> DeviceParams:
        """One random device (draws in a fixed order, so a seed fixes the device)."""
        u = rng.random(8)

        def lin(r: Range, x: float) -> float:
            return r[0] + (r[1] - r[0]) * x

        t1 = math.exp(lin((math.log(self.t1_s[0]), math.log(self.t1_s[1])), u[2]))
        t2 = 2.0 * t1 * lin(self.t2_fraction, u[3])
        levels = self.levels
        if self.four_level_fraction > 0 and rng.random() < self.four_level_fraction:
            levels += 1
        transmon = Transmon(
            levels=levels,
            anharmonicity_hz=lin(self.anharmonicity_hz, u[0]),
            rabi_max_hz=lin(self.rabi_max_hz, u[1]),
            detuning_hz=lin(self.detuning_hz, u[5]),
            t1_s=t1,
            t2_s=t2,
            dt_s=self.dt_s,
        )
        return DeviceParams(
            transmon=transmon,
            amplitude_scale=1.0 + lin(self.amplitude_error, u[4]),
            p1_given_0=lin(self.p1_given_0, u[6]),
            p0_given_1=lin(self.p0_given_1, u[7]),
            rep_time_s=self.rep_time_s,
        )

    @property
    def mixed_levels(self) -> bool:
        """Whether the population mixes two level counts (``four_level_fraction`` in (0, 1))."""
        return 0.0 < self.four_level_fraction < 1.0

    @classmethod
    def realistic(cls, **overrides: Any) -> DeviceSampler:
        """The wide population of devices labs meet (docs/devices.md).

        Ω_R/2π 30–200 MHz (the drive at full scale, amplitude_scale = 1: the spread of
        drive strengths is in Ω_R itself), α/2π −400…−150 MHz, T1 10–300 µs log-uniform,
        T2 = 0.05–1.0 × 2·T1 (0.1·T1 to 2·T1), readout p(1|0) 0–10 %, p(0|1) 0–20 %,
        qubit detuning ±3 MHz, 3 levels or (one device in four) 4. The starting errors
        are the calibration's, not the device's: ``REALISTIC_MISCALIBRATION``.
        ``overrides`` replace single fields (e.g. ``four_level_fraction=0.0`` for a
        vector env that batches its copies).
        """
        base: dict[str, Any] = {
            "anharmonicity_hz": (-400e6, -150e6),
            "rabi_max_hz": (30e6, 200e6),
            "t1_s": (10e-6, 300e-6),
            "t2_fraction": (0.05, 1.0),
            "amplitude_error": (0.0, 0.0),
            "detuning_hz": (-3e6, 3e6),
            "p1_given_0": (0.0, 0.10),
            "p0_given_1": (0.0, 0.20),
            "levels": 3,
            "four_level_fraction": 0.25,
        }
        return cls(**{**base, **overrides})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> DeviceSampler:
        """A sampler from a config mapping (lists for ranges); ``name`` picks the base
        sampler (``SAMPLERS``, default ``"default"``) whose fields the others replace."""
        fields = dict(mapping)
        name = fields.pop("name", None)
        name = "default" if name is None else name
        if name not in SAMPLERS:
            raise ValueError(f"sampler.name={name!r} is unknown: allowed {sorted(SAMPLERS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"sampler keys {unknown} are unknown: allowed {sorted(known | {'name'})}")
        ranges = {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
                  for k, v in fields.items() if v is not None}
        return dataclasses.replace(SAMPLERS[name](), **ranges)  # type: ignore[arg-type]


# Starting errors of a realistic calibration (amplitude rel., β rel., detuning Hz, phase rad):
# ±15 % amplitude, ±100 % DRAG β, ±3 MHz detuning, uniformly, around the truth's textbook
# parameters (the envs' and the evaluation's ``miscalibration`` convention).
REALISTIC_MISCALIBRATION: tuple[float, float, float, float] = (0.15, 1.0, 3e6, 0.0)

# The realistic evaluation stream: spawn key of ``realistic_held_out_devices``. Training draws
# devices from generators seeded with plain integers (SeedSequence(seed), spawn key ()), the
# default held-out set from default_rng([seed, i]) (entropy [seed, i], spawn key ()); a
# SeedSequence with a non-empty spawn key never equals either, so no seed makes the
# evaluation stream coincide with a training stream.
REALISTIC_HELD_OUT_SPAWN_KEY = 0x48454C44  # "HELD"


def realistic_held_out_devices(
    n: int, seed: int = 20_261_206, sampler: DeviceSampler | None = None,
) -> tuple[DeviceParams, ...]:
    """The realistic evaluation population: ``n`` devices of ``DeviceSampler.realistic()``
    (or ``sampler``), device i from ``SeedSequence(seed, spawn_key=(REALISTIC_HELD_OUT_SPAWN_KEY, i))``.

    Device i depends only on (seed, i) (the first k of a larger set equal a set of size
    k), and the stream is separate from every training stream by construction (see
    ``REALISTIC_HELD_OUT_SPAWN_KEY``). Level counts are mixed (3 and 4): run each level
    count in its own batches (``DeviceSampler.four_level_fraction``).
    """
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"n={n!r} is out of range: allowed an integer >= 1")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed={seed!r} is out of range: allowed an integer >= 0")
    s = DeviceSampler.realistic() if sampler is None else sampler
    return tuple(
        s.sample(np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(seed, spawn_key=(REALISTIC_HELD_OUT_SPAWN_KEY, i)))))
        for i in range(n)
    )


def held_out_devices(n: int, seed: int = 12345, sampler: DeviceSampler | None = None) -> tuple[DeviceParams, ...]:
    """A fixed, seeded evaluation population: the same ``n`` devices for the same seed.

    Device i depends only on (seed, i), so the first k devices of a larger set equal a
    set of size k (results stay comparable when the population grows).
    """
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"n={n!r} is out of range: allowed an integer >= 1")
    s = DeviceSampler() if sampler is None else sampler
    return tuple(s.sample(np.random.default_rng([seed, i])) for i in range(n))


# -- the device class of qibolab's emulator platform -------------------------------------------
#
# ``transmon_emulator`` is also the named preset configs pick (``device=transmon_emulator``);
# training draws the class from ``emulator_sampler``'s ranges (the experiment config's
# ``env.kwargs.sampler``), the preset fixes the sample time and the 40 ns gate.


def transmon_emulator() -> DevicePreset:
    """The simulated twin of the qibolab EMULATOR platform the hardware tests ship.

    3-level transmon, α/2π = −300 MHz, Rabi rate 50 MHz at full amplitude, T1 = 60 µs,
    T2 = 50 µs, 1 ns samples, zero detuning, perfect readout, and the 40 ns gate such a
    Rabi rate calls for (``hardware.adapters.qibolab.emulator_transmon`` reads the same
    numbers off the platform; a hardware test keeps the two equal).
    """
    return DevicePreset(
        name="transmon_emulator",
        params=DeviceParams(
            transmon=Transmon(
                anharmonicity_hz=-300e6, rabi_max_hz=50e6, t1_s=60e-6, t2_s=50e-6, dt_s=1e-9
            ),
            p1_given_0=0.0,
            p0_given_1=0.0,
        ),
        gate_duration_s=40e-9,
    )


def emulator_sampler() -> DeviceSampler:
    """Random devices around ``transmon_emulator`` for domain-randomised training.

    Wider than the emulator differs from our model (lab frame, spline-smoothed samples,
    its own 1–2 relaxation), so that a policy trained here meets the emulator inside its
    training range: α/2π −340…−260 MHz, Rabi rate 45…55 MHz, amplitude error ±10 %,
    T1 30…120 µs (log-uniform), T2 = 0.2…1.0 × 2·T1 (the emulator: 0.42), detuning
    ±200 kHz, readout error up to 4 % / 6 % (the emulator: none).
    """
    return DeviceSampler(
        anharmonicity_hz=(-340e6, -260e6),
        rabi_max_hz=(45e6, 55e6),
        t1_s=(30e-6, 120e-6),
        t2_fraction=(0.2, 1.0),
        amplitude_error=(-0.1, 0.1),
        detuning_hz=(-200e3, 200e3),
        p1_given_0=(0.0, 0.04),
        p0_given_1=(0.0, 0.06),
    )


# Named samplers a config picks with ``sampler.name`` (``DeviceSampler.from_mapping``).
SAMPLERS: dict[str, Callable[[], DeviceSampler]] = {
    "default": DeviceSampler,
    "realistic": DeviceSampler.realistic,
    "emulator": emulator_sampler,
}
