"""How honest the verification verdict is, on held-out devices whose truth is known.

Each held-out device (``presets.held_out_devices``) is calibrated by a baseline from the
evaluation's miscalibrated start under a shot budget, then verified on fresh shots
(``agents.evaluation.verification``); the row holds the true 1 − F of the X gate beside
the verdict. Reported per (method, budget, stated-coherence factor):

- ``false_calibrated_rate``: of the ``calibrated`` verdicts, the fraction whose true 1 − F
  exceeds 1.5× the verdict's coherence limit (target <= 1 %);
- ``coverage``: the fraction of measured verdicts whose 90 % interval holds the true 1 − F
  (target 85–95 %);
- ``calibrated_rate`` and the verification's shots.

``--stated-factor k`` states T1 and T2 k times what the devices have (a stale
characterisation, or a TLS that shortened T1 since): the coherence limit the verdict
compares against is then k times too optimistic, and the identity-train decay check is
what has to catch it. Run: ``python -m pulsecal.scripts.bench_verdicts --devices 200``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.baselines import make_baseline, miscalibrated_start
from pulsecal.agents.evaluation.verification import honesty, verdict_row, verify_result
from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.drag import optimal_params
from pulsecal.envs.presets import held_out_devices, realistic_held_out_devices
from pulsecal.envs.stress import stress_devices
from pulsecal.envs.verification import StatedCoherence, VerificationSettings

GATE_S = 20e-9


def _stated(dev: SimulatedDevice, factor: float) -> StatedCoherence:
    t = dev.current_transmon()
    t1 = factor * t.t1_s
    # α and the level count are stated as the device has them (spectroscopy gets them right).
    return StatedCoherence(t1, min(factor * t.t2_s, 2 * t1), float(t.anharmonicity_hz), int(min(max(t.levels, 3), 6)))


def run_method(method: str, budget: int, n_devices: int, seed: int, stated_factor: float = 1.0,
               settings: VerificationSettings | None = None) -> list[dict[str, Any]]:
    """Rows of one method at one budget on the first ``n_devices`` held-out devices.

    ``method`` is a registered baseline name, or ``optimal`` (the truth's optimum: a
    calibration that is as good as this gate shape gets, for the verdict's best case)."""
    s = VerificationSettings() if settings is None else settings
    params = held_out_devices(n_devices, seed)
    devs = [SimulatedDevice(p, rng=np.random.default_rng([seed, i, 1])) for i, p in enumerate(params)]
    task = CalibrationTask(list(devs), DragGate(GATE_S))
    t0 = time.perf_counter()
    if method == "optimal":
        from pulsecal.agents.baselines import CalibrationResult

        final = np.stack([optimal_params(d.current_transmon(), task.gate).as_array() for d in devs])
        res = CalibrationResult(final, np.zeros(len(devs), dtype=np.int64))
    else:
        starts = np.stack([miscalibrated_start(d, GATE_S, np.random.default_rng([seed, i, 2]))
                           for i, d in enumerate(devs)])
        res = make_baseline(method).run(task, starts, budget - s.shots, np.random.default_rng([seed, 3, budget]))
    cal_s = time.perf_counter() - t0
    truth = task.true_metrics(res.params)
    assert truth is not None
    stated = [_stated(d, stated_factor) for d in devs]
    t0 = time.perf_counter()
    verdicts = verify_result(task, res, settings=s, stated=stated, budget=budget)
    ver_s = time.perf_counter() - t0
    rows = []
    for i, v in enumerate(verdicts):
        base = {"method": method, "budget": int(budget), "stated_factor": float(stated_factor), "device": i,
                "infidelity": float(1.0 - truth["fidelity"][i]),
                "true_coherence_limit": float(truth["coherence_limit"][i]),
                "shots_used": int(task.shots_used[i]), "calibration_wall_s": cal_s / len(devs),
                "verification_wall_s": ver_s / len(devs)}
        rows.append(verdict_row(base, v))
    return rows


def run_device_set(method: str, calibration_shots: int, device_set: str, n_devices: int, seed: int,
                   settings: VerificationSettings, set_seed: int | None = None) -> list[dict[str, Any]]:
    """Rows of ``method`` with ``calibration_shots`` per device (the verification's on top)
    on ``preset`` (``held_out_devices``, around the default preset), ``realistic``
    (``realistic_held_out_devices``) or ``stress`` (``stress_devices``) devices: one task per device class and level count, each device at the gate its start
    fits (``CalibrationTask`` lengthens an amplitude-limited one). ``set_seed``: draw the
    set from this seed instead of its default (a calibration split, apart from the
    reported sets)."""
    made: list[tuple[Any, Any, Any]]
    if device_set == "realistic":
        got = realistic_held_out_devices(n_devices) if set_seed is None else realistic_held_out_devices(n_devices, set_seed)
        made = [(("plain", p.transmon.levels), p, None) for p in got]
    elif device_set == "stress":
        got_s = stress_devices(n_devices) if set_seed is None else stress_devices(n_devices, set_seed)
        made = [(sp.group, None, sp) for sp in got_s]
    elif device_set == "preset":
        made = [(("plain", p.transmon.levels), p, None)
                for p in held_out_devices(n_devices, seed if set_seed is None else set_seed)]
    else:
        raise ValueError(f"device_set={device_set!r}: allowed 'preset', 'realistic' or 'stress'")
    groups: dict[Any, list[int]] = {}
    for i, (g, _, _) in enumerate(made):
        groups.setdefault(g, []).append(i)
    rows: list[dict[str, Any]] = []
    for idx in groups.values():
        devs = [made[i][2].make(np.random.default_rng([seed, i, 1])) if made[i][2] is not None
                else SimulatedDevice(made[i][1], rng=np.random.default_rng([seed, i, 1])) for i in idx]
        task = CalibrationTask(list(devs), DragGate(GATE_S))
        starts = np.stack([miscalibrated_start(d, GATE_S, np.random.default_rng([seed, i, 2]))  # type: ignore[arg-type]
                           for i, d in zip(idx, devs, strict=True)])
        starts, _ = task.fit_gates(starts)
        res = make_baseline(method).run(task, starts, calibration_shots, np.random.default_rng([seed, 3]))
        truth = task.true_metrics(res.params)
        assert truth is not None
        stated = [_stated(d, 1.0) for d in devs]  # type: ignore[arg-type]
        verdicts = verify_result(task, res, settings=settings, stated=stated)
        for j, (i, v) in enumerate(zip(idx, verdicts, strict=True)):
            base = {"method": method, "budget": int(calibration_shots), "stated_factor": 1.0, "device": i,
                    "kind": made[i][0][0] if made[i][2] is None else made[i][2].label,
                    "infidelity": float(1.0 - truth["fidelity"][j]),
                    "true_coherence_limit": float(truth["coherence_limit"][j]),
                    "shots_used": int(task.shots_used[j])}
            rows.append(verdict_row(base, v))
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``honesty`` line per (method, budget, stated factor), with the reasons counted."""
    keys = sorted({(r["method"], r["budget"], r["stated_factor"]) for r in rows}, key=str)
    out = []
    for m, b, f in keys:
        sel = [r for r in rows if (r["method"], r["budget"], r["stated_factor"]) == (m, b, f)]
        h = honesty(sel)
        reasons: dict[str, int] = {}
        for r in sel:
            if r["verdict"] == "failed":
                reasons[r["verdict_reason"]] = reasons.get(r["verdict_reason"], 0) + 1
        ratio = np.array([r["infidelity"] / r["true_coherence_limit"] for r in sel])
        out.append({"method": m, "budget": b, "stated_factor": f, **h, "failed_reasons": reasons,
                    "true_ratio_median": float(np.median(ratio)), "true_ratio_p90": float(np.quantile(ratio, 0.9))})
    return out


def _table(summary: Sequence[dict[str, Any]]) -> str:
    head = ("| method | budget | stated T1/T2 × | devices | calibrated | false-calibrated | false-failed | "
            "coverage (all) | coverage (calibrated) | verification shots | failed reasons |")
    lines = [head, "|" + "---|" * 11]
    for s in summary:
        def pct(x: float) -> str:
            return "–" if not math.isfinite(x) else f"{100 * x:.1f} %"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["failed_reasons"].items())) or "–"
        lines.append(f"| {s['method']} | {s['budget']} | {s['stated_factor']:g} | {int(s['rows'])} | "
                     f"{pct(s['calibrated_rate'])} | {int(s['false_calibrated'])} ({pct(s['false_calibrated_rate'])}) | "
                     f"{int(s['false_failed'])} ({pct(s['false_failed_rate'])}) | "
                     f"{pct(s['coverage'])} | {pct(s['coverage_calibrated'])} | {s['verification_shots']:.0f} | "
                     f"{reasons} |")
    return "\n".join(lines)


def run(methods: Sequence[str], budgets: Sequence[int], n_devices: int, seed: int,
        stated_factors: Sequence[float], settings: VerificationSettings | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for m in methods:
        for b in budgets:
            for f in stated_factors:
                rows += run_method(m, int(b), n_devices, seed, float(f), settings)
    summary = summarise(rows)
    return {"seed": seed, "devices": n_devices, "settings": (settings or VerificationSettings()).__dict__,
            "summary": summary, "table": _table(summary), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["optimal", "standard"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[1500, 5000],
                    help="total shots per device, verification included")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--stated-factor", nargs="+", type=float, default=[1.0],
                    help="state T1/T2 this many times the truth (mismatch stress)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows and summary as JSON")
    ap.add_argument("--device-set", choices=["held_out", "preset", "realistic", "stress"], default="held_out",
                    help="preset/realistic/stress: --budgets are calibration shots, the verification's on top "
                         "(held_out: total shots, --stated-factor applies)")
    ap.add_argument("--compact", action="store_true", help="VerificationSettings.compact() (160 shots)")
    ap.add_argument("--verification", choices=["default", "quick", "compact", "trusted"], default=None,
                    help="VerificationSettings() (= .trusted(), the default), .quick() (the cheap 640-shot "
                         "checks) or .compact() (--compact = compact)")
    ap.add_argument("--stages", type=int, default=None,
                    help="sequential verification: up to this many stages (default: the settings')")
    ap.add_argument("--train-shots", type=int, default=None, help="shots of each identity train")
    ap.add_argument("--credit-floor", action="store_true",
                    help="credit_floor=True: the upper end takes no credit for a decay measured slower than stated")
    ap.add_argument("--pass-quantile", type=float, default=None,
                    help="quantile of 1 - F that must be within the threshold for calibrated (default: the settings')")
    ap.add_argument("--rb-credit-check", action="store_true",
                    help="rb_credit_check=True: RB over the threshold at any z vetoes a gate the checks credit "
                         "below its stated limit")
    ap.add_argument("--joint-contrast", action="store_true",
                    help="joint_contrast=True: the trains are read through a contrast fitted to the references and "
                         "the checks' midpoint readings")
    ap.add_argument("--set-seed", type=int, default=None,
                    help="preset/realistic/stress: draw the device set from this seed (a calibration split)")
    a = ap.parse_args(argv)
    kind = a.verification or ("compact" if a.compact else "default")
    changes: dict[str, Any] = {} if a.stages is None else {"stages": a.stages}
    if a.train_shots is not None:
        changes["train_shots"] = a.train_shots
    if a.credit_floor:
        changes["credit_floor"] = True
    if a.pass_quantile is not None:
        changes["pass_quantile"] = a.pass_quantile
    if a.rb_credit_check:
        changes["rb_credit_check"] = True
    if a.joint_contrast:
        changes["joint_contrast"] = True
    settings = {"default": VerificationSettings, "quick": VerificationSettings.quick,
                "compact": VerificationSettings.compact, "trusted": VerificationSettings.trusted}[kind](**changes)
    if a.device_set != "held_out":
        rows = [r for m in a.methods for b in a.budgets
                for r in run_device_set(m, int(b), a.device_set, a.devices, a.seed, settings, a.set_seed)]
        res = {"seed": a.seed, "set_seed": a.set_seed, "devices": a.devices, "device_set": a.device_set,
               "settings": settings.__dict__,
               "summary": summarise(rows), "rows": rows}
        res["table"] = _table(res["summary"])
    else:
        res = run(a.methods, a.budgets, a.devices, a.seed, a.stated_factor, settings)
    print(res["table"])
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1, default=str))
