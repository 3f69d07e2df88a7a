"""Environment throughput: env steps/s of every pulsecal env (single and batched), and
SB3 PPO steps/s on GateCalibration-v0 against a null env with the same spaces, at
n_envs = 8 and 32 (the gate-calibration training experiment's n_envs), and on the two
two-qubit envs (CZCalibration-v0, CRCalibration-v0) at the settings their agents train
with (closed system, a new device per episode; ``TWO_QUBIT_ENVS``) and n_envs = 4.

The PPO ratio says how much of a training run the environment costs: 1.0 means the env
is free next to PPO's own work. Targets: ratio >= 0.8, batched GateCalibration >= 20,000
env steps/s with 64 copies; PPO ratio >= 0.7 on the two-qubit envs. Run: ``python -m pulsecal.scripts.bench_envs --out bench_envs.json``.

Every figure comes twice: per wall-clock second and per second of this process's CPU
time (``time.process_time``). On a machine shared with other jobs the wall figures drop
with the load; the CPU figures much less (cache and core sharing still show), so they are
the ones to compare between runs. The host's speed also drifts within a run (the null
env alone moved 1.6× between runs at load ~0.1 here), so the PPO comparison runs
``--ppo-repeats`` adjacent null/env pairs, order alternating, and reports the median of the
per-pair ratios with the lowest and highest pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ENV_IDS = ("pulsecal/GateCalibration-v0", "pulsecal/PulseShaping-v0", "pulsecal/DriftTracking-v0")
# PPO ratio at 8 copies (the env config's default) and at 32, the n_envs of the
# gate-calibration training experiment (configs/experiment/gate_calibration_agent.yaml).
PPO_N_ENVS = (8, 32)
# The two-qubit envs at the settings of configs/experiment/{cz,cr}_calibration_agent.yaml:
# closed system (an open step costs ~1.2 s, which would make these rows minutes long),
# the sampler's devices and the truth in ``info`` only at an episode's end (``info_truth``). Their multi-qubit device has no batched path, so a vector
# step costs n times a single one and one copy count (the experiments' n_envs) says it all.
TWO_QUBIT_ENVS: dict[str, dict[str, Any]] = {
    "pulsecal/CZCalibration-v0": {"open_system": False, "sampler": {}, "info_truth": "end"},
    "pulsecal/CRCalibration-v0": {"open_system": False, "randomize_device": True, "info_truth": "end"},
}
TWO_QUBIT_COPIES = (4,)
TWO_QUBIT_PPO_N_ENVS = 4


def _rate(step, n_per_call: int, min_time_s: float) -> tuple[float, float]:
    """Calls ``step`` until ``min_time_s`` has passed: env steps per wall-clock second and
    per CPU second of this process."""
    step()  # warm-up (caches, first physics call)
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        step()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_time_s:
            cpu = max(time.process_time() - c0, 1e-9)
            return calls * n_per_call / dt, calls * n_per_call / cpu


def bench_single(env_id: str, min_time_s: float, env_kwargs: dict[str, Any] | None = None) -> tuple[float, float]:
    import gymnasium as gym

    env = gym.make(env_id, **(env_kwargs or {}))
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def step() -> None:
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if term or trunc:
            env.reset()

    return _rate(step, 1, min_time_s)


def bench_vector(env_id: str, n: int, min_time_s: float, env_kwargs: dict[str, Any] | None = None
                 ) -> tuple[float, float]:
    import gymnasium as gym

    venv = gym.make_vec(env_id, num_envs=n, **(env_kwargs or {}))
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = (n, *(venv.single_action_space.shape or ()))
    return _rate(lambda: venv.step(rng.uniform(-1, 1, shape).astype(np.float32)), n, min_time_s)


def _null_env_class(obs_space: Any, act_space: Any) -> Any:
    import gymnasium as gym

    class NullEnv(gym.Env):
        """Same spaces as the real env, no work: PPO's own cost."""

        def __init__(self) -> None:
            self.observation_space = obs_space
            self.action_space = act_space
            self._obs = np.zeros(obs_space.shape, dtype=np.float32)
            self._t = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            self._t = 0
            return self._obs, {}

        def step(self, action):
            self._t += 1
            return self._obs, 0.0, False, self._t >= 50, {}

    return NullEnv


