"""Regenerate the committed emulator-class policy (``policy/``: ONNX + manifest).

    python tests/hardware/data/gate_calibration_emulator/regenerate.py            # train + export
    python tests/hardware/data/gate_calibration_emulator/regenerate.py --run-dir runs/<run>   # export only

Training is ``pulsecal-train experiment=gate_calibration_emulator`` (PPO on
GateCalibration-v1, emulator device class; ~5 min on one core). The export is
``pulsecal-export``; afterwards the manifest's record of the run directory is made
relative to the repository (the committed manifest names no machine path) and its digest
recomputed, so ``agents.runner.load_policy`` still verifies it.
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
TRAIN = ["experiment=gate_calibration_emulator", "total_timesteps=200000", "seed=0", f"hydra.run.dir={RUN}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", help="export this training run instead of training a new one")
    args = ap.parse_args()
    run = Path(args.run_dir) if args.run_dir else REPO / RUN
    if not args.run_dir:
        exe = Path(sys.executable).with_name("pulsecal-train")
        subprocess.run([str(exe), *TRAIN], cwd=REPO, check=True)
    from pulsecal.agents.export import export_run
    from pulsecal.agents.runner import load_policy, manifest_digest

    out = HERE / "policy"
    export_run(run, out, overwrite=True)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    source = manifest["training"]["source"]
    try:
        source["run_dir"] = Path(source["run_dir"]).resolve().relative_to(REPO).as_posix()
    except ValueError:
        source["run_dir"] = Path(source["run_dir"]).name  # a run outside the repository
    manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    policy = load_policy(out)
    print(f"{out.relative_to(REPO)}: {policy.env_id}, {(out / 'policy.onnx').stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
