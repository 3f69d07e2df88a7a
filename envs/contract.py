"""The public contract of the calibration envs: what a controller outside an env may know.

Replay sessions, sweeps, scripted controllers and exporters need more than an
observation: the gate an env calibrates, its current parameters with names and units,
what the last measurement read, how many shots a step costs and the env's resolved
settings. They get all of it from one frozen record, :class:`CalibrationState`, returned
by ``calibration_state(index=0)`` on the unwrapped single env (and on the vector envs,
per copy), so nothing outside ``pulsecal.envs`` reads an env's internals. The record is
versioned (:data:`CALIBRATION_STATE_VERSION`) together with the env id: a field changes
meaning only with a new version, and an env version that changes what it measures or
how it acts says so here.

The builders below are the only code that knows each env's internal arrays; they read
them and copy the values out (plain Python floats, tuples and JSON-able dicts), so a
state taken at one step never changes when the env moves on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .calibration import FAMILIES, PARAMETER_NAMES, Probe, default_probes

CALIBRATION_STATE_VERSION = 1

# Units of the DRAG parameters, in the order of ``calibration.PARAMETER_NAMES``.
PARAMETER_UNITS: Mapping[str, str] = {"amplitude": "full scale", "beta_s": "s", "detuning_hz": "Hz",
                                      "phase": "rad"}

ActionKind = Literal["step", "around_estimate", "choice", "control"]


@dataclass(frozen=True)
class Gate:
    """The gate an env calibrates.

    Attributes:
        name: the gate ("X": a DRAG X gate; its SX shares β and detuning at half the area).
        duration_s: its length in seconds, on the device's sample grid: the duration this
            copy calibrates at (longer than the configured one on an amplitude-limited
            device, ``amplitude_limit``).
    """

    name: str
    duration_s: float


@dataclass(frozen=True)
class GateParameter:
    """One parameter of the gate as the env applies it now.

    Attributes:
        name: the parameter's name (``calibration.PARAMETER_NAMES``).
        unit: its unit ("full scale" for the amplitude, "s", "Hz", "rad").
        value: its current value in that unit.
    """

    name: str
    unit: str
    value: float


@dataclass(frozen=True)
class ActionEntry:
    """What one entry of the action vector does (actions are ``Box(-1, 1)``).

    Attributes:
        index: the entry's position in the action vector.
        name: the gate parameter it moves (``kind`` "step" or "around_estimate"), or the
            name of the env setting it chooses ("choice", "control").
        kind: "step": parameter += action · ``per_unit_action`` (then clipped to the
            env's window); "around_estimate": parameter = ``reference`` + action ·
            ``per_unit_action`` (``reference`` the env's running estimate of the best
            value); "choice": picks one of ``choices`` in equal bins of [-1, 1];
            "control": a continuous setting of the env's own measurement strategy.
        unit: the unit of ``per_unit_action`` and ``reference`` ("" for choices and controls).
        per_unit_action: the physical change of the parameter per unit of action (NaN
            for choices and controls). A controller turns a physical correction c into
            the action c / per_unit_action.
        reference: the value the entry acts from: the current parameter ("step"), the
            env's estimate ("around_estimate"); NaN for choices and controls.
        choices: the values a "choice" entry picks from, in bin order (else empty).
    """

    index: int
    name: str
    kind: ActionKind
    unit: str = ""
    per_unit_action: float = math.nan
    reference: float = math.nan
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """What the env's last measurement read (before the first one: the env's prior).

    Attributes:
        names: one name per value (a probe's name, or a probe family's).
        values: the readings: excited-state fractions in [0, 1] (GateCalibration-v0,
            DriftTracking) or sign-flipped twin signals (P+ − P−)/C in [-1, 1]
            (GateCalibration-v1).
        observation_slice: (start, stop) of these values inside the observation (as
            float32, clipped to the observation box).
    """

    names: tuple[str, ...]
    values: tuple[float, ...]
    observation_slice: tuple[int, int]


@dataclass(frozen=True)
class ShotPlan:
    """How an episode spends shots (every shot runs on the device and is counted).

    Attributes:
        shot_budget: the env's shot budget per episode.
        reset_shots: shots the reset spends before the first action (its measurement).
        shots_per_step: shots of every measuring step; None when the action chooses them
            (then ``shot_levels`` × the size of the chosen probe set).
        steps_per_episode: steps after which the env terminates itself; None when the
            end depends on the device clock (DriftTracking) rather than on shots alone.
        measuring_steps: how many of those steps measure (GateCalibration-v1's last
            action sets the final gate and runs no probes); None as ``steps_per_episode``.
        shot_levels: shots per probe an action may choose (action entry "shot_level").
        probe_set_sizes: probes in each probe set an action may choose ("probe_set").
    """

    shot_budget: int
    reset_shots: int
    shots_per_step: int | None
    steps_per_episode: int | None
    measuring_steps: int | None
    shot_levels: tuple[int, ...] = ()
    probe_set_sizes: tuple[int, ...] = ()

    def shots_after(self, steps: int) -> int:
        """Shots used after ``steps`` steps of an episode (reset included); only for envs
        with a fixed ``shots_per_step``."""
        if self.shots_per_step is None:
            raise ValueError("ShotPlan.shots_after: the action chooses the shots of each step")
        measured = steps if self.measuring_steps is None else min(int(steps), self.measuring_steps)
        return self.reset_shots + self.shots_per_step * max(measured, 0)

    def step_shots(self, action: Sequence[float], action_entries: Sequence[ActionEntry]) -> int:
        """Shots the step with ``action`` spends (when it measures)."""
        if self.shots_per_step is not None:
            return self.shots_per_step
        by_name = {e.name: e for e in action_entries}
        level = self.shot_levels[_bin(float(action[by_name["shot_level"].index]), len(self.shot_levels))]
        size = self.probe_set_sizes[_bin(float(action[by_name["probe_set"].index]), len(self.probe_set_sizes))]
        return int(level) * int(size)


@dataclass(frozen=True)
class CalibrationState:
    """A calibration env's public state for one copy (see the module docstring).

    Attributes:
        version: :data:`CALIBRATION_STATE_VERSION` of this record's layout.
        env_id: the registered env id (``pulsecal/<Name>-v<N>``).
        gate: the gate it calibrates.
        parameters: every gate parameter with its unit and current value, in
            ``calibration.PARAMETER_NAMES`` order.
        action: what each action entry does, in action order.
        measurement: the last measurement's names and values.
        shot_plan: how an episode spends shots.
        settings: the env's resolved constructor settings in JSON form (probes as
            ``{kind, depth, delay_s}`` records, tuples as lists): what rebuilds the env
            (``env_id`` + these) or checks that another env matches it.
    """

    env_id: str
    gate: Gate
    parameters: tuple[GateParameter, ...]
    action: tuple[ActionEntry, ...]
    measurement: Measurement
    shot_plan: ShotPlan
    settings: Mapping[str, Any] = field(default_factory=dict)
    version: int = CALIBRATION_STATE_VERSION

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def parameter_values(self) -> tuple[float, ...]:
        return tuple(p.value for p in self.parameters)

    @property
    def controlled_parameters(self) -> tuple[str, ...]:
        """The gate parameters the action moves, in action order."""
        return tuple(e.name for e in self.action if e.kind in ("step", "around_estimate"))

    def parameter(self, name: str) -> float:
        for p in self.parameters:
            if p.name == name:
                return p.value
        raise KeyError(f"CalibrationState.parameter({name!r}): allowed {list(self.parameter_names)}")

    def to_dict(self) -> dict[str, Any]:
        """The record in JSON form (NaN as None), for journals and manifests."""
        return _json_form(dataclasses.asdict(self))


@dataclass(frozen=True)
class EnvDescription:
    """What any pulsecal env says about itself for an export's manifest (every field may be
    None for an env without it): the frozen constructor settings, the fixed pulse family
    the actions shape or calibrate (e.g. ``DragGate``), the device preset, the sampler
    the env draws training devices from, and one name per observation entry in order
    (the builders ``*_observation_names`` below). The objects are the env's own frozen
    dataclasses, shared, never copied: read them, don't mutate them."""

    config: Any = None
    gate: Any = None
    preset: Any = None
    sampler: Any = None
    observation_names: tuple[str, ...] | None = None