def bench_ppo(total_steps: int, n_envs: int, repeats: int = 8, env_id: str = "pulsecal/GateCalibration-v0",
              env_kwargs: dict[str, Any] | None = None, label: str = "gate_calibration") -> dict[str, float]:
    """SB3 PPO steps/s (one rollout of ``total_steps`` and its update) on the null env and
    on ``env_id`` (with ``env_kwargs``; its rate is keyed ``label``), in ``repeats`` adjacent pairs (order alternating: null first, then
    env first), so that the host's speed drift, which on a shared machine moves either rate
    by more than the env costs, hits both halves of a pair alike. The ratio is the median of
    the per-pair ratios; its spread (lowest, highest pair) is reported too; the rates are
    medians. Wall and CPU time."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from pulsecal.agents.vec_env import make_sb3_vec_env

    torch.set_num_threads(1)
    real = make_sb3_vec_env(env_id, n_envs=n_envs, seed=0, **(env_kwargs or {}))
    null_cls = _null_env_class(real.observation_space, real.action_space)
    null = DummyVecEnv([null_cls for _ in range(n_envs)])
    n_steps = max(total_steps // n_envs, 8)
    wall: dict[str, list[float]] = {"null": [], label: []}
    cpu: dict[str, list[float]] = {"null": [], label: []}
    pairs = [(("null", null), (label, real))] * 2
    pairs[1] = pairs[1][::-1]
    for i in range(max(repeats, 1)):
        for name, venv in pairs[i % 2]:
            model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=min(64, n_steps * n_envs), seed=0,
                        device="cpu", verbose=0)
            t0, c0 = time.perf_counter(), time.process_time()
            model.learn(total_timesteps=n_steps * n_envs)
            wall[name].append(n_steps * n_envs / (time.perf_counter() - t0))
            cpu[name].append(n_steps * n_envs / max(time.process_time() - c0, 1e-9))
    gym.logger.min_level = 40
    out = {name: float(np.median(v)) for name, v in wall.items()}
    out.update({f"{name}_cpu": float(np.median(v)) for name, v in cpu.items()})
    for key, rates in (("ratio", wall), ("ratio_cpu", cpu)):
        per_pair = np.asarray(rates[label]) / np.asarray(rates["null"])
        out[key] = float(np.median(per_pair))
        out[f"{key}_low"], out[f"{key}_high"] = float(per_pair.min()), float(per_pair.max())
    out["repeats"] = float(max(repeats, 1))
    real.close()
    return out


def run(min_time_s: float = 2.0, ppo_steps: int = 4096, ppo_envs: tuple[int, ...] = PPO_N_ENVS,
        copies: tuple[int, ...] = (8, 64), ppo_repeats: int = 8, two_qubit_ppo_steps: int = 256,
        two_qubit_ppo_repeats: int = 2, env_ids: tuple[str, ...] = ENV_IDS,
        two_qubit_envs: tuple[str, ...] = tuple(TWO_QUBIT_ENVS)) -> dict[str, Any]:
    """Every figure of the module docstring. The two-qubit PPO comparison runs fewer,
    shorter pairs (``two_qubit_ppo_steps``, ``two_qubit_ppo_repeats``): its env costs
    ~50 ms a step, so one 4,096-step rollout alone would take minutes."""
    import pulsecal.envs  # noqa: F401  (registers the ids)

    rows, cpu_rows = [], []
    for env_id in env_ids:
        row: dict[str, Any] = {"env": env_id}
        cpu_row: dict[str, Any] = {"env": env_id}
        row["single"], cpu_row["single"] = bench_single(env_id, min_time_s)
        for n in copies:
            row[f"vector_{n}"], cpu_row[f"vector_{n}"] = bench_vector(env_id, n, min_time_s)
        rows.append(row)
        cpu_rows.append(cpu_row)
    two_rows, two_cpu_rows = [], []
    for env_id in two_qubit_envs:
        kw = TWO_QUBIT_ENVS[env_id]
        row, cpu_row = {"env": env_id, "settings": kw}, {"env": env_id, "settings": kw}
        row["single"], cpu_row["single"] = bench_single(env_id, min_time_s, kw)
        for n in TWO_QUBIT_COPIES:
            row[f"vector_{n}"], cpu_row[f"vector_{n}"] = bench_vector(env_id, n, min_time_s, kw)
        two_rows.append(row)
        two_cpu_rows.append(cpu_row)
    # One PPO comparison per n_envs, each with its own null env of the same n_envs.
    ppo = {str(n): bench_ppo(ppo_steps, n, ppo_repeats) for n in ppo_envs}
    two_ppo = {env_id: bench_ppo(two_qubit_ppo_steps, TWO_QUBIT_PPO_N_ENVS, two_qubit_ppo_repeats, env_id,
                                 TWO_QUBIT_ENVS[env_id], label="env") for env_id in two_qubit_envs}
    return {
        "env_steps_per_s": rows,
        "env_steps_per_cpu_s": cpu_rows,
        "ppo_steps_per_s": ppo,
        "two_qubit_env_steps_per_s": two_rows,
        "two_qubit_env_steps_per_cpu_s": two_cpu_rows,
        "two_qubit_ppo_steps_per_s": two_ppo,
        "targets": {"ppo_ratio": 0.8, "gate_calibration_vector_64": 20000.0, "two_qubit_ppo_ratio": 0.7},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS")},
    }


def _spread(p: dict[str, float], key: str) -> str:
    """The lowest and highest per-pair PPO ratio, when measured."""
    return f" [pairs {p[key + '_low']:.2f}..{p[key + '_high']:.2f}]" if key + "_low" in p else ""


def print_table(res: dict[str, Any]) -> None:
    for title, rows in (("env steps/s", res["env_steps_per_s"]),
                        ("env steps/CPU-s", res.get("env_steps_per_cpu_s"))):
        if not rows:
            continue
        cols = [k for k in rows[0] if k != "env"]
        print(f"{title:<30}" + "".join(f"{c:>14}" for c in cols))
        for r in rows:
            print(f"{r['env']:<30}" + "".join(f"{r[c]:>14,.0f}" for c in cols))
        print()
    for n_envs, p in res["ppo_steps_per_s"].items():
        print(f"SB3 PPO steps/s (n_envs={n_envs}, 1 torch thread, {p.get('repeats', 1):.0f} adjacent pairs): "
              f"null env {p['null']:,.0f}, GateCalibration-v0 {p['gate_calibration']:,.0f}, "
              f"ratio {p['ratio']:.2f}{_spread(p, 'ratio')} (target >= {res['targets']['ppo_ratio']})")
        if "ratio_cpu" in p:
            print(f"SB3 PPO steps/CPU-s (n_envs={n_envs}): null env {p['null_cpu']:,.0f}, "
                  f"GateCalibration-v0 {p['gate_calibration_cpu']:,.0f}, ratio {p['ratio_cpu']:.2f}"
                  f"{_spread(p, 'ratio_cpu')}")
    for title, rows in (("two-qubit env steps/s", res.get("two_qubit_env_steps_per_s")),
                        ("two-qubit env steps/CPU-s", res.get("two_qubit_env_steps_per_cpu_s"))):
        if not rows:
            continue
        cols = [k for k in rows[0] if k not in ("env", "settings")]
        print(f"{title:<30}" + "".join(f"{c:>14}" for c in cols) + "   settings")
        for r in rows:
            print(f"{r['env']:<30}" + "".join(f"{r[c]:>14,.1f}" for c in cols) + f"   {r['settings']}")
        print()
    for env_id, p in (res.get("two_qubit_ppo_steps_per_s") or {}).items():
        print(f"SB3 PPO steps/s on {env_id} (n_envs={TWO_QUBIT_PPO_N_ENVS}, {p['repeats']:.0f} adjacent pairs): "
              f"null env {p['null']:,.0f}, env {p['env']:,.1f}, ratio {p['ratio']:.3f}{_spread(p, 'ratio')} "
              f"(target >= {res['targets']['two_qubit_ppo_ratio']}); per CPU-s: null {p['null_cpu']:,.0f}, "
              f"env {p['env_cpu']:,.1f}, ratio {p['ratio_cpu']:.3f}")
    if not any(r["env"].endswith("GateCalibration-v0") for r in res["env_steps_per_s"]):
        return
    g64 = next(r for r in res["env_steps_per_s"] if r["env"].endswith("GateCalibration-v0")).get("vector_64")
    if g64 is not None:
        cpu_rows = res.get("env_steps_per_cpu_s") or []
        c64 = next((r.get("vector_64") for r in cpu_rows if r["env"].endswith("GateCalibration-v0")), None)
        extra = f", {c64:,.0f} per CPU-s" if c64 is not None else ""
        print(f"GateCalibration-v0 batched x64: {g64:,.0f} env steps/s{extra} "
              f"(target >= {res['targets']['gate_calibration_vector_64']:,.0f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--min-time-s", type=float, default=2.0, help="timing window per measurement")
    ap.add_argument("--ppo-steps", type=int, default=4096)
    ap.add_argument("--ppo-envs", type=int, nargs="+", default=list(PPO_N_ENVS),
                    help="n_envs of the PPO comparisons (one null-env/env pair each)")
    ap.add_argument("--ppo-repeats", type=int, default=8,
                    help="adjacent null/env PPO pairs, order alternating (median of per-pair ratios)")
    ap.add_argument("--two-qubit-ppo-steps", type=int, default=256,
                    help="steps of each two-qubit PPO rollout (n_envs=4)")
    ap.add_argument("--two-qubit-ppo-repeats", type=int, default=2,
                    help="adjacent null/env PPO pairs on each two-qubit env")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bad = [n for n in args.ppo_envs if n < 1]
    if bad:
        ap.error(f"--ppo-envs {bad}: allowed integers >= 1")
    for name in ("two_qubit_ppo_steps", "two_qubit_ppo_repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)}: allowed an integer >= 1")
    res = run(args.min_time_s, args.ppo_steps, tuple(args.ppo_envs), ppo_repeats=args.ppo_repeats,
              two_qubit_ppo_steps=args.two_qubit_ppo_steps, two_qubit_ppo_repeats=args.two_qubit_ppo_repeats)
    print_table(res)
    if args.out is not None:
        args.out.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.out}")

