"""Fault isolation: from a run's failed nodes to the faults a person should go and look at.

A failed node says which calibration did not converge; a lab engineer wants to know which
qubit or coupler is broken and how (a dead qubit, a TLS, a coupler stuck off). This module
turns a finished run into ``Finding``\\ s, one per faulty target:

1. **Root cause.** A failed node's own experiments may have passed while a dependency's
   recalibration during its ``diagnose`` failed; the journal's ``op`` records (every
   experiment a node ran, of itself or of a dependency) give the deepest failing one: the
   last not-in-spec calibrate of another node that the failed node's work ran, or the node
   itself.
2. **What was seen.** The root's last result (or, when it has none, the failed node's
   own) carries a ``data["symptom"]`` from the node library (``experiments.common``): ``no_response`` (no spectroscopy line, no Rabi
   oscillation), ``coherence`` (T1 or T2* collapsed), ``distorted`` (a response the textbook
   model does not fit, e.g. a split line), ``no_coupling`` (no static ZZ on a coupler).
3. **The fault named.** A qubit whose root failure is ``no_response`` is *dead*; one whose
   root is ``coherence`` or ``distorted`` (it responds, but decays or splits) is
   *TLS-like*; a coupler with ``no_coupling`` is *off*. Anything else is reported as an
   *unclassified* failure with its message: never dropped.

Each finding lists the nodes its failure blocked. ``isolate`` reads only what the run
measured (outcomes, journal results), never the simulation's truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .experiment import ExperimentResult
from .graph import CalibrationGraph
from .scheduler import FAILED, RunReport

DEAD, TLS_LIKE, COUPLER_OFF, UNCLASSIFIED = "dead", "tls_like", "coupler_off", "unclassified"
FAULT_NAMES = {DEAD: "dead qubit", TLS_LIKE: "TLS-like", COUPLER_OFF: "coupler off", UNCLASSIFIED: "unclassified"}
_SEEN = {
    "no_response": "no response",
    "coherence": "coherence collapse (T1 / T2*)",
    "distorted": "distorted response (split or non-textbook line)",
    "no_coupling": "no ZZ",
}


@dataclass(frozen=True)
class Finding:
    """One faulty qubit or coupler.

    Attributes:
        target: ``"q5"`` or ``"q1-q2"``.
        kind: ``dead``, ``tls_like``, ``coupler_off`` or ``unclassified``.
        node: the root-cause node (the deepest failing calibration).
        failed: the failed node whose run found it (the same as ``node`` unless a diagnose
            walked down to a dependency).
        symptom: what the root's data showed (``experiments.common`` symptoms, or "").
        evidence: the root's result message.
        blocked: the nodes its failure blocked.
    """

    target: str
    kind: str
    node: str
    failed: str
    symptom: str
    evidence: str
    blocked: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        """``"q5: no response in rabi:q5 — dead qubit (blocks 8 nodes)"``."""
        seen = _SEEN.get(self.symptom, "failed")
        via = "" if self.node == self.failed else f", found by {self.failed}"
        return (f"{self.target}: {seen} in {self.node}{via} — {FAULT_NAMES[self.kind]}"
                f" ({len(self.blocked)} nodes blocked): {self.evidence}")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "fault": FAULT_NAMES[self.kind], "node": self.node,
                "failed": self.failed, "symptom": self.symptom, "evidence": self.evidence,
                "blocked": list(self.blocked), "line": self.line}


def _kind(target: str, symptom: str) -> str:
    pair = "-" in target
    if pair:
        return COUPLER_OFF if symptom == "no_coupling" else UNCLASSIFIED
    if symptom == "no_response":
        return DEAD
    if symptom in ("coherence", "distorted"):
        return TLS_LIKE
    return UNCLASSIFIED


def _symptom(r: ExperimentResult | None) -> str:
    return str((r.data or {}).get("symptom", "")) if r is not None else ""


def root_cause(failed: str, ops: Sequence[Mapping[str, Any]]) -> str:
    """The deepest failing node of ``failed``'s work: the last not-in-spec ``calibrate`` of
    another node among the journal ``ops`` run for it, else ``failed`` itself."""
    root = failed
    for rec in ops:
        if rec.get("node") != failed or rec.get("op") != "calibrate" or rec.get("of") == failed:
            continue
        if (rec.get("result") or {}).get("status") != "in_spec":
            root = str(rec.get("of"))
    return root


def isolate(report: RunReport, graph: CalibrationGraph, results: Mapping[str, ExperimentResult],
            ops: Sequence[Mapping[str, Any]] = ()) -> list[Finding]:
    """One ``Finding`` per target with a failed node (module docstring), in graph order.

    Args:
        report: the run's outcomes.
        graph: its nodes (for targets).
        results: each node's last ``calibrate`` result (``calibrate_report._last_results``).
        ops: the journal's ``op`` records (for the root cause of a diagnosed failure).
    """
    blocked_by: dict[str, list[str]] = {}
    for name, root in report.blocked.items():
        blocked_by.setdefault(str(root), []).append(name)
    findings: dict[str, Finding] = {}
    for name in graph.names:
        o = report.outcomes.get(name)
        if o is None or o.outcome != FAILED:
            continue
        root = root_cause(name, ops)
        r = results.get(root) or results.get(name)
        symptom = _symptom(r)
        evidence = r.message if r is not None and r.message else o.message
        own = results.get(name)
        if not symptom and root != name and _symptom(own):
            # The dependency's recalibration was refused without a symptom (a value that
            # moved again); what the failed node itself saw names the fault.
            symptom = _symptom(own)
            evidence = f"{evidence}; {name}: {own.message if own is not None else o.message}"
        target = graph[root].prefix if root in graph else graph[name].prefix
        f = Finding(target, _kind(target, symptom), root, name, symptom, evidence, tuple(blocked_by.get(name, ())))
        prev = findings.get(target)
        # A qubit's first failure (in graph order) is its finding; a later failed node of
        # the same qubit adds what it blocked.
        if prev is None:
            findings[target] = f
        else:
            findings[target] = Finding(prev.target, prev.kind, prev.node, prev.failed, prev.symptom, prev.evidence,
                                       prev.blocked + f.blocked)
    return list(findings.values())


__all__ = ["COUPLER_OFF", "DEAD", "FAULT_NAMES", "TLS_LIKE", "UNCLASSIFIED", "Finding", "isolate",
           "root_cause"]
