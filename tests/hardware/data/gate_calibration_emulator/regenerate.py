"""Regenerate the shipped emulator-class policy (``hardware/data/gate_calibration_emulator/policy``:
ONNX + manifest, package data of ``pulsecal.hardware``).

    python tests/hardware/data/gate_calibration_emulator/regenerate.py --train     # train, then export
    python tests/hardware/data/gate_calibration_emulator/regenerate.py             # export the existing run
    python tests/hardware/data/gate_calibration_emulator/regenerate.py --run-dir runs/<run>

Training is ``pulsecal-train experiment=gate_calibration_emulator total_timesteps=200000
seed=0`` (PPO on GateCalibration-v1, emulator device class; ~5 min on one core) into
``--run-dir`` (default runs/gate_calibration_emulator_ppo_s0, which must not exist yet).
The committed export was trained when the experiment named ``device=transmon_20ns``; it
now names the ``transmon_emulator`` preset, which changes only the recorded preset name
(same 1 ns samples; the gate length is set and the sampler draws every device), so the
same run would train step for step the same. Replaying it needs no env settings:
``pulsecal-replay backend=qibolab_emulator policy=onnx policy.folder=<out>`` takes them
from the manifest.
The export is ``pulsecal-export``; afterwards the manifest's record of the run directory is
made relative to the repository (the committed manifest names no machine path) and its
digest recomputed, so ``agents.runner.load_policy`` still verifies it. ``--out`` writes
elsewhere (default: the shipped folder).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
RUN = "runs/gate_calibration_emulator_ppo_s0"
SHIPPED = REPO / "hardware" / "data" / "gate_calibration_emulator" / "policy"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=RUN, help="training run directory (relative to the repository)")
    ap.add_argument("--train", action="store_true", help="train a new run into --run-dir first")
    ap.add_argument("--total-timesteps", type=int, default=200_000)
    ap.add_argument("--out", default=str(SHIPPED), help="export folder")
    args = ap.parse_args()
    run = (REPO / args.run_dir).resolve()
    if args.train:
        if run.exists():
            print(f"error: --run-dir {args.run_dir} exists: allowed a new directory for --train", file=sys.stderr)
            return 2
        exe = Path(sys.executable).with_name("pulsecal-train")
        subprocess.run([str(exe), "experiment=gate_calibration_emulator",
                        f"total_timesteps={args.total_timesteps}", "seed=0", f"hydra.run.dir={run}"],
                       cwd=REPO, check=True)
    from pulsecal.agents.export import export_run
    from pulsecal.agents.runner import load_policy, manifest_digest

    out = Path(args.out).resolve()
    export_run(run, out, overwrite=True)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    source = manifest["training"]["source"]
    try:
        source["run_dir"] = Path(source["run_dir"]).resolve().relative_to(REPO).as_posix()
    except ValueError:
        source["run_dir"] = Path(source["run_dir"]).name  # a run outside the repository
    source["command"] = [Path(source["command"][0]).name, *source["command"][1:]] if source.get("command") else []
    source["command"] = [c.replace(str(REPO) + "/", "") for c in source["command"]]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    policy = load_policy(out)
    print(f"{out}: {policy.env_id}, {(out / 'policy.onnx').stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
