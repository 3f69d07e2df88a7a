"""The evaluation's numbers as tables: per-group summaries, pass/fail verdicts, and the
``results.csv`` / ``results.md`` files (``results.csv`` reads back unchanged, so plots can
be redrawn without running the evaluation again)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .settings import TASKS, EvaluationSettings

CSV_FIELDS: tuple[str, ...] = (
    "task", "method", "budget", "device", "infidelity", "coherence_limit", "ratio", "leakage",
    "shots_used", "device_shots", "wall_time_s", "gate_duration_s", "clipped", "limit_failure",
    "status", "reason", "grape_infidelity",
)
# Written when the evaluation verified its baselines (``EvaluationSettings.verify``);
# rows without a verdict (agents, other tasks) leave them empty.
VERDICT_FIELDS: tuple[str, ...] = (
    "verdict", "verdict_reason", "verdict_estimate", "verdict_low", "verdict_high", "verification_shots",
    "false_calibrated", "covered",
)
# Text columns of results.csv (the others are numbers). ``status``/``reason``/``grape_infidelity``
# are set on the per-device shaping rows of the randomised sets and empty elsewhere.
_TEXT_FIELDS = ("task", "method", "status", "reason")
_OPTIONAL_FIELDS = ("status", "reason", "grape_infidelity")
_SETS = ("_heldout", "_realistic")


def _set_suffix(method: str) -> str:
    return next((x for x in _SETS if method.endswith(x)), "")


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, method, budget): n, median and p90 of infidelity and ratio, median
    leakage, median and max shots, median wall time per device, the longest gate duration
    a device ended at, and how many devices failed on a limit (``limit_failure``)."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["task"]), str(r["method"]), int(r["budget"])), []).append(r)
    out = []
    for (task, method, budget), rs in sorted(groups.items(), key=lambda kv: (TASKS.index(kv[0][0]), kv[0][1], kv[0][2])):
        col = {k: np.array([float(r[k]) for r in rs]) for k in ("infidelity", "ratio", "leakage", "shots_used",
                                                                "device_shots", "wall_time_s")}
        out.append({
            "task": task, "method": method, "budget": budget, "n": len(rs),
            "infidelity_median": float(np.median(col["infidelity"])),
            "infidelity_p90": float(np.percentile(col["infidelity"], 90)),
            "ratio_median": float(np.median(col["ratio"])),
            "ratio_p90": float(np.percentile(col["ratio"], 90)),
            "leakage_median": float(np.median(col["leakage"])) if np.any(np.isfinite(col["leakage"])) else math.nan,
            "shots_median": float(np.median(col["shots_used"])),
            "shots_max": int(np.max(col["shots_used"])),
            "shots_exact": bool(np.all((col["device_shots"] < 0) | (col["device_shots"] == col["shots_used"]))),
            "wall_time_s_median": float(np.median(col["wall_time_s"])),
            "gate_duration_s_max": float(np.nanmax([float(r.get("gate_duration_s", math.nan)) for r in rs]))
            if any(math.isfinite(float(r.get("gate_duration_s", math.nan))) for r in rs) else math.nan,
            "limit_failed": sum(1 for r in rs if r.get("limit_failure")),
            # Verified rows only (None: the group was not verified).
            "calibrated": sum(1 for r in rs if r.get("verdict") == "calibrated")
            if any(r.get("verdict") for r in rs) else None,
            "false_calibrated": sum(1 for r in rs if r.get("false_calibrated") is True)
            if any(r.get("verdict") for r in rs) else None,
        })
    return out


def verdicts(summary: Sequence[Mapping[str, Any]], settings: EvaluationSettings,
             rows: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Pass/fail of every agent against ``settings.targets`` (baselines listed for reference).

    With ``rows``, a randomised shaping set passes when at least ``shaping_fraction`` of its
    devices are ``calibrated``; without them, when its median reaches the target."""
    tg = settings.targets
    out: list[dict[str, Any]] = []
    by = {(s["task"], s["method"], s["budget"]): s for s in summary}
    baselines = {b.name for b in settings.baselines}
    cal_methods = sorted({s["method"] for s in summary if s["task"] == "calibration"})
    for m in cal_methods:
        cands = [s for s in summary if s["task"] == "calibration" and s["method"] == m
                 and s["budget"] <= tg.calibration_budget]
        ok = any(s["ratio_median"] <= tg.calibration_median_ratio and s["ratio_p90"] <= tg.calibration_p90_ratio
                 for s in cands)
        best = min(cands, key=lambda s: s["ratio_median"]) if cands else None
        detail = (f"no run at <= {tg.calibration_budget} shots" if best is None else
                  f"median {best['ratio_median']:.3f}×, p90 {best['ratio_p90']:.3f}× at {best['budget']} shots")
        out.append({"task": "calibration", "method": m, "agent": m not in baselines,
                    "target": f"median <= {tg.calibration_median_ratio}× and p90 <= {tg.calibration_p90_ratio}× "
                              f"the coherence limit at <= {tg.calibration_budget} shots",
                    "passed": ok, "detail": detail})
    for s in summary:
        suffix = _set_suffix(s["method"])
        if s["task"] != "pulse_shaping" or s["method"] == "grape" + suffix:
            continue
        # Randomised-set rows (median over the devices) compare with GRAPE on the same devices.
        grape_row = by.get(("pulse_shaping", "grape" + suffix, 0))
        gap = s["infidelity_median"] / grape_row["infidelity_median"] if grape_row else math.nan
        target = f"1 − F <= {tg.shaping_infidelity:g}"
        passed = s["infidelity_median"] <= tg.shaping_infidelity
        detail = f"1 − F = {s['infidelity_median']:.3g}, {gap:.3g}× the GRAPE optimum"
        mine = [r for r in rows if r["task"] == "pulse_shaping" and r["method"] == s["method"] and r.get("status")]
        if suffix and mine:
            n_ok = sum(r["status"] == "calibrated" for r in mine)
            physical = sum("physical limit" in str(r["reason"]) for r in mine)
            target = f">= {tg.shaping_fraction:.0%} of devices 1 − F <= {tg.shaping_infidelity:g}"
            passed = n_ok >= tg.shaping_fraction * len(mine)
            detail = (f"{n_ok}/{len(mine)} calibrated, {len(mine) - n_ok} failed ({physical} below the physical "
                      f"limit: GRAPE above the target too); median {detail}")
        out.append({"task": "pulse_shaping", "method": s["method"],
                    "agent": s["method"] != "drag_calibrated" + suffix,
                    "target": target, "passed": passed, "detail": detail})
    for s in summary:
        suffix = "_realistic" if s["method"].endswith("_realistic") else ""
        scheduled = settings.scheduled_method + suffix
        hourly = [h for h in summary if h["task"] == "drift_tracking" and h["method"] == scheduled]
        if s["task"] != "drift_tracking" or s["method"] in (scheduled, "no_recalibration" + suffix) or not hourly:
            continue
        h = hourly[0]
        factor = h["infidelity_median"] / s["infidelity_median"] if s["infidelity_median"] > 0 else math.inf
        ok = factor >= tg.drift_improvement and s["shots_median"] <= h["shots_median"]
        out.append({"task": "drift_tracking", "method": s["method"], "agent": True,
                    "target": f">= {tg.drift_improvement}× lower time-averaged error than scheduled "
                              f"{settings.drift_recalibration} recalibration at <= its shots",
                    "passed": ok, "detail": f"{factor:.2f}× lower error, {s['shots_median']:.0f} vs "
                                            f"{h['shots_median']:.0f} shots"})
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.4g}"
    return str(x)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        fields = CSV_FIELDS + (VERDICT_FIELDS if any("verdict" in r for r in rows) else ())
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    return path


