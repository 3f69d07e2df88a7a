"""Trajectory fingerprints of every registered env, for refactors that must not change
behaviour.

Each of the six ids runs as a single env, as a Gymnasium vector env (8 copies) and through
the SB3 adapter (8 copies), from fixed seeds with random actions drawn from a fixed
generator. Observations, rewards, dones, shots, device time and waveforms must match the
recorded run exactly (their bytes are hashed); fidelity and leakage, which go through a
floating-point reduction whose order a compiler may pick, to 1e-12.

    python tests/envs/trajectory_check.py --record tests/envs/data/trajectories.json
    python tests/envs/trajectory_check.py --check tests/envs/data/trajectories.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ENV_IDS = (
    "pulsecal/GateCalibration-v0",
    "pulsecal/GateCalibration-v1",
    "pulsecal/PulseShaping-v0",
    "pulsecal/PulseShaping-v1",
    "pulsecal/DriftTracking-v0",
    "pulsecal/DriftTracking-v1",
)
STEPS = 60
N_COPIES = 8
EXACT_KEYS = ("shots_used", "device_time_s", "waveform")
CLOSE_KEYS = ("fidelity", "leakage")
TOLERANCE = 1e-12


def _digest(a: Any) -> str:
    arr = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha256(str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes()).hexdigest()[:24]


class _Trace:
    def __init__(self) -> None:
        self.exact: dict[str, list[Any]] = {}
        self.close: dict[str, list[float]] = {}

    def add(self, key: str, value: Any) -> None:
        self.exact.setdefault(key, []).append(np.asarray(value))

    def add_infos(self, infos: Any) -> None:
        rows = [infos] if isinstance(infos, dict) else list(infos)
        for key in EXACT_KEYS:
            vals = [np.asarray(r[key]) for r in rows if key in r]
            if vals:
                self.exact.setdefault(key, []).extend(vals)
        for key in CLOSE_KEYS:
            vals = [float(r[key]) for r in rows if key in r]
            self.close.setdefault(key, []).extend(vals)

    def add_vector_infos(self, infos: dict[str, Any]) -> None:
        for key in EXACT_KEYS:
            if key in infos:
                self.exact.setdefault(key, []).append(np.asarray(infos[key]))
        for key in CLOSE_KEYS:
            if key in infos:
                self.close.setdefault(key, []).extend(np.asarray(infos[key], dtype=np.float64).ravel().tolist())

    def summary(self) -> dict[str, Any]:
        exact = {k: hashlib.sha256("".join(_digest(v) for v in vs).encode()).hexdigest()[:24]
                 for k, vs in sorted(self.exact.items())}
        return {"exact": exact, "close": {k: v for k, v in sorted(self.close.items())}}


def _sb3_adapter() -> Any:
    for mod in ("pulsecal.agents.vec_env", "pulsecal.envs.vector"):
        try:
            return importlib.import_module(mod).make_sb3_vec_env
        except (ImportError, AttributeError):
            continue
    raise ImportError("no make_sb3_vec_env found")


def _single(env_id: str) -> dict[str, Any]:
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(0)
    rng = np.random.default_rng(1)
    tr = _Trace()
    obs, info = env.reset(seed=123)
    tr.add("obs", obs)
    tr.add_infos(info)
    for _ in range(STEPS):
        a = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        obs, rew, term, trunc, info = env.step(a)
        tr.add("obs", obs)
        tr.add("reward", np.float64(rew))
        tr.add("done", np.array([term, trunc]))
        tr.add_infos(info)
        if term or trunc:
            obs, info = env.reset()
            tr.add("obs", obs)
            tr.add_infos(info)
    env.close()
    return tr.summary()


def _vector(env_id: str) -> dict[str, Any]:
    import gymnasium as gym

    venv = gym.make_vec(env_id, num_envs=N_COPIES, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(2)
    tr = _Trace()
    obs, info = venv.reset(seed=321)
    tr.add("obs", obs)
    tr.add_vector_infos(info)
    shape = (N_COPIES, *venv.single_action_space.shape)
    for _ in range(STEPS):
        a = rng.uniform(-1, 1, size=shape).astype(np.float32)
        obs, rew, term, trunc, info = venv.step(a)
        tr.add("obs", obs)
        tr.add("reward", rew)
        tr.add("done", np.stack([term, trunc]))
        tr.add_vector_infos(info)
    venv.close()
    return tr.summary()


def _sb3(env_id: str) -> dict[str, Any]:
    venv = _sb3_adapter()(env_id, n_envs=N_COPIES, seed=777)
    rng = np.random.default_rng(3)
    tr = _Trace()
    obs = venv.reset()
    tr.add("obs", obs)
    shape = (N_COPIES, *venv.action_space.shape)
    for _ in range(STEPS):
        a = rng.uniform(-1, 1, size=shape).astype(np.float32)
        obs, rew, done, infos = venv.step(a)
        tr.add("obs", obs)
        tr.add("reward", rew)
        tr.add("done", done)
        tr.add_infos([{k: v for k, v in i.items() if k != "terminal_observation"} for i in infos])
        for i in infos:
            if "terminal_observation" in i:
                tr.add("terminal_observation", i["terminal_observation"])
    venv.close()
    return tr.summary()


def record() -> dict[str, Any]:
    import pulsecal.envs  # noqa: F401  (registers the ids)

    return {env_id: {"single": _single(env_id), "vector": _vector(env_id), "sb3": _sb3(env_id)}
            for env_id in ENV_IDS}


def compare(reference: dict[str, Any], current: dict[str, Any]) -> tuple[int, int, float, list[str]]:
    """(arrays compared, arrays that differ, worst close-key difference, what differs)."""
    compared = differ = 0
    worst = 0.0
    problems: list[str] = []
    for env_id, modes in reference.items():
        for mode, ref in modes.items():
            cur = current[env_id][mode]
            for key, digest in ref["exact"].items():
                compared += 1
                if cur["exact"].get(key) != digest:
                    differ += 1
                    problems.append(f"{env_id} {mode} {key}: bytes differ")
            for key, values in ref["close"].items():
                compared += 1
                got = cur["close"].get(key, [])
                if len(got) != len(values):
                    differ += 1
                    problems.append(f"{env_id} {mode} {key}: {len(got)} values, recorded {len(values)}")
                    continue
                d = float(np.max(np.abs(np.subtract(got, values)))) if values else 0.0
                worst = max(worst, d)
                if d > TOLERANCE:
                    differ += 1
                    problems.append(f"{env_id} {mode} {key}: differs by {d:.3g}")
    return compared, differ, worst, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args(argv)
    current = record()
    if args.record:
        args.record.write_text(json.dumps(current, indent=1) + "\n")
        print(f"recorded {args.record}")
        return 0
    compared, differ, worst, problems = compare(json.loads(args.check.read_text()), current)
    for p in problems:
        print(p)
    print(f"compared {compared} arrays: {differ} differ; worst fidelity/leakage diff {worst:.3g}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
