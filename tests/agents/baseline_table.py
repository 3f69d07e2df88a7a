"""Baselines on held-out devices at several budgets: median, p90 and worst infidelity over
the coherence limit and the shots used, as the evaluation's calibration benchmark scores
them (same devices, starts and truth as ``agents.evaluation.benchmarks``).

    python tests/agents/baseline_table.py --methods standard rpe smc --budgets 100 300 1000 5000 --n 100
    python tests/agents/baseline_table.py --set realistic ...   # wider devices and starts

``held_out`` is ``presets.held_out_devices`` with the evaluation's default start
(±5 % amplitude, ±50 % β, ±1 MHz); ``realistic`` draws devices from the realistic ranges
(``DeviceSampler.realistic``, docs/devices.md) that a 20 ns gate can reach (Ω_R/2π 65–200 MHz, α/2π −150…−400 MHz, T1 10–300 µs,
T2/(2·T1) 0.05–1, p(1|0) ≤ 10 %, p(0|1) ≤ 20 %, qubit detuning ±3 MHz) and starts up to
±15 % amplitude, ±100 % β, ±3 MHz.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pulsecal.agents.baselines import make_baseline, miscalibrated_start
from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.presets import DeviceSampler, held_out_devices

SEED = 12345
GATE_S = 20e-9
SETS = {
    "held_out": (DeviceSampler(), (0.05, 0.5, 1e6, 0.0)),
    "realistic": (DeviceSampler(anharmonicity_hz=(-400e6, -150e6), rabi_max_hz=(65e6, 200e6), t1_s=(10e-6, 300e-6),
                                t2_fraction=(0.05, 1.0), amplitude_error=(-0.05, 0.05), detuning_hz=(-3e6, 3e6),
                                p1_given_0=(0.0, 0.10), p0_given_1=(0.0, 0.20)),
                  (0.15, 1.0, 3e6, 0.0)),
}


def run(method: str, budget: int, n: int, set_name: str, chunk: int) -> dict[str, object]:
    sampler, mis = SETS[set_name]
    devices = held_out_devices(n, SEED, sampler)
    base = make_baseline(method)
    ratios, shots, starts_r = [], [], []
    wall = 0.0
    for s in range(0, n, chunk):
        idx = list(range(s, min(s + chunk, n)))
        devs = [SimulatedDevice(devices[i], rng=np.random.default_rng([SEED, i, 1])) for i in idx]
        starts = np.stack([miscalibrated_start(d, GATE_S, np.random.default_rng([SEED, i, 2]), mis)
                           for i, d in zip(idx, devs, strict=True)])
        task = CalibrationTask(list(devs), DragGate(GATE_S))
        t0 = time.perf_counter()
        res = base.run(task, starts, budget, np.random.default_rng([SEED, idx[0], 3, budget]))
        wall += time.perf_counter() - t0
        t_end = task.true_metrics(res.params)
        t_start = task.true_metrics(starts)
        assert t_end is not None and t_start is not None
        ratios += list((1 - t_end["fidelity"]) / t_end["coherence_limit"])
        starts_r += list((1 - t_start["fidelity"]) / t_start["coherence_limit"])
        shots += list(res.shots_used)
    r = np.array(ratios)
    worse = int(np.sum(r > np.array(starts_r) * (1 + 1e-9)))
    return {"method": method, "budget": budget, "set": set_name, "n": n, "median": float(np.median(r)),
            "p90": float(np.quantile(r, 0.9)), "worst": float(r.max()), "worst_device": int(np.argmax(r)),
            "shots_max": int(max(shots)), "shots_mean": float(np.mean(shots)), "worse_than_start": worse,
            "wall_per_device_s": wall / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["standard"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[100, 300, 1000, 5000])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--set", default="held_out", choices=sorted(SETS))
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--json", default=None, help="append one JSON line per row to this file")
    a = ap.parse_args()
    print("| set | method | budget | n | median | p90 | worst (device) | shots max | worse than start | wall/device s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in a.methods:
        for b in a.budgets:
            if b < make_baseline(m).min_budget():
                print(f"| {a.set} | {m} | {b} | - | refuses (min_budget {make_baseline(m).min_budget()}) |")
                continue
            row = run(m, b, a.n, a.set, a.chunk)
            print(f"| {a.set} | {m} | {b} | {a.n} | {row['median']:.3f} | {row['p90']:.3f} | {row['worst']:.2f} "
                  f"({row['worst_device']}) | {row['shots_max']} | {row['worse_than_start']} | "
                  f"{row['wall_per_device_s']:.3f} |", flush=True)
            if a.json:
                with open(a.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
