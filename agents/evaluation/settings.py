"""What an evaluation runs: the agents, the baselines, the benchmarks' devices and targets.

``EvaluationSettings`` fixes the held-out device set by (n_devices, seed) alone and holds
the configured baselines (anything implementing ``baselines.Baseline``); ``AgentSpec``
names an agent, the benchmark it plays and the env it was trained on; its policy is a
``pulsecal.hardware.policy.Policy``, played as a replay session plays it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pulsecal.agents.baselines import Baseline, default_baselines, registered_baselines
from pulsecal.agents.baselines.common import DEFAULT_MISCALIBRATION, require
from pulsecal.envs.amplitude_limit import AmplitudeLimit
from pulsecal.envs.presets import DeviceSampler, get_preset
from pulsecal.envs.verification import VerificationSettings
from pulsecal.hardware.policy import Policy

Task = Literal["calibration", "pulse_shaping", "drift_tracking"]
TASKS: tuple[str, ...] = ("calibration", "pulse_shaping", "drift_tracking")
ENV_IDS: dict[str, str] = {
    "calibration": "pulsecal/GateCalibration-v0",
    "pulse_shaping": "pulsecal/PulseShaping-v0",
    "drift_tracking": "pulsecal/DriftTracking-v0",
}
# The calibration benchmark's device sets (docs/devices.md): ``held_out_devices``,
# ``realistic_held_out_devices`` and ``stress_devices``, each (n_devices, seed).
DEVICE_SETS: tuple[str, ...] = ("default", "realistic", "stress")
# Transmons of the realistic drift benchmark: Ω_R/2π 30–200 MHz, α/2π −400…−150 MHz,
# T1 10–300 µs, T2 from 0.1·T1 to 2·T1, readout errors up to 10 % / 20 %; the 20 ns gate
# of transmon_drifting (|u| <= 1 needs Ω_R/2π >= about 55 MHz for its π pulse, so the
# drive range starts there until amplitude-limited devices are handled).
REALISTIC_DRIFT_SAMPLER: dict[str, Any] = {
    "anharmonicity_hz": (-400e6, -150e6), "rabi_max_hz": (60e6, 200e6), "t1_s": (10e-6, 300e-6),
    "t2_fraction": (0.05, 1.0), "amplitude_error": (-0.05, 0.05), "detuning_hz": (-200e3, 200e3),
    "p1_given_0": (0.0, 0.10), "p0_given_1": (0.0, 0.20),
}


def drift_device_sampler(ranges: Mapping[str, Any] | None) -> DeviceSampler:
    """The ``DeviceSampler`` of the realistic drift benchmark (``REALISTIC_DRIFT_SAMPLER``,
    each field of ``ranges`` replacing its range); dt and rep time are transmon_drifting's."""
    p = get_preset("transmon_drifting").params
    merged = {**REALISTIC_DRIFT_SAMPLER, **dict(ranges or {})}
    fields = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in merged.items()}
    fields.setdefault("dt_s", p.dt_s)
    fields.setdefault("rep_time_s", p.rep_time_s)
    return DeviceSampler(**fields)


# Small miscalibration of a freshly calibrated gate (DriftTrackingConfig's default).
DRIFT_MISCALIBRATION: tuple[float, float, float, float] = (0.005, 0.05, 20e3, 0.0)


@dataclass(frozen=True)
class AgentSpec:
    """An agent to evaluate: a name, the benchmark it was trained for, its policy, the
    env keyword arguments it was trained with (e.g. ``shots_per_probe``) and the
    registered env id it plays (None: the task's default in ``ENV_IDS``; a later
    version such as ``pulsecal/DriftTracking-v1`` faces the same devices and starts)."""

    name: str
    task: str
    policy: Policy
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    env_id: str | None = None

    @property
    def resolved_env_id(self) -> str:
        return self.env_id if self.env_id is not None else ENV_IDS[self.task]

    def __post_init__(self) -> None:
        require(bool(self.name) and self.name not in registered_baselines(), "AgentSpec.name", self.name,
                f"a non-empty name other than the baselines {list(registered_baselines())}")
        require(self.task in TASKS, "AgentSpec.task", self.task, f"one of {list(TASKS)}")
        if not isinstance(self.policy, Policy):
            raise TypeError(f"AgentSpec.policy is {type(self.policy).__name__}: allowed a "
                            "pulsecal.hardware.policy.Policy (initial_state(), act(observation, state))")
        base = ENV_IDS[self.task].rsplit("-v", 1)[0]
        require(self.env_id is None or (isinstance(self.env_id, str) and self.env_id.rsplit("-v", 1)[0] == base),
                "AgentSpec.env_id", self.env_id, f"None or a version of {base}")


