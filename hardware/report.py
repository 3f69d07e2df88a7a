"""The calibration report of a replay session: what the lab takes away.

``write_report`` writes ``report.json`` (machine-readable), ``report.md`` (for a person) and
two PNG plots into the session folder: the parameter trajectories (each calibrated
parameter against the env step, in physical units) and the measurements with the
estimated infidelity (GateCalibration-v0: each probe's excited population; later
versions: each probe family's signed signal, labelled as such: ``measurement_axis``). Everything in it comes from the session's
own measurements (the ``verdict`` of a session run with verification too: its checks ran
on the backend; docs/verification.md), except the optional ``truth`` blocks, which only a simulated backend can
provide (the true gate fidelity of the start and final parameters on its hidden device).
Rewriting a report is idempotent: a resumed session rewrites it from the same steps.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pulsecal.envs.calibration import PARAMETER_NAMES

if TYPE_CHECKING:
    from .replay import ReplaySettings, StepRecord

REPORT_FORMAT = "pulsecal.replay-report/1"
_UNITS = {"amplitude": "full scale", "beta_s": "s", "detuning_hz": "Hz", "phase": "rad"}


def write_report(folder: Path, *, steps: Sequence[StepRecord], settings: ReplaySettings,
                 policy: Mapping[str, Any], backend: Mapping[str, Any], probes: Sequence[str],
                 gate_duration_s: float, truth_start: Mapping[str, float] | None = None,
                 truth_final: Mapping[str, float] | None = None,
                 extra: Mapping[str, Any] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.json, report.md and (``plots``) parameters.png, populations.png.

    ``steps`` is empty for a session that stopped at its first measurement (``extra``'s
    ``stop`` says why): the report then has the start parameters and no estimate.
    Returns the report dict (as in report.json).
    """
    folder = Path(folder)
    params0: tuple[float, ...]
    params1: tuple[float, ...]
    if steps:
        first, last = steps[0], steps[-1]
        est0, est1 = first.infidelity_estimate, last.infidelity_estimate
        params0, params1 = first.params, last.params
        p1, shots = last.p1, int(last.shots_used)
    else:
        est0 = est1 = math.nan
        params0 = params1 = tuple(settings.initial_params)
        p1, shots = tuple(math.nan for _ in probes), 0
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "session_id": settings.session_id,
        "backend": dict(backend),
        "policy": dict(policy),
        "gate_duration_s": gate_duration_s,
        "probes": list(probes),
        "initial_params": dict(zip(PARAMETER_NAMES, params0, strict=True)),
        "final_params": dict(zip(PARAMETER_NAMES, params1, strict=True)),
        "estimated_infidelity_initial": est0,
        "estimated_infidelity_final": est1,
        "estimated_improvement": (est0 / est1) if est1 > 0 and math.isfinite(est0) else None,
        "last_populations": dict(zip(probes, p1, strict=True)),
        "env_steps": max(len(steps) - 1, 0),
        "shots_used": shots,
        "trajectory": [
            {"env_step": s.env_step, "action": None if s.action is None else list(s.action),
             "params": list(s.params), "p1": list(s.p1), "infidelity_estimate": s.infidelity_estimate,
             "reward": s.reward, "shots_used": s.shots_used} for s in steps],
    }
    if truth_start is not None or truth_final is not None:
        report["truth"] = {"initial": dict(truth_start or {}), "final": dict(truth_final or {})}
        f0 = (truth_start or {}).get("fidelity")
        f1 = (truth_final or {}).get("fidelity")
        if f0 is not None and f1 is not None and 1 - f1 > 0:
            report["truth"]["infidelity_ratio"] = (1 - f0) / (1 - f1)
    report.update(dict(extra or {}))
    _write_atomic(folder / "report.json", json.dumps(_clean(report), indent=2, sort_keys=True) + "\n")
    _write_atomic(folder / "report.md", _markdown(report))
    if plots and steps:
        report["plots"] = _plots(folder, steps, probes, settings.env_id)
    return report


