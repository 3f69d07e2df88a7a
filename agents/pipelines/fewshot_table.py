"""The few-shot comparison of docs/fewshot.md: trained v1 policies against the v1
estimator alone (all-zero residuals, the same env settings) and ``standard``, on the same
held-out devices from the same starts, with paired per-device differences.

    python -m pulsecal.scripts.fewshot_table --runs runs/fs_s0 runs/fs_s1 runs/fs_s2 \\
        --n-devices 50 --budgets 100 300 1000 5000

Every method plays ``benchmarks.calibration_rows`` (the harness of ``pulsecal-evaluate``)
on ``device_set`` realistic or stress from the realistic starting errors. Ratios are the
true 1 − F over the coherence limit; "fit" drops the devices whose 20 ns π pulse needs
|u| > 1 (Ω_R/2π < 47 MHz), which no method here can calibrate at 20 ns. The estimator
runs with the first run's env settings (or the few-shot env config's, without runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pulsecal.agents import policies
from pulsecal.agents.evaluation import AgentSpec, EvaluationSettings
from pulsecal.agents.evaluation.benchmarks import calibration_devices, calibration_rows
from pulsecal.agents.pipelines.common import trained_env_kwargs
from pulsecal.envs.stress import StressSpec

REALISTIC_START = (0.15, 1.0, 3.0e6, 0.0)
# The estimator settings of configs/env/gate_calibration_v1_fewshot.yaml.
FEWSHOT_KWARGS = {"miscalibration": list(REALISTIC_START), "window": 3.0, "shots_per_probe": 1,
                  "beta_unit_floor_s": 5e-10}
# The slowest full-scale drive whose 20 ns π pulse fits |u| <= 1 (docs/devices.md).
MIN_RABI_HZ = 47e6
ENV_ID = "pulsecal/GateCalibration-v1"


def _stats(r: np.ndarray) -> str:
    return f"{np.median(r):.3g} / {np.percentile(r, 90):.3g} / {np.max(r):.3g}" if len(r) else "-"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[], help="training run directories (one per seed)")
    ap.add_argument("--n-devices", type=int, default=50)
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000, 5000])
    ap.add_argument("--device-set", choices=["realistic", "stress"], default="realistic")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--no-standard", action="store_true", help="leave out the standard baseline")
    ap.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = ap.parse_args(argv)

    settings = EvaluationSettings(out_dir=Path("."), n_devices=args.n_devices, seed=args.seed,
                                  device_set=args.device_set, budgets=tuple(args.budgets),
                                  methods=() if args.no_standard else ("standard",),
                                  miscalibration=REALISTIC_START, workers=1, progress=False,
                                  pulse_shaping=False, drift=False, plots=False)
    est_kwargs = trained_env_kwargs(Path(args.runs[0])) if args.runs else dict(FEWSHOT_KWARGS)
    zero = np.zeros(4, dtype=np.float32)
    agents = [AgentSpec("estimator", "calibration", policies.FunctionPolicy(lambda _obs: zero), est_kwargs, ENV_ID)]
    for k, run in enumerate(args.runs):
        agents.append(AgentSpec(f"agent_s{k}", "calibration", policies.SB3Policy.from_run_dir(run, "ppo"),
                                trained_env_kwargs(Path(run)), ENV_ID))
    rows = calibration_rows(settings, agents)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")

    devices = calibration_devices(settings)
    fits = np.array([(d.params if isinstance(d, StressSpec) else d).transmon.rabi_max_hz >= MIN_RABI_HZ
                     for d in devices])
    ratio: dict[tuple[str, int], np.ndarray] = {}
    shots: dict[tuple[str, int], int] = {}
    for key in {(r["method"], r["budget"]) for r in rows}:
        got = sorted((r for r in rows if (r["method"], r["budget"]) == key), key=lambda r: r["device"])
        ratio[key] = np.array([r["ratio"] for r in got])
        shots[key] = max(r["shots_used"] for r in got)
    methods = ["estimator", *([] if args.no_standard else ["standard"]), *(a.name for a in agents[1:])]
    print(f"{args.device_set}: {len(devices)} devices ({int(fits.sum())} fit |u| <= 1), seed {args.seed}")
    print("| budget | method | max shots | all: median / p90 / worst | fit: median / p90 / worst |")
    print("|---|---|---|---|---|")
    for b in args.budgets:
        for m in methods:
            if (m, b) in ratio:
                r = ratio[(m, b)]
                print(f"| {b} | {m} | {shots[(m, b)]} | {_stats(r)} | {_stats(r[fits])} |")
    print("\nPaired per-device difference on the fit devices, agent − other, in units of the coherence"
          " limit: median [p10, p90]; mean over seeds ± spread (std) of the per-seed medians")
    for b in args.budgets:
        for other in methods[: 1 if args.no_standard else 2]:
            if (other, b) not in ratio:
                continue
            per_seed = []
            for a in agents[1:]:
                d = (ratio[(a.name, b)] - ratio[(other, b)])[fits]
                per_seed.append(float(np.median(d)))
                print(f"  {b:>5} {a.name} − {other}: {np.median(d):+.3g} [{np.percentile(d, 10):+.3g}, "
                      f"{np.percentile(d, 90):+.3g}], agent better on {int(np.sum(d < 0))}/{len(d)}")
            if per_seed:
                print(f"  {b:>5} over {len(per_seed)} seeds vs {other}: {np.mean(per_seed):+.3g} ± "
                      f"{np.std(per_seed):.3g}")
