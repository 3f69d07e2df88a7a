"""Typed schemas of the env config group: one per registered env id, so env options
(``env.kwargs.<name>``) are checked while Hydra composes.

Each ``configs/env/*.yaml`` starts from the schema of its env id (``env_schemas()``), whose
``kwargs`` field lists the constructor options of that env's config dataclass
(``GateCalibrationConfig``, ``GateCalibrationV1Config``, ...) that a config file can
express. A misspelt option fails at compose time as ``error: env.kwargs.<name>: ...``;
range checks stay with the env, which rejects a bad value when it is built (before a run
directory is written). Every option defaults to null, meaning "the env's own default", so
only options a config sets reach the env (``EnvConf.env_options()``).

``schema.EnvConf`` (untyped ``kwargs``) remains the schema of envs without one here, such
as a Gymnasium env outside pulsecal; ``env.id`` must name the env a typed schema is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

from pulsecal.configs.schema import EnvConf

# --------------------------------------------------------------- options per env


@dataclass
class DeviceSamplerConf:
    """``DeviceSampler`` fields: (low, high) ranges of random devices; null keeps the default.

    ``name`` picks the base sampler whose fields the set ones replace (``presets.SAMPLERS``:
    default, realistic, emulator); null: the default ``DeviceSampler()``.
    """

    name: str | None = None
    anharmonicity_hz: list[float] | None = None
    rabi_max_hz: list[float] | None = None
    t1_s: list[float] | None = None
    t2_fraction: list[float] | None = None
    amplitude_error: list[float] | None = None
    detuning_hz: list[float] | None = None
    p1_given_0: list[float] | None = None
    p0_given_1: list[float] | None = None
    levels: int | None = None
    dt_s: float | None = None
    rep_time_s: float | None = None
    four_level_fraction: float | None = None


@dataclass
class AmplitudeLimitConf:
    """``envs.amplitude_limit.AmplitudeLimit`` fields; null keeps the default."""

    headroom: float | None = None
    max_duration_factor: float | None = None
    grid_samples: int | None = None
    lengthen: bool | None = None


@dataclass
class VerificationConf:
    """``envs.verification.VerificationSettings`` fields; null keeps the default (set
    ``verification: {}`` to verify at episode end with the defaults, the trusted checks;
    the env reserves their most, 5,504 shots, from ``shot_budget``)."""

    shots_per_check: int | None = None
    reference_shots: int | None = None
    amplitude_depths: list[int] | None = None
    drag_depths: list[int] | None = None
    ramsey_delays_s: list[float] | None = None
    train_fraction: float | None = None
    threshold: float | None = None
    min_contrast: float | None = None
    z_alarm: float | None = None
    samples: int | None = None
    max_train_s: float | None = None
    t1_delay_fraction: float | None = None
    stages: int | None = None
    train_shots: int | None = None
    measure_decay: bool | None = None
    gate_detuning_error: bool | None = None
    leakage_model: bool | None = None
    equator_trains: bool | None = None
    decay_model_error: bool | None = None
    credit_floor: bool | None = None
    pass_quantile: float | None = None
    rb_credit_check: bool | None = None
    joint_contrast: bool | None = None
    detuning_noise: bool | None = None
    noise_batches: int | None = None
    rb_sequences: int | None = None
    rb_shots: int | None = None


@dataclass
class RB2QConf:
    """``envs.rb2q.RB2QSettings`` fields (the stated T1/T2 are set from code); null keeps
    the default (``verification: {}`` verifies at episode end with the defaults)."""

    lengths: list[int] | None = None
    n_random: int | None = None
    shots: int | None = None
    threshold: float | None = None
    seed: int | None = None


@dataclass
class GateCalibrationOptions:
    """``GateCalibrationConfig`` options a config file can set (its probes are code)."""

    device: str | None = None
    randomize_device: bool | None = None
    drift: bool | None = None
    open_system: bool | None = None
    gate_duration_s: float | None = None
    shots_per_probe: int | None = None
    shot_budget: int | None = None
    shot_cost: float | None = None
    parameters: list[str] | None = None
    miscalibration: list[float] | None = None
    max_step: list[float] | None = None
    window: float | None = None
    error_floor: float | None = None
    report_truth: bool | None = None
    amplitude_limit: AmplitudeLimitConf | None = None
    verification: VerificationConf | None = None


@dataclass
class GateCalibrationV1Options(GateCalibrationOptions):
    """``GateCalibrationV1Config`` options: v0's plus the estimator, ladders and sampler."""

    sampler: DeviceSamplerConf | None = None
    rounds: int | None = None
    amplitude_depths: list[int] | None = None
    drag_depths: list[int] | None = None
    ramsey_delays_s: list[float] | None = None
    max_phase: float | None = None
    z_range: list[float] | None = None
    residual_sigmas: float | None = None
    contrast: float | None = None
    drag_slope_per_s: float | None = None
    reward: str | None = None
    reward_floor: float | None = None
    couplings: list[float] | None = None
    model_error: float | None = None
    max_level_step: int | None = None
    beta_unit_floor_s: float | None = None


@dataclass
class DriftTrackingOptions(GateCalibrationOptions):
    """``DriftTrackingConfig`` options: the gate's plus the drift timeline and shot levels."""

    decision_interval_s: float | None = None
    episode_s: float | None = None
    shot_levels: list[int] | None = None
    circuit_time_s: float | None = None
    error_scale: float | None = None


@dataclass
class DriftTrackingV1Options(DriftTrackingOptions):
    """``DriftTrackingV1Config`` options: v0's plus the estimate's ageing and clip."""

    age_scale_s: float | None = None
    estimate_clip: float | None = None


