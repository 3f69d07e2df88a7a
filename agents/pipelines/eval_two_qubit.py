"""Held-out comparison of a trained two-qubit agent (an ONNX export) with the textbook baseline.

For each of ``n`` devices of ``held_out_multi_qubit_devices(n, MultiQubitSampler(preset))``
(a stream disjoint from every training stream), both methods calibrate the same device
from the same start: the env's own start draw for that device and episode seed, which
the textbook is then handed. The agent runs one env episode at the env's shot budget
(every shot counted by the env); the textbook runs its plan at its ``min_budget()``
(every shot counted by its device wrapper). Both results are scored on a fresh
open-system device of the same parameters at clock 0 (truth, evaluation only): 1 − F
with the best virtual Z, leakage, and the two-qubit coherence limit of the gate's duration.

``calibrate_open`` picks whether the calibration itself runs open- or closed-system
devices (an open CZ step costs ~1.2 s, so closed calibration is the cheap setting; the
score is always open).

Run: ``python -m pulsecal.agents.pipelines.eval_two_qubit --task cz --policy <export> --n 8``.
The policy runs through ``agents.runner`` (numpy and onnxruntime, no torch).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.baselines.cz_textbook import CZTextbook
from pulsecal.agents.baselines.ecr_textbook import TextbookECR
from pulsecal.agents.runner import ExportedPolicy, load_policy
from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs.cr_calibration import CRCalibrationEnv
from pulsecal.envs.cz_calibration import CZCalibrationConfig, CZCalibrationEnv
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitSampler,
    get_multi_qubit_preset,
    held_out_multi_qubit_devices,
)

PRESETS = {"cz": "two_transmons_cz", "cr": "two_transmons_cr"}
ENV_IDS = {"cz": "pulsecal/CZCalibration-v0", "cr": "pulsecal/CRCalibration-v0"}
EPISODE_SEED = 7_000  # episode i of the comparison resets with seed EPISODE_SEED + i


@dataclass(frozen=True)
class _OneDevice(MultiQubitSampler):
    """A "sampler" that always hands out one device: how a CZ env episode runs on a
    held-out device (CZCalibration-v0 has no reset option for the device)."""

    device: Any = None

    def sample(self, rng: np.random.Generator) -> Any:
        return self.device


def _score(task: str, params: Any, setting: Any) -> dict[str, float]:
    preset = get_multi_qubit_preset(PRESETS[task])
    dev = SimulatedMultiQubitDevice(params, preset.drift, rng=np.random.default_rng(0), open_system=True)
    if task == "cz":
        t = cz.true_metrics(dev, cz.CZPulse(dt_s=preset.params.channels.dt_s), np.asarray(setting))
        return {"infidelity": 1.0 - t["fidelity"], "leakage": t["leakage"], "coherence_limit": t["coherence_limit"]}
    model = params.model
    truth = cr.ecr_truth(dev, setting, cr.ECRShape(), cr.drive_rabi_hz(model, cr.CONTROL))
    return {"infidelity": 1.0 - truth.fidelity, "leakage": truth.leakage, "coherence_limit": truth.coherence_limit}


def _row(method: str, score: dict[str, float], shots: int, seconds: float) -> dict[str, Any]:
    return {"method": method, **score, "ratio": score["infidelity"] / score["coherence_limit"],
            "shots": int(shots), "seconds": seconds}


def _agent_episode(task: str, params: Any, policy: ExportedPolicy | None, seed: int,
                   calibrate_open: bool) -> tuple[Any, Any, int]:
    """(start, final setting, shots used) of one env episode on ``params``; ``policy``
    None only draws the start."""
    if task == "cz":
        cfg = CZCalibrationConfig(sampler=_OneDevice(preset=PRESETS[task], device=params), open_system=calibrate_open)
        env: Any = CZCalibrationEnv(config=cfg)
        obs, info = env.reset(seed=seed)
        start = np.asarray(info["params"]).copy()
        final_of = lambda inf: np.asarray(inf["params"]).copy()  # noqa: E731
    else:
        env = CRCalibrationEnv(randomize_device=False, open_system=calibrate_open)
        obs, info = env.reset(seed=seed, options={"params": params})
        start = cr.ECRKnobs(*(float(x) for x in info["knobs"]))
        final_of = lambda inf: cr.ECRKnobs(*(float(x) for x in inf["knobs"]))  # noqa: E731
    if policy is None:
        return start, start, int(info["shots_used"])
    done = False
    while not done:
        action = policy.act(np.asarray(obs, dtype=np.float64))
        obs, _, term, trunc, info = env.step(action)
        done = bool(term or trunc)
    return start, final_of(info), int(info["shots_used"])


def _textbook(task: str, params: Any, start: Any, calibrate_open: bool) -> tuple[Any, int]:
    preset = get_multi_qubit_preset(PRESETS[task])
    dev = SimulatedMultiQubitDevice(params, preset.drift, rng=np.random.default_rng(1), open_system=calibrate_open)
    if task == "cz":
        b = CZTextbook(pulse=cz.CZPulse(dt_s=preset.params.channels.dt_s))
        res = b.run(dev, start, b.min_budget())
        return np.asarray(res.params), int(res.shots_used)
    e = TextbookECR()
    r = e.run(dev, start, e.min_budget())
    return r.knobs, int(r.shots_used)


def compare(task: str, policy_folder: Path | None, n: int, *, calibrate_open: bool = True,
            textbook: bool = True, log: Any = print) -> list[dict[str, Any]]:
    """Rows (one per device and method: start, agent, textbook) of the comparison."""
    if task not in PRESETS:
        raise ValueError(f"task={task!r}: allowed one of {sorted(PRESETS)}")
    policy = None if policy_folder is None else load_policy(policy_folder)
    if policy is not None and policy.env_id != ENV_IDS[task]:
        raise ValueError(f"policy {policy_folder} was trained on {policy.env_id}: allowed {ENV_IDS[task]} for task {task}")
    devices = held_out_multi_qubit_devices(n, MultiQubitSampler(preset=PRESETS[task]))
    rows: list[dict[str, Any]] = []
    for i, params in enumerate(devices):
        t0 = time.perf_counter()
        start, final, shots = _agent_episode(task, params, policy, EPISODE_SEED + i, calibrate_open)
        t_agent = time.perf_counter() - t0
        found = [_row("start", _score(task, params, start), 0, 0.0)]
        if policy is not None:
            found.append(_row("agent", _score(task, params, final), shots, t_agent))
        if textbook:
            t0 = time.perf_counter()
            setting, used = _textbook(task, params, start, calibrate_open)
            found.append(_row("textbook", _score(task, params, setting), used, time.perf_counter() - t0))
        for r in found:
            r["device"] = i
            log(f"{task} held-out {i} {r['method']:>8}: 1-F {r['infidelity']:.3e}  limit {r['coherence_limit']:.2e}"
                f"  ratio {r['ratio']:.2f}  leakage {r['leakage']:.1e}  shots {r['shots']}  {r['seconds']:.0f} s")
        rows.extend(found)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and p90 of 1 − F and of its ratio to the coherence limit, median leakage and
    shots, per method."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        f = np.array([r["infidelity"] for r in sel])
        ratio = np.array([r["ratio"] for r in sel])
        out[method] = {"n": float(len(sel)), "infidelity_median": float(np.median(f)),
                       "infidelity_p90": float(np.percentile(f, 90)), "ratio_median": float(np.median(ratio)),
                       "ratio_p90": float(np.percentile(ratio, 90)),
                       "leakage_median": float(np.median([r["leakage"] for r in sel])),
                       "shots_median": float(np.median([r["shots"] for r in sel]))}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(PRESETS), required=True)
    ap.add_argument("--policy", type=Path, default=None, help="an exported policy folder (pulsecal-export)")
    ap.add_argument("--n", type=int, default=8, help="held-out devices, >= 1")
    ap.add_argument("--closed", action="store_true", help="calibrate on closed-system devices (scored open)")
    ap.add_argument("--no-textbook", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write rows and summary as JSON here")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n {args.n}: allowed an integer >= 1")
    rows = compare(args.task, args.policy, args.n, calibrate_open=not args.closed, textbook=not args.no_textbook)
    summ = summary(rows)
    for method, s in summ.items():
        print(f"{method:>8}: median 1-F {s['infidelity_median']:.3e} (p90 {s['infidelity_p90']:.3e}), "
              f"ratio {s['ratio_median']:.2f} (p90 {s['ratio_p90']:.2f}), leakage {s['leakage_median']:.1e}, "
              f"shots {s['shots_median']:.0f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"task": args.task, "calibrate_open": not args.closed, "rows": rows,
                                        "summary": summ}, indent=2, default=lambda x: None if not math.isfinite(x) else x))


if __name__ == "__main__":
    main()