# The generator behind each calibration device set (``EvaluationSettings.device_set``).
_DEVICE_SET_FUNCTIONS = {"default": "held_out_devices", "realistic": "realistic_held_out_devices",
                         "stress": "stress_devices"}


def write_markdown(path: Path, summary: Sequence[Mapping[str, Any]], verdict: Sequence[Mapping[str, Any]],
                   settings: EvaluationSettings, rows: Sequence[Mapping[str, Any]] = ()) -> Path:
    lines = [
        "# pulsecal evaluation",
        "",
        f"Held-out calibration devices: {settings.n_devices} (`{_DEVICE_SET_FUNCTIONS[settings.device_set]}(n, "
        f"seed={settings.seed})`), "
        f"start offsets up to ±{settings.miscalibration[0]:.0%} amplitude, ±{settings.miscalibration[1]:.0%} β, "
        f"±{settings.miscalibration[2] / 1e3:g} kHz; gate {settings.gate_duration_s * 1e9:g} ns. "
        "Infidelity = 1 − F (open system, virtual Z); ratio = infidelity / coherence limit. "
        "Drift rows: time-averaged error (gate + frame error of a "
        f"{settings.circuit_time_s * 1e6:g} µs circuit) over {settings.drift_hours:g} h.",
        "",
        "## Summary",
        "",
        "| task | method | budget | n | 1−F median | 1−F p90 | ratio median | ratio p90 | leakage median "
        "| shots median | shots max | shots exact | wall s/device | longest gate ns | limit failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append("| " + " | ".join(_fmt(s[k]) for k in (
            "task", "method", "budget", "n", "infidelity_median", "infidelity_p90", "ratio_median", "ratio_p90",
            "leakage_median", "shots_median", "shots_max", "shots_exact", "wall_time_s_median"))
            + f" | {_fmt(s['gate_duration_s_max'] * 1e9)} | {s['limit_failed']} |")
    lines += ["", "## Targets", "", "| task | method | agent | target | passed | detail |",
              "|---|---|:-:|---|:-:|---|"]
    for v in verdict:
        lines.append("| " + " | ".join(_fmt(v[k]) for k in ("task", "method", "agent", "target", "passed", "detail"))
                     + " |")
    failed = [r for r in rows if r["task"] == "pulse_shaping" and r.get("status") == "failed"]
    if failed:
        lines += ["", "## Pulse shaping: devices not calibrated", "",
                  "Per device of the randomised shaping sets: `failed: <reason>`, with the GRAPE model "
                  "optimum of that device beside it.", "",
                  "| method | device | 1−F | GRAPE 1−F | coherence limit | leakage | status |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in failed:
            lines.append("| " + " | ".join(_fmt(x) for x in (
                r["method"], r["device"], r["infidelity"], r["grape_infidelity"], r["coherence_limit"],
                r["leakage"], f"failed: {r['reason']}")) + " |")
    if not any(v["agent"] for v in verdict):
        lines += ["", "No agent was evaluated: the table lists the baselines against the agents' targets "
                      "for reference."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path



def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` written by :func:`write_csv`, numbers as numbers
    (re-plotting an evaluation without running it again)."""
    ints = {"budget", "device", "shots_used", "device_shots", "clipped"}
    strings = {"task", "method", "limit_failure"}
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # The shaping columns are optional: a results.csv without them still reads, and a row
    # that left them empty reads back without them, as it was written.
    missing = set(CSV_FIELDS) - set(rows[0]) - set(_OPTIONAL_FIELDS) if rows else set()
    if missing:
        raise ValueError(f"{path}: not a results.csv (missing columns {sorted(missing)})")
    return [{k: _cell(k, v, ints, strings) for k, v in r.items() if not (k in _OPTIONAL_FIELDS and v == "")}
            for r in rows]


def _cell(key: str, value: str, ints: set[str], strings: set[str]) -> Any:
    if key in strings or key in _TEXT_FIELDS:
        return str(value)
    if key in VERDICT_FIELDS:  # empty on rows that were not verified
        if value == "":
            return None
        if key in ("verdict", "verdict_reason"):
            return value
        if key in ("false_calibrated", "covered"):
            return value == "True"
    return int(float(value)) if key in ints else float(value)
