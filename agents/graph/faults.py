"""Fault isolation: from a run's failed nodes to the faults a person should go and look at.

A failed node says which calibration did not converge; a lab engineer wants to know which
qubit or coupler is broken and how (a dead qubit, a TLS, a coupler stuck off). This module
turns a finished run into ``Finding``\\ s, one per faulty target:

1. **Root causes.** A failed node's ``diagnose`` walks its dependencies depth first
   (``Node.diagnose``) and keeps every root cause it found on the node's outcome
   (``NodeOutcome.roots``: the deepest out-of-spec ancestors, each with its chain). Every
   root whose recalibration failed is a finding, on its own target (a coupler's node can
   name a qubit). When every root was put right and the node still failed, the node itself
   is the root. (An outcome without recorded roots, from an older journal, falls back to
   the journal's ``op`` records: the last not-in-spec calibrate of another node that the
   failed node's work ran.)
2. **What was seen.** The root's last result (or, when it has none, its check or the
   failed node's own result) carries a ``data["symptom"]`` from the node library
   (``experiments.common``): ``no_response`` (no spectroscopy line, no Rabi oscillation),
   ``coherence`` (T1 or T2* collapsed), ``distorted`` (a response the textbook model does
   not fit, e.g. a split line), ``t1_drop`` (T1 significantly below the T1 this run
   measured before), ``no_coupling`` (no static ZZ on a coupler), ``undecided`` (too few
   shots to decide, after the retry with the larger plan).
3. **The fault named.** A qubit whose root is ``no_response`` is *dead*; one whose root is
   ``coherence``, ``distorted`` or ``t1_drop`` (it responds, but decays, splits or its T1
   fluctuates) is *TLS-like*; so is a node that still failed after its diagnosis found and
   recalibrated such a symptom on its qubit. A coupler with ``no_coupling`` is *off*.
   Anything else is *undetermined*, with what was seen (the root's message): never
   dropped, never a fixed label.

Each finding lists the nodes its failure blocked and the chain from the failed node to its
root. ``isolate`` reads only what the run measured (outcomes, journal results), never the
simulation's truth or the planted faults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .experiment import ExperimentResult
from .graph import CalibrationGraph
from .node import RootCause
from .scheduler import FAILED, NodeOutcome, RunReport

DEAD, TLS_LIKE, COUPLER_OFF, UNDETERMINED = "dead", "tls_like", "coupler_off", "undetermined"
FAULT_NAMES = {DEAD: "dead qubit", TLS_LIKE: "TLS-like", COUPLER_OFF: "coupler off", UNDETERMINED: "undetermined"}
_SEEN = {
    "no_response": "no response",
    "coherence": "coherence collapse (T1 / T2*)",
    "distorted": "distorted response (split or non-textbook line)",
    "t1_drop": "T1 drop",
    "no_coupling": "no ZZ",
    "undecided": "too few shots to decide",
}
_TLS_SYMPTOMS = ("coherence", "distorted", "t1_drop")


@dataclass(frozen=True)
class Finding:
    """One faulty qubit or coupler.

    Attributes:
        target: ``"q5"`` or ``"q1-q2"``.
        kind: ``dead``, ``tls_like``, ``coupler_off`` or ``undetermined``.
        node: the root-cause node (the deepest failing calibration).
        failed: the failed node whose run found it (the same as ``node`` unless a diagnose
            walked down to a dependency).
        symptom: what the root's data showed (``experiments.common`` symptoms, or "").
        evidence: the root's result message.
        blocked: the nodes its failure blocked.
        chain: node names from ``failed`` down to ``node``.
    """

    target: str
    kind: str
    node: str
    failed: str
    symptom: str
    evidence: str
    blocked: tuple[str, ...] = ()
    chain: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        """``"q5: no response in rabi:q5 — dead qubit (8 nodes blocked): <evidence>"``; an
        undetermined one says what was seen in place of a name:
        ``"q1: failed in rb1q:q1 — undetermined: <evidence> (0 nodes blocked)"``."""
        seen = _SEEN.get(self.symptom, "failed")
        via = ""
        if self.node != self.failed:
            via = f", found by {' → '.join(self.chain)}" if len(self.chain) > 2 else f", found by {self.failed}"
        if self.kind == UNDETERMINED:
            return (f"{self.target}: {seen} in {self.node}{via} — undetermined: {self.evidence}"
                    f" ({len(self.blocked)} nodes blocked)")
        return (f"{self.target}: {seen} in {self.node}{via} — {FAULT_NAMES[self.kind]}"
                f" ({len(self.blocked)} nodes blocked): {self.evidence}")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "fault": FAULT_NAMES[self.kind], "node": self.node,
                "failed": self.failed, "symptom": self.symptom, "evidence": self.evidence,
                "blocked": list(self.blocked), "chain": list(self.chain), "line": self.line}


def _kind(target: str, symptom: str) -> str:
    pair = "-" in target
    if pair:
        return COUPLER_OFF if symptom == "no_coupling" else UNDETERMINED
    if symptom == "no_response":
        return DEAD
    if symptom in _TLS_SYMPTOMS:
        return TLS_LIKE
    return UNDETERMINED


def _symptom(r: ExperimentResult | None) -> str:
    return str((r.data or {}).get("symptom", "")) if r is not None else ""


def root_cause(failed: str, ops: Sequence[Mapping[str, Any]]) -> str:
    """The deepest failing node of ``failed``'s work from the journal ``ops`` alone: the
    last not-in-spec ``calibrate`` of another node run for it, else ``failed`` itself (for
    outcomes that carry no ``roots``)."""
    root = failed
    for rec in ops:
        if rec.get("node") != failed or rec.get("op") != "calibrate" or rec.get("of") == failed:
            continue
        if (rec.get("result") or {}).get("status") != "in_spec":
            root = str(rec.get("of"))
    return root


def _roots(name: str, o: NodeOutcome, ops: Sequence[Mapping[str, Any]]) -> list[tuple[str, RootCause | None]]:
    """The failed node's roots that were not put right, in the order found (each node once);
    ``[(name, None)]`` when there is none."""
    if o.roots is None:
        root = root_cause(name, ops)
        return [(root, None if root == name else RootCause((root,), "", False))]
    out: dict[str, RootCause] = {}
    for c in o.roots:
        if not c.recalibrated and c.node not in out:
            out[c.node] = c
    return list(out.items()) or [(name, None)]


def isolate(report: RunReport, graph: CalibrationGraph, results: Mapping[str, ExperimentResult],
            ops: Sequence[Mapping[str, Any]] = ()) -> list[Finding]:
    """One ``Finding`` per target with a failed node or a failing root cause (module
    docstring), in graph order.

    Args:
        report: the run's outcomes (with each node's root causes).
        graph: its nodes (for targets).
        results: each node's last ``calibrate`` result (``calibrate_report._last_results``).
        ops: the journal's ``op`` records (for outcomes that carry no root causes).
    """
    blocked_by: dict[str, list[str]] = {}
    for name, root in report.blocked.items():
        blocked_by.setdefault(str(root), []).append(name)
    findings: dict[str, Finding] = {}
    for name in graph.names:
        o = report.outcomes.get(name)
        if o is None or o.outcome != FAILED:
            continue
        own = results.get(name)
        for i, (root, cause) in enumerate(_roots(name, o, ops)):
            r = results.get(root) or (own if root == name else None)
            symptom = _symptom(r) or (cause.symptom if cause is not None else "")
            evidence = (r.message if r is not None and r.message
                        else cause.message if cause is not None and cause.message else o.message)
            if not symptom and root != name and _symptom(own):
                # The dependency's recalibration was refused without a symptom (a value that
                # moved again); what the failed node itself saw names the fault.
                symptom = _symptom(own)
                evidence = f"{evidence}; {name}: {own.message if own is not None else o.message}"
            if root == name and symptom not in ("no_response", *_TLS_SYMPTOMS):
                # Every root the diagnosis found was put right and the node still failed: a
                # coherence symptom it found on the node's own target is what names it.
                prefix = graph[name].prefix
                seen = [c for c in o.roots or () if c.symptom in _TLS_SYMPTOMS and c.node in graph
                        and graph[c.node].prefix == prefix]
                if seen:
                    symptom = seen[0].symptom
                    evidence = f"{evidence}; diagnose found {seen[0].node}: {seen[0].message} (recalibrated)"
                elif o.roots:
                    # What the diagnosis put right before the node failed anyway (e.g. the
                    # T1 of a pair's qubits): part of what was seen.
                    fixed = [c for c in o.roots if c.recalibrated]
                    if fixed:
                        evidence = (f"{evidence}; diagnose recalibrated "
                                    + "; ".join(f"{c.node}: {c.message}" for c in fixed))
            target = graph[root].prefix if root in graph else graph[name].prefix
            chain = (name, *cause.chain) if cause is not None else (name,)
            f = Finding(target, _kind(target, symptom), root, name, symptom, evidence,
                        tuple(blocked_by.get(name, ())) if i == 0 else (), chain)
            prev = findings.get(target)
            # A target's first failure (in graph order) is its finding; a later failed node
            # of the same target adds what it blocked.
            if prev is None:
                findings[target] = f
            else:
                findings[target] = Finding(prev.target, prev.kind, prev.node, prev.failed, prev.symptom,
                                           prev.evidence, prev.blocked + f.blocked, prev.chain)
    return list(findings.values())


__all__ = ["COUPLER_OFF", "DEAD", "FAULT_NAMES", "TLS_LIKE", "UNDETERMINED", "Finding", "isolate",
           "root_cause"]