@dataclass
class ShapingSamplerConf:
    """``ShapingDeviceSampler`` fields: the transmon ranges and the AWG rise time (s);
    null keeps PulseShaping-v1's training default."""

    base: DeviceSamplerConf | None = None
    rise_time_s: list[float] | None = None


@dataclass
class PulseShapingOptions:
    """``PulseShapingConfig`` options a config file can set."""

    device: str | None = None
    target: str | None = None
    gate_duration_s: float | None = None
    open_system: bool | None = None
    n_basis: int | None = None
    action_mode: str | None = None
    reward_mode: str | None = None
    amplitude_range: float | None = None
    beta_range: float | None = None
    detuning_range_hz: float | None = None
    coeff_range: float | None = None
    max_step: float | None = None
    shots_per_probe: int | None = None
    probe_repeats: list[int] | None = None
    shot_cost: float | None = None
    error_floor: float | None = None
    report_truth: bool | None = None
    randomize_device: bool | None = None
    characterised: bool | None = None
    characterisation_error: list[float] | None = None
    sampler: ShapingSamplerConf | None = None


@dataclass
class PulseShapingV1Options(PulseShapingOptions):
    """``PulseShapingV1Config`` options: v0's (only their defaults differ)."""


@dataclass
class MultiQubitSamplerConf:
    """``MultiQubitSampler`` fields: (low, high) ranges of the two-qubit device draws; null
    keeps the sampler's default (``preset`` is the env's own)."""

    frequency_hz: list[float] | None = None
    anharmonicity_hz: list[float] | None = None
    j_relative: list[float] | None = None
    t1_factor: list[float] | None = None
    t2_fraction: list[float] | None = None
    thermal_population: list[float] | None = None
    p1_given_0: list[float] | None = None
    p0_given_1: list[float] | None = None
    crosstalk: list[float] | None = None
    iq_snr: list[float] | None = None


@dataclass
class CZCalibrationOptions:
    """``CZCalibrationConfig`` options a config file can set. ``sampler: {}`` draws a device
    per episode from ``MultiQubitSampler(preset)``; null keeps the env's default (the preset)."""

    preset: str | None = None
    sampler: MultiQubitSamplerConf | None = None
    open_system: bool | None = None
    shot_budget: int | None = None
    shots_per_probe: int | None = None
    reference_shots: int | None = None
    repeats: int | None = None
    nominal_params: list[float] | None = None
    start_amplitude_phi0: float | None = None
    start_length_s: float | None = None
    max_step_amplitude_phi0: float | None = None
    max_step_length_s: float | None = None
    max_step_phase_rad: float | None = None
    length_range_s: list[float] | None = None
    error_floor: float | None = None
    ramp_s: float | None = None
    pulse_shape: str | None = None
    adiabatic_lambda_2: float | None = None
    verification: RB2QConf | None = None
    info_truth: str | None = None


@dataclass
class CRCalibrationOptions:
    """``CRCalibrationConfig`` options a config file can set (the ECR's pulse shape is code)."""

    preset: str | None = None
    randomize_device: bool | None = None
    open_system: bool | None = None
    shots_per_sequence: int | None = None
    shot_budget: int | None = None
    amp_start_spread: float | None = None
    phase_start_spread_rad: float | None = None
    cancel_start_max: float | None = None
    amp_step: float | None = None
    phase_step_rad: float | None = None
    cancel_step: float | None = None
    verification: RB2QConf | None = None
    info_truth: str | None = None


# ------------------------------------------------------------ env config schemas


def _env_conf(env_id: str, options: type) -> type[EnvConf]:
    """The schema of one env id: ``EnvConf`` whose ``kwargs`` are typed by ``options``
    (``GateCalibrationOptions`` -> ``GateCalibrationEnvConf``). Each is bound in this module
    under its name, so that it is importable and picklable as any class defined here is."""
    name = options.__name__.removesuffix("Options") + "EnvConf"
    conf = make_dataclass(name, [("kwargs", options, field(default_factory=options))], bases=(EnvConf,),
                          namespace={"schema_env_id": env_id, "__module__": __name__})
    globals()[name] = conf
    return conf


# Config-store name -> (env id, the options its configs can set).
_TYPED_ENVS: dict[str, tuple[str, type]] = {
    "gate_calibration_schema": ("pulsecal/GateCalibration-v0", GateCalibrationOptions),
    "gate_calibration_v1_schema": ("pulsecal/GateCalibration-v1", GateCalibrationV1Options),
    "pulse_shaping_schema": ("pulsecal/PulseShaping-v0", PulseShapingOptions),
    "pulse_shaping_v1_schema": ("pulsecal/PulseShaping-v1", PulseShapingV1Options),
    "drift_tracking_schema": ("pulsecal/DriftTracking-v0", DriftTrackingOptions),
    "drift_tracking_v1_schema": ("pulsecal/DriftTracking-v1", DriftTrackingV1Options),
    "cz_calibration_schema": ("pulsecal/CZCalibration-v0", CZCalibrationOptions),
    "cr_calibration_schema": ("pulsecal/CRCalibration-v0", CRCalibrationOptions),
}
ENV_SCHEMAS: dict[str, type[EnvConf]] = {
    "env_schema": EnvConf,
    **{key: _env_conf(env_id, options) for key, (env_id, options) in _TYPED_ENVS.items()},
}


def env_schema_for(env_id: str | None) -> type[EnvConf]:
    """The schema whose env id is ``env_id`` (``EnvConf`` for any other id)."""
    for schema in ENV_SCHEMAS.values():
        if schema.schema_env_id is not None and schema.schema_env_id == env_id:
            return schema
    return EnvConf
