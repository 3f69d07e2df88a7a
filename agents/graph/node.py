"""A node of the calibration graph: one experiment on one target, with Kelly's four operations.

Kelly et al. (2018, "Physical qubit calibration on a directed acyclic graph") give every
calibration four operations, and a ``Node`` has them:

- ``check_state``: is what this node calibrated still good, without measuring? Its
  parameters are present in the store, its last calibration was in spec, it is not older
  than ``timeout_s`` of device time, and no dependency was recalibrated after it (its
  inputs changed).
- ``check_data``: the experiment's cheap form; its status (in_spec / out_of_spec /
  bad_data) says whether the parameters still hold.
- ``calibrate``: the full experiment; its status is the verdict, and only an ``in_spec``
  result is accepted into the store.
- ``diagnose``: after a failed calibration or bad data, walk the dependencies depth first:
  ``check_data`` on each; one that is not in spec is diagnosed in turn (its own
  dependencies checked the same way) before it is recalibrated, and the walk goes on over
  the remaining dependencies, so every deepest out-of-spec ancestor (a root cause) is
  found, not only the first. Each node is checked at most once per diagnosis. Then this
  node is retried (``diagnose`` returns the root causes with their chains and which
  recalibrations were accepted).

A node only runs experiments and judges their results; which node runs when, the clock,
the journal and the store writes belong to the scheduler (``scheduler.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .experiment import REPETITION_TIME_S, Experiment, ExperimentResult, target_name

Target = str | tuple[str, ...]


def node_name(experiment: str, target: Target) -> str:
    """``"<experiment>:<target>"``, e.g. ``"rabi:q3"`` or ``"cz:q2-q3"``."""
    return f"{experiment}:{target_name(target)}"


@dataclass(frozen=True)
class Calibration:
    """What ``check_state`` needs of a node's last accepted calibration (from the store).

    Attributes:
        verdict: the calibration's status (only ``in_spec`` ones are accepted).
        clock_s: the run's device clock when it was accepted.
    """

    verdict: str
    clock_s: float


@dataclass(frozen=True)
class StateCheck:
    """The outcome of ``check_state``: ``ok`` and, when not, the reason in one line."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Node:
    """One experiment on one target.

    Attributes:
        experiment: what it runs (``agents.graph.experiment.Experiment``).
        target: a qubit ``"q3"`` or a pair ``("q2", "q3")``.
        template: the name of the graph template it came from; the node's name is
            ``"<template>:<target>"`` (the experiment's own name when no template is given).
        dependencies: names of the nodes it depends on.
        timeout_s: device seconds after its calibration at which ``check_state`` fails
            (``inf``: never).
        retries: further calibrate attempts after a failed one (each after a diagnose), >= 0.
        time_limit_s: most device time one calibrate attempt may take; an attempt that
            takes longer counts as failed (``inf``: no limit).
    """

    experiment: Experiment
    target: Target
    template: str = ""
    dependencies: tuple[str, ...] = ()
    timeout_s: float = math.inf
    retries: int = 1
    time_limit_s: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.experiment, Experiment):
            raise TypeError(f"Node.experiment is {type(self.experiment).__name__}: allowed an Experiment "
                            "(name, reads, writes, shots, run)")
        t = self.target
        ok = (isinstance(t, str) and t) or (isinstance(t, tuple) and len(t) >= 2
                                           and all(isinstance(q, str) and q for q in t))
        if not ok:
            raise ValueError(f"Node.target={t!r}: allowed a qubit name 'q3' or a tuple of two or more")
        if not (isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ValueError(f"Node.timeout_s={self.timeout_s!r} ({self.name}): allowed a value > 0 s")
        if not (isinstance(self.time_limit_s, int | float) and self.time_limit_s > 0):
            raise ValueError(f"Node.time_limit_s={self.time_limit_s!r} ({self.name}): allowed a value > 0 s")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"Node.retries={self.retries!r} ({self.name}): allowed an integer >= 0")
        object.__setattr__(self, "dependencies", tuple(self.dependencies))

    # -- what it declares --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return node_name(self.template or self.experiment.name, self.target)

    @property
    def prefix(self) -> str:
        return target_name(self.target)

    @property
    def qubits(self) -> tuple[str, ...]:
        """The qubits it occupies while it runs."""
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    @property
    def couplers(self) -> tuple[str, ...]:
        """The couplers (pairs, ``"q2-q3"``) it occupies: its own pair for a pair target."""
        return () if isinstance(self.target, str) else (self.prefix,)

    def _names(self) -> dict[str, str]:
        # {t} is the target's prefix; a pair's experiments also read its qubits' own
        # parameters, {a} and {b} (a two-qubit gate is built from both qubits' pulses).
        out = {"t": self.prefix}
        if not isinstance(self.target, str):
            out.update(a=self.target[0], b=self.target[1])
        return out

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(r.format(**self._names()) for r in self.experiment.reads)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(w.format(**self._names()) for w in self.experiment.writes)

    def shot_cost(self, cheap: bool = False) -> int:
        """Shots one run of the experiment costs (``cheap``: the check_data form)."""
        return int(self.experiment.shots(cheap))

    def device_time_cost_s(self, cheap: bool = False, rep_time_s: float = REPETITION_TIME_S) -> float:
        """Device time one run costs at ``rep_time_s`` per shot, without the sequences' own
        durations (the experiment reports those in its result): a lower bound for planning."""
        return self.shot_cost(cheap) * rep_time_s

    # -- the four operations -----------------------------------------------------------------

    def missing_reads(self, params: Mapping[str, float]) -> tuple[str, ...]:
        return tuple(r for r in self.reads if r not in params)

    def check_state(self, params: Mapping[str, float], last: Calibration | None, now_s: float,
                    dependency_clocks: Mapping[str, float] | None = None) -> StateCheck:
        """No measurement: parameters present, last calibration in spec, not timed out, no
        dependency recalibrated since (``dependency_clocks``: each dependency's last
        accepted calibration clock)."""
        missing = [w for w in (*self.reads, *self.writes) if w not in params]
        if missing:
            return StateCheck(False, f"parameters missing: {', '.join(missing)}")
        if last is None:
            return StateCheck(False, "never calibrated")
        if last.verdict != "in_spec":
            return StateCheck(False, f"last calibration {last.verdict}")
        age = now_s - last.clock_s
        if age > self.timeout_s:
            return StateCheck(False, f"timed out: calibrated {age:.3g} s of device time ago > timeout {self.timeout_s:.3g} s")
        newer = sorted(d for d, c in (dependency_clocks or {}).items() if c > last.clock_s)
        if newer:
            return StateCheck(False, f"dependencies recalibrated since: {', '.join(newer)}")
        return StateCheck(True)

    def _run(self, device: Any, params: Mapping[str, float], rng: np.random.Generator,
             cheap: bool) -> ExperimentResult:
        missing = self.missing_reads(params)
        if missing:
            # Not an experiment's verdict but the graph's: it never ran, so it spent nothing.
            return ExperimentResult(self.experiment.name, self.target, "bad_data",
                                    message=f"{self.name}: parameters missing: {', '.join(missing)}")
        return self.experiment.run(device, self.target, params, rng, cheap=cheap)

    def check_data(self, device: Any, params: Mapping[str, float], rng: np.random.Generator) -> ExperimentResult:
        """The experiment's cheap form: does what was calibrated still hold?"""
        return self._run(device, params, rng, cheap=True)

    def calibrate(self, device: Any, params: Mapping[str, float], rng: np.random.Generator) -> ExperimentResult:
        """The full experiment; the result's status is the verdict. An attempt longer than
        ``time_limit_s`` of device time is turned into ``bad_data`` (timed out)."""
        r = self._run(device, params, rng, cheap=False)
        if r.device_time_s > self.time_limit_s:
            return ExperimentResult(r.experiment, r.target, "bad_data", r.values, r.quality, r.shots,
                                    r.device_time_s, r.data,
                                    f"timed out: {r.device_time_s:.3g} s of device time > time_limit_s "
                                    f"{self.time_limit_s:.3g} s ({r.message})")
        return r

    def diagnose(self, dependencies: Sequence[Node], check: Callable[[Node], ExperimentResult],
                 recalibrate: Callable[[Node], bool], *,
                 dependencies_of: Callable[[Node], Sequence[Node]] | None = None,
                 visited: set[str] | None = None) -> Diagnosis:
        """Kelly's diagnose over ``dependencies`` (this node's, in graph order).

        Each dependency's data is checked (``check``: its check_data). One that is not in
        spec is, with ``dependencies_of``, diagnosed in turn over its own dependencies
        before it is handed to ``recalibrate`` (which says whether its calibration was
        accepted); without ``dependencies_of``, ``recalibrate`` is trusted to do that
        descent itself. The walk continues over the remaining dependencies either way.

        A root cause is a failing dependency none of whose own dependencies failed their
        check (the deepest out-of-spec ancestor), or one whose own recalibration failed
        although everything below it was put right. ``visited`` is shared by the whole
        walk (one per diagnosis): a node reached twice in a DAG is checked once.
        """
        seen: set[str] = set() if visited is None else visited
        seen.add(self.name)
        checked: list[str] = []
        failing: list[tuple[str, str]] = []
        not_recalibrated: list[str] = []
        roots: list[RootCause] = []
        for dep in dependencies:
            if dep.name in seen:
                continue
            seen.add(dep.name)
            r = check(dep)
            checked.append(dep.name)
            if r.status == "in_spec":
                continue
            failing.append((dep.name, r.status))
            below: tuple[RootCause, ...] = ()
            if dependencies_of is not None:
                sub = dep.diagnose(dependencies_of(dep), check, recalibrate, dependencies_of=dependencies_of,
                                   visited=seen)
                checked.extend(sub.checked)
                below = sub.roots
            ok = recalibrate(dep)
            if not ok:
                not_recalibrated.append(dep.name)
            roots.extend(RootCause((dep.name, *c.chain), c.status, c.recalibrated, c.message, c.symptom)
                         for c in below)
            if not below or (not ok and all(c.recalibrated for c in below)):
                roots.append(RootCause((dep.name,), r.status, ok, r.message, str((r.data or {}).get("symptom", ""))))
        first = failing[0] if failing else (None, "")
        return Diagnosis(tuple(checked), first[0], not not_recalibrated if failing else False, first[1],
                         tuple(roots), tuple(not_recalibrated))