# -- JSON form of env settings --------------------------------------------------------------------


def probe_to_json(probe: Probe) -> dict[str, Any]:
    return {"kind": probe.kind, "depth": probe.depth, "delay_s": probe.delay_s}


def probes_from_json(items: Sequence[Mapping[str, Any]] | None) -> tuple[Probe, ...]:
    """Probes from plain records ``{kind, depth, delay_s}`` (config and journal form)."""
    if items is None:
        return default_probes()
    return tuple(Probe(str(p["kind"]), int(p.get("depth", 0)), float(p.get("delay_s", 0.0)))  # type: ignore[arg-type]
                 for p in items)


def json_form(value: Any) -> Any:
    """``value`` with probes as records, dataclasses as dicts, tuples as lists and numpy
    scalars as Python numbers (NaN kept: settings never hold one)."""
    if isinstance(value, Probe):
        return probe_to_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_form(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_form(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_form(value: Any) -> Any:
    value = json_form(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_form(v) for v in value]
    return value


# -- builders (one per env family; they alone read the cores) ------------------------------------


def _bin(a: float, n: int) -> int:
    """The equal bin of [-1, 1] that ``a`` falls in, of ``n`` (the envs' choice rule)."""
    return min(int((a + 1.0) * 0.5 * n), n - 1)


def _settings(core: Any) -> dict[str, Any]:
    cfg = core.cfg
    resolved = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if resolved.get("gate_duration_s") is None:
        resolved["gate_duration_s"] = float(core.gate.duration_s)  # the preset's
    return {k: json_form(v) for k, v in resolved.items()}


def _parameters(core: Any, index: int) -> tuple[GateParameter, ...]:
    return tuple(GateParameter(name, PARAMETER_UNITS[name], float(v))
                 for name, v in zip(PARAMETER_NAMES, core.params[index], strict=True))


def _step_entries(core: Any, index: int, first: int) -> list[ActionEntry]:
    scale = core.step_scale(index)
    return [ActionEntry(first + q, PARAMETER_NAMES[c], "step", PARAMETER_UNITS[PARAMETER_NAMES[c]],
                        float(scale[c]), float(core.params[index, c]))
            for q, c in enumerate(int(c) for c in core.param_index)]


def _probe_measurement(core: Any, index: int, start: int) -> Measurement:
    probes = core.cfg.probes
    k = len(probes)
    return Measurement(tuple(p.name for p in probes), tuple(float(x) for x in core.last_p1[index][:k]),
                       (start, start + k))


def gate_calibration_state(core: Any, index: int, env_id: str) -> CalibrationState:
    """GateCalibration-v0: probe fractions, parameter steps, a fixed shot cost per step."""
    cfg = core.cfg
    step = int(core.step_shots)
    return CalibrationState(
        env_id, Gate("X", float(core.gate_duration_s(index))), _parameters(core, index),
        tuple(_step_entries(core, index, 0)), _probe_measurement(core, index, 0),
        # Terminated once the next step would pass the budget: the reset and
        # budget // step − 1 steps fit (the first step always runs); the budget is what an
        # episode-end verification leaves (``calibration_budget``).
        ShotPlan(int(cfg.shot_budget), step, step, max(int(cfg.calibration_budget) // step - 1, 1),
                 max(int(cfg.calibration_budget) // step - 1, 1)),
        _settings(core))


def gate_calibration_v1_state(core: Any, index: int, env_id: str) -> CalibrationState:
    """GateCalibration-v1: twin signals, parameters placed around the running estimate
    (``residual_sigmas`` posterior σ per unit), a probe-caution control, ``rounds`` rounds."""
    cfg = core.cfg
    sigma = core.sigma[index]
    entries = [ActionEntry(c, PARAMETER_NAMES[c], "around_estimate", PARAMETER_UNITS[PARAMETER_NAMES[c]],
                           float(cfg.residual_sigmas * sigma[c]), float(core.estimate[index, c]))
               for c in range(3)]
    entries.append(ActionEntry(3, "probe_caution_z", "control"))
    round_shots = 6 * int(cfg.shots_per_twin)
    families = ("amplitude", "drag", "ramsey")
    return CalibrationState(
        env_id, Gate("X", float(core.gate_duration_s(index))), _parameters(core, index), tuple(entries),
        # The observation's fourth block of three holds the last twin signals.
        Measurement(families, tuple(float(x) for x in core.signal[index]), (9, 12)),
        ShotPlan(int(cfg.shot_budget), round_shots, round_shots, int(cfg.rounds), int(cfg.rounds) - 1),
        _settings(core))


def _drift_state(core: Any, index: int, env_id: str, probe_sets: Sequence[str],
                 measurement_start: int) -> CalibrationState:
    cfg = core.cfg
    entries = [ActionEntry(0, "shot_level", "choice", choices=tuple(int(s) for s in cfg.shot_levels)),
               ActionEntry(1, "probe_set", "choice", choices=tuple(probe_sets)),
               *_step_entries(core, index, 2)]
    sizes = tuple(int(np.count_nonzero(m)) for m in core.masks)
    return CalibrationState(
        env_id, Gate("X", float(core.gate.duration_s)), _parameters(core, index), tuple(entries),
        _probe_measurement(core, index, measurement_start),
        # The reset measures nothing; each step runs the chosen probes; the episode ends
        # on the device clock (``episode_s``), which shots advance too.
        ShotPlan(int(cfg.shot_budget), 0, None, None, None, tuple(int(s) for s in cfg.shot_levels), sizes),
        _settings(core))


def drift_tracking_state(core: Any, index: int, env_id: str) -> CalibrationState:
    """DriftTracking-v0: probe fractions first in the observation."""
    return _drift_state(core, index, env_id, ("all", *FAMILIES), 0)


def drift_tracking_v1_state(core: Any, index: int, env_id: str) -> CalibrationState:
    """DriftTracking-v1: probe fractions after the per-family estimates and ages."""
    return _drift_state(core, index, env_id, ("ramsey_deep", "ramsey", "amplitude", "all"),
                        2 * len(core.families))


# -- observation names (one per entry, in the order the cores concatenate them) -------------------
#
# Names say what an entry holds and how it is scaled: ``p1_<probe>`` a measured excited
# fraction, ``*_steps`` a length in ``max_step`` units, ``*_fraction`` a share of a budget
# or an episode, ``*_sigmas`` a multiple of the posterior σ.


def _param_names(core: Any) -> list[str]:
    return [PARAMETER_NAMES[int(c)] for c in core.param_index]


def gate_calibration_observation_names(core: Any) -> tuple[str, ...]:
    """GateCalibration-v0: the probes' excited fractions, the parameters' offsets from the
    start in max_step units, the used share of the shot budget."""
    return (*(f"p1_{p.name}" for p in core.cfg.probes), *(f"{n}_from_start_steps" for n in _param_names(core)),
            "shot_budget_fraction")


def gate_calibration_v1_observation_names(core: Any) -> tuple[str, ...]:
    """GateCalibration-v1: six blocks over (amplitude, beta_s, detuning_hz), measured by the
    (amplitude, drag, ramsey) families, then the round and shot-budget fractions."""
    params, families = PARAMETER_NAMES[:3], FAMILIES
    return (*(f"{n}_estimate_offset_sigmas" for n in params), *(f"{n}_log10_sigma_units" for n in params),
            *(f"{n}_estimate_from_start_units" for n in params), *(f"{f}_twin_signal" for f in families),
            *(f"{f}_ladder_level_fraction" for f in families), *(f"{n}_from_start_units" for n in params),
            "round_fraction", "shot_budget_fraction")


def drift_tracking_observation_names(core: Any) -> tuple[str, ...]:
    """DriftTracking-v0: the probes' last excited fractions and their ages, the parameters'
    offsets from the start in max_step units, the elapsed share of the episode."""
    probes = [p.name for p in core.cfg.probes]
    return (*(f"p1_{p}" for p in probes), *(f"age_{p}" for p in probes),
            *(f"{n}_from_start_steps" for n in _param_names(core)), "episode_fraction")


def drift_tracking_v1_observation_names(core: Any) -> tuple[str, ...]:
    """DriftTracking-v1: per probed family the correction it asks for (max_step units) and
    the time since it was probed, the probes' last excited fractions, the episode share."""
    return (*(f"{f}_correction_steps" for f in core.families), *(f"{f}_age" for f in core.families),
            *(f"p1_{p.name}" for p in core.cfg.probes), "episode_fraction")


def pulse_shaping_observation_names(core: Any) -> tuple[str, ...]:
    """PulseShaping: the pulse coordinates z (relative amplitude, relative β, detuning, K
    sine coefficients on I and K on Q), the score, the measured probes' excited fractions
    (``reward_mode="measured"``) and the characterised device features (v1)."""
    k = int(core.cfg.n_basis)
    probes = ["p1_ground", *(f"p1_repeat_{r}" for r in core.cfg.probe_repeats)] if core.n_probe else []
    features = (["anharmonicity_rel", "rabi_rate_rel", "rise_time", "detuning"]
                if core.features.shape[1] else [])
    return ("amplitude_z", "beta_z", "detuning_z", *(f"coeff_i_{j}" for j in range(k)),
            *(f"coeff_q_{j}" for j in range(k)), "score", *probes, *features)


def stepped_gate_state(env_id: str, gate: Gate, names: Sequence[str], units: Sequence[str],
                       steps: Iterable[float], values: Iterable[float], measurement: Measurement,
                       plan: ShotPlan, config: Any, **extra_settings: Any) -> CalibrationState:
    """A calibration state whose action steps each gate parameter (the two-qubit session
    envs): parameters ``names`` with ``units`` and current ``values``, action entry k moves
    parameter k by ``steps[k]`` per unit; settings are the dataclass ``config``'s fields in
    JSON form and ``extra_settings``."""
    values = [float(v) for v in values]
    params = tuple(GateParameter(n, u, v) for n, u, v in zip(names, units, values, strict=True))
    action = tuple(ActionEntry(k, n, "step", u, float(s), float(v))
                   for k, (n, u, s, v) in enumerate(zip(names, units, steps, values, strict=True)))
    settings = {f.name: json_form(getattr(config, f.name)) for f in dataclasses.fields(config)}
    settings.update(extra_settings)
    return CalibrationState(env_id, gate, params, action, measurement, plan, settings)


#: The reset options a two-qubit session env takes: the session's journaled device and the
#: gate parameters it starts from.
SESSION_RESET_OPTIONS = frozenset({"device", "initial_params"})


def refuse_env_verification(verification: Any, gate: str) -> None:
    """A session env never verifies by itself: the session verifies its final ``gate``
    through the journaled device, so shots are paid and journaled once."""
    if verification is not None:
        raise ValueError(f"env.verification={verification!r}: allowed None in a session (the session verifies "
                         f"the final {gate} through its journaled device)")


def session_reset_options(options: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(device, initial_params)`` of a session env's reset options; another key is refused."""
    unknown = set(options) - SESSION_RESET_OPTIONS
    if unknown:
        raise ValueError(f"reset options {sorted(unknown)}: allowed {sorted(SESSION_RESET_OPTIONS)}")
    return options.get("device"), options.get("initial_params")