@dataclass(frozen=True)
class Targets:
    """Pass/fail thresholds the agents are held to (baselines are listed against them too)."""

    calibration_median_ratio: float = 1.1
    calibration_p90_ratio: float = 1.5
    calibration_budget: int = 1000
    shaping_infidelity: float = 1e-3
    # Share of a randomised shaping set that must reach shaping_infidelity (``calibrated``).
    shaping_fraction: float = 0.9
    drift_improvement: float = 2.0


@dataclass(frozen=True)
class EvaluationSettings:
    """What to evaluate and where the results go.

    Attributes:
        out_dir: directory for results.csv, results.md and the plots (created).
        n_devices, seed: the held-out calibration devices (``held_out_devices``), >= 1.
        device_set: which population the calibration benchmark draws with (n_devices,
            seed): ``default`` (``held_out_devices``), ``realistic``
            (``realistic_held_out_devices``; pair it with ``miscalibration =
            presets.REALISTIC_MISCALIBRATION``) or ``stress`` (``stress_devices``).
        budgets: shot budgets per device, each >= 1.
        baselines: the calibration baselines (``Baseline``s, unique names; default: one of
            each registered baseline with its default settings).
        methods: names of the baselines to run, in this order (None: all of ``baselines``).
        gate_duration_s: calibrated gate length (20 ns).
        amplitude_limit: how a device whose π pulse does not fit full scale at that length
            is handled (``envs.amplitude_limit.AmplitudeLimit``: lengthened within the
            headroom up to a maximum duration, or refused); baselines and agents alike.
        miscalibration: starting offsets (amplitude rel., β rel., detuning Hz, phase rad).
        workers: processes for the baselines (joblib), >= 1.
        chunk_size: devices per job (the standard calibration runs a chunk in lockstep).
        pulse_shaping, drift: run those benchmarks.
        shaping_preset, shaping_duration_s: device and gate of the pulse-shaping benchmark.
        shaping_held_out: also run it on this many randomised devices around the preset
            (``pulse_shaping_core.held_out_shaping_devices(n, seed)``; methods ``*_heldout``), 0: none.
        shaping_realistic: also run it on this many devices of the realistic held-out
            population (α/2π down to −150 MHz; ``realistic_shaping_devices(n, seed)``;
            methods ``*_realistic``), 0: none.
        shaping_realistic_sampler: ranges of that population (``shaping_sampler`` mapping:
            ``{base: {DeviceSampler field: [low, high]}, rise_time_s: [low, high]}``;
            None: ``REALISTIC_HELD_OUT_SAMPLER``).
        grape_restarts, grape_maxiter: GRAPE effort.
        drift_devices, drift_hours, drift_interval_s: drift benchmark population and timeline.
        drift_realistic: also run the drift benchmark on this many drifting devices whose
            transmon is drawn from ``drift_sampler`` (methods ``*_realistic``), 0: none.
        drift_sampler: ``DeviceSampler`` ranges of those devices (None:
            ``REALISTIC_DRIFT_SAMPLER``); the drift processes are ``transmon_drifting``'s.
        drift_recalibration: name of the baseline the drift benchmark reruns on a schedule
            (its rows: ``<name>_hourly``; it need not be among ``methods``).
        recalibration_interval_s, recalibration_budget: that scheduled calibration.
        circuit_time_s: circuit length whose frame error the drift error includes.
        progress, plots: tqdm bars and PNG plots.
        targets: pass/fail thresholds.
        verify: verify every baseline's calibration (``envs.verification``, fresh shots on
            top of the calibration budget, in ``verification_shots``) and add the verdict
            columns to its rows: status, estimate, 90 % interval, reason, false_calibrated.
        verification: ``VerificationSettings`` fields for ``verify`` (None or {}: the
            defaults, the trusted checks; docs/verification.md has the fields ``quick()``
            turns off).
    """

    out_dir: Path
    n_devices: int = 100
    seed: int = 12345
    device_set: str = "default"
    budgets: tuple[int, ...] = (1000, 5000, 20000)
    baselines: tuple[Baseline, ...] = field(default_factory=default_baselines)
    methods: tuple[str, ...] | None = None
    gate_duration_s: float = 20e-9
    amplitude_limit: AmplitudeLimit = field(default_factory=AmplitudeLimit)
    miscalibration: tuple[float, float, float, float] = DEFAULT_MISCALIBRATION
    workers: int = 2
    chunk_size: int = 25
    pulse_shaping: bool = True
    shaping_preset: str = "transmon_short"
    shaping_duration_s: float = 6e-9
    shaping_held_out: int = 0
    shaping_realistic: int = 0
    shaping_realistic_sampler: Mapping[str, Any] | None = None
    grape_restarts: int = 2
    grape_maxiter: int = 400
    drift: bool = True
    drift_devices: int = 4
    drift_realistic: int = 0
    drift_sampler: Mapping[str, Any] | None = None
    drift_hours: float = 24.0
    drift_interval_s: float = 600.0
    drift_recalibration: str = "standard"
    recalibration_interval_s: float = 3600.0
    recalibration_budget: int = 1000
    circuit_time_s: float = 1e-6
    progress: bool = True
    plots: bool = True
    targets: Targets = field(default_factory=Targets)
    verify: bool = False
    verification: Mapping[str, Any] | None = None

    def verification_settings(self) -> VerificationSettings:
        """The settings ``verify`` runs with."""
        return VerificationSettings.from_mapping(dict(self.verification or {}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        self.verification_settings()  # a misspelt field or a value out of range fails here
        for name in ("n_devices", "workers", "chunk_size", "drift_devices", "grape_restarts", "grape_maxiter"):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, name, v, "an integer >= 1")
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        require(self.device_set in DEVICE_SETS, "device_set", self.device_set, f"one of {list(DEVICE_SETS)}")
        require(isinstance(self.shaping_held_out, int) and not isinstance(self.shaping_held_out, bool)
                and self.shaping_held_out >= 0, "shaping_held_out", self.shaping_held_out, "an integer >= 0")
        for name in ("shaping_realistic", "drift_realistic"):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 0, name, v, "an integer >= 0")
        if self.shaping_realistic_sampler is not None:
            from pulsecal.envs.pulse_shaping_core import shaping_sampler

            try:
                shaping_sampler(self.shaping_realistic_sampler)
            except (TypeError, ValueError) as e:
                raise ValueError(f"shaping_realistic_sampler: {e}") from e
        if self.drift_sampler is not None:
            try:
                drift_device_sampler(self.drift_sampler)
            except (TypeError, ValueError) as e:
                raise ValueError(f"drift_sampler: {e}") from e
        budgets = tuple(self.budgets)
        require(len(budgets) >= 1 and all(isinstance(b, int) and b >= 1 for b in budgets), "budgets",
                self.budgets, "one or more integers >= 1")
        object.__setattr__(self, "budgets", tuple(sorted(set(budgets))))
        baselines = tuple(self.baselines)
        for b in baselines:
            if not isinstance(b, Baseline):
                raise TypeError(f"baselines holds a {type(b).__name__}: allowed a Baseline "
                                "(name, min_budget(), run(task, start, budget, rng, index))")
        names = [b.name for b in baselines]
        require(len(set(names)) == len(names), "baselines", names, "baselines with distinct names")
        object.__setattr__(self, "baselines", baselines)
        methods = tuple(names) if self.methods is None else tuple(self.methods)
        require(all(m in names for m in methods), "methods", self.methods, f"names from {names}")
        object.__setattr__(self, "methods", methods)
        if self.drift:
            require(self.drift_recalibration in names, "drift_recalibration", self.drift_recalibration,
                    f"a name from {names}")
        for name in ("gate_duration_s", "shaping_duration_s", "drift_hours", "drift_interval_s",
                     "recalibration_interval_s"):
            v = getattr(self, name)
            require(isinstance(v, int | float) and math.isfinite(v) and v > 0, name, v, "a finite value > 0")
        require(self.drift_hours * 3600.0 >= self.drift_interval_s, "drift_hours", self.drift_hours,
                ">= one drift_interval_s")
        require(math.isfinite(self.circuit_time_s) and self.circuit_time_s >= 0, "circuit_time_s",
                self.circuit_time_s, ">= 0 s")
        require(isinstance(self.recalibration_budget, int) and self.recalibration_budget >= 1,
                "recalibration_budget", self.recalibration_budget, "an integer >= 1")
        get_preset(self.shaping_preset)
        require(isinstance(self.amplitude_limit, AmplitudeLimit), "amplitude_limit", self.amplitude_limit,
                "an envs.amplitude_limit.AmplitudeLimit")

    def baseline(self, name: str) -> Baseline:
        """The configured baseline called ``name``."""
        for b in self.baselines:
            if b.name == name:
                return b
        raise ValueError(f"name={name!r} is out of range: allowed one of {[b.name for b in self.baselines]}")

    @property
    def run_methods(self) -> tuple[Baseline, ...]:
        """The baselines ``methods`` names, in that order."""
        return tuple(self.baseline(m) for m in self.methods or ())

    @property
    def scheduled_method(self) -> str:
        """Results name of the drift benchmark's scheduled recalibration."""
        return f"{self.drift_recalibration}_hourly"