@dataclass(frozen=True)
class RootCause:
    """One deepest out-of-spec ancestor that a diagnosis found.

    Attributes:
        chain: node names from the diagnosed node's dependency down to the root (the last).
        status: the root's check_data status.
        recalibrated: whether the root's recalibration was accepted.
        message: the root's check_data message.
        symptom: its ``data["symptom"]`` (``experiments.common``), or "".
    """

    chain: tuple[str, ...]
    status: str
    recalibrated: bool
    message: str = ""
    symptom: str = ""

    @property
    def node(self) -> str:
        return self.chain[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"chain": list(self.chain), "status": self.status, "recalibrated": self.recalibrated,
                "message": self.message, "symptom": self.symptom}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RootCause:
        return cls(tuple(str(n) for n in d["chain"]), str(d["status"]), bool(d["recalibrated"]),
                   str(d.get("message", "")), str(d.get("symptom", "")))


@dataclass(frozen=True)
class Diagnosis:
    """What ``diagnose`` found.

    Attributes:
        checked: every node whose data it checked, in the order of the walk.
        failing: the first direct dependency whose check was not in spec (None: all were).
        recalibrated: whether every failing direct dependency's recalibration was accepted
            (False when none failed).
        status: the first failing dependency's check status.
        roots: every root cause found, with its chain.
        not_recalibrated: the failing direct dependencies whose recalibration failed.
    """

    checked: tuple[str, ...] = ()
    failing: str | None = None
    recalibrated: bool = False
    status: str = ""
    roots: tuple[RootCause, ...] = ()
    not_recalibrated: tuple[str, ...] = ()


__all__ = ["Calibration", "Diagnosis", "Node", "RootCause", "StateCheck", "Target", "node_name"]
