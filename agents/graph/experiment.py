"""What a calibration experiment is to the graph: inputs, one run, a JSON-able result.

An experiment measures one target (a qubit such as ``"q3"`` or a pair such as
``("q2", "q3")``) on a device behind the ``envs.protocol.Device`` seam, fits its data and
says whether the result is usable. The graph's nodes wrap experiments: ``check_data`` runs
an experiment's cheap form, ``calibrate`` its full form. Experiments never write the
parameter store themselves; they return the values and the graph records them with
provenance.

Parameters are a flat mapping of names ``"<target>.<name>"`` (``"q3.frequency_hz"``,
``"q3.pi_amplitude"``, ``"q2-q3.cz_amplitude_phi0"``): one namespace the store, the report
and qibolab's ``parameters.json`` export can all be mapped onto.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Status = Literal["in_spec", "out_of_spec", "bad_data"]
STATUSES: tuple[Status, ...] = ("in_spec", "out_of_spec", "bad_data")
# Lab convention for the time a shot costs on the device when a preset does not say
# otherwise: a wait of several T1 for the qubit to relax before the next shot.
REPETITION_TIME_S = 200e-6


def target_name(target: str | tuple[str, ...]) -> str:
    """``"q3"`` for a qubit, ``"q2-q3"`` for a pair: the prefix of its parameter names."""
    return target if isinstance(target, str) else "-".join(target)


@dataclass(frozen=True)
class ExperimentResult:
    """One run of an experiment on one target.

    Attributes:
        experiment: the experiment's name.
        target: the qubit or pair it measured.
        status: ``in_spec`` (the fit is good and the parameters are within their
            specification), ``out_of_spec`` (a good fit that says recalibrate), or
            ``bad_data`` (no trustworthy fit: the node must diagnose its dependencies).
        values: new parameter values by full name (empty for a pure check).
        quality: fit quality figures (e.g. ``residual``, ``frequency_hz_stderr``).
        shots: shots this run spent.
        device_time_s: device time this run occupied: shots × repetition time plus the
            sequences' own durations.
        data: the measured data and its fit as JSON-able lists (for plots and the report),
            e.g. ``{"x": [...], "y": [...], "fit": [...], "x_label": "..."}``.
        message: one line a person reads in the log and report.
    """

    experiment: str
    target: str | tuple[str, ...]
    status: Status
    values: Mapping[str, float] = field(default_factory=dict)
    quality: Mapping[str, float] = field(default_factory=dict)
    shots: int = 0
    device_time_s: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ExperimentResult.status: {self.status!r}: allowed {STATUSES}")
        if self.shots < 0 or self.device_time_s < 0:
            raise ValueError(f"ExperimentResult: shots={self.shots}, device_time_s={self.device_time_s}: must be >= 0")


@runtime_checkable
class Experiment(Protocol):
    """A measurement and its fit, for one kind of target.

    ``reads`` and ``writes`` are parameter names with ``{t}`` standing for the target's
    prefix (``"{t}.frequency_hz"``) and, for a pair, ``{a}`` and ``{b}`` for its first and
    second qubit (``"{a}.pi_amplitude"``); the graph checks that every read is present
    before it runs the experiment.
    """

    @property
    def name(self) -> str: ...

    @property
    def reads(self) -> tuple[str, ...]: ...

    @property
    def writes(self) -> tuple[str, ...]: ...

    def shots(self, cheap: bool) -> int:
        """Shots one run costs (``cheap``: the check_data form)."""
        ...

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        """Measure ``target`` on ``device`` starting from ``params``; never raises for bad
        data (that is ``status="bad_data"``), only for bad input."""
        ...
