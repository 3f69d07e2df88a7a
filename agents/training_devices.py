"""The devices of a training run: the one (or the population) the env trains on, and the
held-out devices its periodic evaluation uses.

``TrainingDevices`` is what ``configs/device/*.yaml`` builds (``_target_``, through
``hydra.utils.instantiate``): a device preset of ``pulsecal.envs.presets``, optionally
randomised per episode, optionally with physical overrides (SI units), and the
evaluation population. It turns these into the env's constructor options and the reset
options of the training and evaluation copies; the env checks everything else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulsecal.configs.schema import ConfigError
from pulsecal.envs.presets import get_preset, held_out_devices

_PHYSICAL = ("t1_s", "t2_s", "anharmonicity_hz", "detuning_hz")
# The envs whose devices are multi-qubit presets (their ``preset`` option), trained with
# ``MultiQubitTrainingDevices``; every other pulsecal env takes a transmon preset.
MULTI_QUBIT_ENV_IDS = frozenset({"pulsecal/CZCalibration-v0", "pulsecal/CRCalibration-v0"})


@dataclass(frozen=True)
class TrainingDevices:
    """A preset, optionally randomised or with physical overrides, plus the held-out set.

    Attributes:
        preset: device preset name (``pulsecal.envs.presets``).
        randomize: a new device per episode (the env's sampler around the preset).
        t1_s, t2_s, anharmonicity_hz, detuning_hz: physical overrides of the preset's
            transmon (None: the preset's value); they need a fixed device.
        n_eval_devices: copies of the evaluation env, >= 1.
        eval_seed: seed of the held-out devices of a randomised run (and of the
            evaluation episodes of a fixed one).
    """

    preset: str
    randomize: bool = False
    t1_s: float | None = None
    t2_s: float | None = None
    anharmonicity_hz: float | None = None
    detuning_hz: float | None = None
    n_eval_devices: int = 8
    eval_seed: int = 20_240_601

    def __post_init__(self) -> None:
        try:
            get_preset(self.preset)
        except ValueError as err:
            raise ConfigError("preset", str(err)) from None
        if not (isinstance(self.n_eval_devices, int) and self.n_eval_devices >= 1):
            raise ConfigError("n_eval_devices", f"must be a positive integer, got {self.n_eval_devices}")
        if self.randomize and self.overrides():
            raise ConfigError("randomize", "physical overrides (t1_s, ...) need a fixed device: "
                                                  "set randomize=false")

    def overrides(self) -> dict[str, float]:
        """The physical fields that are set."""
        return {k: getattr(self, k) for k in _PHYSICAL if getattr(self, k) is not None}

    def env_options(self) -> dict[str, Any]:
        """Constructor options of a pulsecal env: the preset and, if set, randomisation."""
        options: dict[str, Any] = {"device": self.preset}
        if self.randomize:
            options["randomize_device"] = True  # only envs that support randomisation accept it
        return options

    def fixed_params(self) -> Any | None:
        """The preset's ``DeviceParams`` with the physical overrides, or None without any."""
        overrides = self.overrides()
        if not overrides:
            return None
        params = get_preset(self.preset).params
        transmon = params.transmon
        t1 = overrides.get("t1_s", transmon.t1_s)
        t2 = overrides.get("t2_s", transmon.t2_s)
        if t2 > 2 * t1:
            key = "t2_s" if "t2_s" in overrides else "t1_s"
            raise ConfigError(key, f"T2 = {t2:g} s exceeds 2·T1 = {2 * t1:g} s (physically impossible)")
        for key, value in overrides.items():
            if not math.isfinite(value):
                raise ConfigError(key, f"must be finite, got {value}")
        try:
            return dataclasses.replace(params, transmon=dataclasses.replace(transmon, **overrides))
        except ValueError as err:
            raise ConfigError("", str(err)) from None

    def reset_options(self, n_train: int) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        """Reset options of the ``n_train`` training copies and of the evaluation copies.

        A fixed-preset run evaluates on that preset with fresh episode seeds (the starting
        miscalibration is random); a randomised run on a fixed held-out device population.
        """
        params = self.fixed_params()
        if params is not None:
            return [{"device_params": params}] * n_train, [{"device_params": params}] * self.n_eval_devices
        if self.randomize:
            return None, [{"device_params": d} for d in held_out_devices(self.n_eval_devices, self.eval_seed)]
        return None, None


def stored_env_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments a pulsecal env was trained with, from a run's stored
    ``config.yaml`` (a mapping): the device section's preset (and randomisation), then
    ``env.shots_per_probe``, then ``env.kwargs``, as ``pulsecal-train`` builds them.

    For runs whose ``provenance.json`` predates its ``env_kwargs`` record; the physical
    overrides (``t1_s``, ...) reach the env through reset options, not these arguments,
    and stay in the config's device section.
    """
    env_section, device_section = config.get("env"), config.get("device")
    env: Mapping[str, Any] = env_section if isinstance(env_section, Mapping) else {}
    device: Mapping[str, Any] = device_section if isinstance(device_section, Mapping) else {}
    kwargs: dict[str, Any] = {}
    if device.get("preset"):
        names = {f.name for f in dataclasses.fields(TrainingDevices)}
        kwargs.update(TrainingDevices(**{k: v for k, v in device.items() if k in names}).env_options())
    if env.get("shots_per_probe") is not None:
        kwargs["shots_per_probe"] = env["shots_per_probe"]
    kwargs.update(dict(env.get("kwargs") or {}))
    return kwargs


@dataclass(frozen=True)
class MultiQubitTrainingDevices(TrainingDevices):
    """The devices of a two-qubit env's run (CZCalibration-v0, CRCalibration-v0): a preset of
    ``pulsecal.envs.multi_qubit_presets``, passed to the env as its ``preset`` option.

    These envs draw their per-episode devices themselves (CZ: ``env.kwargs.sampler``, CR:
    ``env.kwargs.randomize_device``), so ``randomize`` and the single-transmon physical
    overrides do not apply here and are rejected. The periodic evaluation runs
    ``n_eval_devices`` copies seeded with ``eval_seed``, i.e. fresh draws of the env's own
    sampler; the held-out comparison with the textbook is ``agents.pipelines.eval_two_qubit``.
    """

    def __post_init__(self) -> None:
        from pulsecal.envs.multi_qubit_presets import multi_qubit_preset_names

        names = multi_qubit_preset_names()
        if self.preset not in names:
            raise ConfigError("preset", f"{self.preset!r}: allowed one of {', '.join(names)}")
        if not (isinstance(self.n_eval_devices, int) and self.n_eval_devices >= 1):
            raise ConfigError("n_eval_devices", f"must be a positive integer, got {self.n_eval_devices}")
        if self.randomize:
            raise ConfigError("randomize", "true: a two-qubit env randomises its devices itself "
                                           "(env.kwargs.sampler / env.kwargs.randomize_device); allowed false")
        if self.overrides():
            raise ConfigError(next(iter(self.overrides())), "physical overrides of a single transmon do not "
                                                            "apply to a multi-qubit preset; allowed null")

    def env_options(self) -> dict[str, Any]:
        return {"preset": self.preset}

    def fixed_params(self) -> Any | None:
        return None

    def reset_options(self, n_train: int) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        return None, None