def _clean(obj: Any) -> Any:
    """JSON without NaN/inf (strict readers reject them): non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _fmt(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, int | float) and x is not None else str(x)


def _markdown(r: Mapping[str, Any]) -> str:
    lines = [f"# Calibration report — session `{r['session_id']}`", "",
             f"- backend: `{r['backend'].get('name')}`",
             f"- policy: `{r['policy'].get('kind')}`",
             f"- gate duration: {_fmt(r['gate_duration_s'] * 1e9)} ns"
             + (f" (configured {_fmt(r['nominal_gate_duration_s'] * 1e9)} ns: lengthened, the π pulse "
                "did not fit the amplitude headroom)"
                if r.get("nominal_gate_duration_s") not in (None, r["gate_duration_s"]) else ""),
             f"- env steps: {r['env_steps']}, shots used: {r['shots_used']}"
             + (f" (ledger: {r['ledger_shots']}, orphaned re-runs: {r.get('orphan_shots', 0)})"
                if "ledger_shots" in r else ""),
             f"- resumed from the journal: {r.get('resumed', False)}",
             f"- outcome: {_outcome(r)}"]
    if r.get("limit_failure"):
        lines.append(f"- **failed: {r['limit_failure']}**")
    for name, e in (r.get("limits") or {}).items():
        lines.append(f"- limit: {name} brought back by the {e['bound']} {e['count']}×, last requested "
                     f"{_fmt(e['requested'])}, applied {_fmt(e['applied'])}")
    lines += ["",
             "| parameter | initial | final | unit |", "|---|---|---|---|"]
    for name in PARAMETER_NAMES:
        lines.append(f"| {name} | {_fmt(r['initial_params'][name])} | {_fmt(r['final_params'][name])} "
                     f"| {_UNITS[name]} |")
    if r["trajectory"]:
        lines += ["", f"Estimated infidelity (from the probes): {_fmt(r['estimated_infidelity_initial'])} → "
                  f"{_fmt(r['estimated_infidelity_final'])}"]
    else:
        lines += ["", "Estimated infidelity: not measured (the session stopped at its first measurement)"]
    if "truth" in r:
        t = r["truth"]
        lines.append(f"True fidelity (simulated backend): {_fmt(t['initial'].get('fidelity'))} → "
                     f"{_fmt(t['final'].get('fidelity'))}")
    lines += ["", "Last measurements (v0: excited population of each probe, ideal 0.5; later versions: the signed signal of each probe family, ideal 0):", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in r["last_populations"].items()]
    return "\n".join(lines) + "\n"


def _outcome(r: Mapping[str, Any]) -> str:
    stop = r.get("stop")
    if not stop:
        return str(r.get("outcome", "finished")) + _verdict_text(r)
    then = ("a rerun reports this stop; start a new session to continue" if stop.get("terminal")
            else "the journal keeps every finished job: rerun the same command to resume")
    return f"**stopped: {stop['reason']}** at env step {stop['env_step']} — {stop['detail']} ({then})"


def _verdict_text(r: Mapping[str, Any]) -> str:
    """`` — verdict calibrated: …`` / `` — **verdict failed: <reason>** …`` for a report
    with a verdict (a session run with verification), else nothing."""
    if "verdict" not in r:
        return ""
    v = r["verdict"]
    if v is None:
        return " — no verdict (the verification did not run to its end)"
    from pulsecal.envs.verification import Verdict

    text = Verdict.from_dict(v).describe()
    return f" — verdict {text}" if v.get("status") == "calibrated" else f" — **verdict {text}**"


def measurement_axis(env_id: str) -> tuple[str, float]:
    """The y label and the ideal value of a session's measurements: GateCalibration-v0
    reads each probe's excited population (``CalibrationState.measurement``: ideal 0.5),
    later versions sign-flipped twin signals (P+ − P−)/C per probe family (ideal 0)."""
    if env_id.endswith("-v0"):
        return "measured P(1) per probe\n(ideal 0.5, dashed)", 0.5
    return "signed signal (P+ − P−)/C per probe family\n(ideal 0, dashed)", 0.0


def _plots(folder: Path, steps: Sequence[StepRecord], probes: Sequence[str], env_id: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = np.array([s.env_step for s in steps])
    params = np.array([s.params for s in steps])
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for k, (ax, name) in enumerate(zip(axes.flat, PARAMETER_NAMES, strict=True)):
        ax.plot(t, params[:, k], "o-")
        ax.set_title(f"{name} [{_UNITS[name]}]")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("env step")
    fig.tight_layout()
    fig.savefig(folder / "parameters.png", dpi=100)
    plt.close(fig)

    p1 = np.array([s.p1 for s in steps])
    est = np.array([s.infidelity_estimate for s in steps])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, name in enumerate(probes):
        a1.plot(t, p1[:, k], "o-", label=name)
    label, ideal = measurement_axis(env_id)
    a1.axhline(ideal, color="k", lw=0.8, ls="--")
    a1.set_xlabel("env step")
    a1.set_ylabel(label)
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    a2.semilogy(t, np.maximum(est, 1e-9), "o-")
    a2.set_xlabel("env step")
    a2.set_ylabel("estimated infidelity")
    a2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(folder / "populations.png", dpi=100)
    plt.close(fig)
    return ["parameters.png", "populations.png"]
