"""The CZ error of a finished CZ session's start and final gate, measured again on a qibolab
emulator platform at many shots (``hardware.replay.cz_error.measured_cz_error``).

A session's own estimates come from 200 shots per probe and were what the policy acted
on; this re-measures both ends of the session on a fresh backend of the same platform,
so the start-to-final ratio is read at a shot noise well below the final error. Every
number comes from the emulator's counts (no pulsecal truth): docs/lab_sessions.md, "CZ
sessions on qibolab's emulator".

Run: ``python -m pulsecal.agents.pipelines.cz_session_error runs/replay/cz_emulator``
(``--shots``, ``--seed`` for the emulator's shot sampling, ``--out`` a JSON file).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from pulsecal.hardware.adapters.qibolab import qibolab_backend
from pulsecal.hardware.replay.cz_error import measured_cz_error

PARAMETERS = ("amplitude_phi0", "length_s", "phase_q0_rad", "phase_q1_rad")
ROWS = (("cz_error", "CZ error (env formula)"), ("phase_error", "phase part"),
        ("conditional_phase_rad", "conditional phase (rad)"),
        ("conditional_phase_error_rad", "distance of the phase from π (rad)"), ("leakage", "leakage (02, read as 01)"),
        ("eleven_loss", "loss from 11"))


def session_error(folder: Path, *, platform: str = "pulsecal_emulator_2q_cz", shots: int = 20_000,
                  seed: int = 11) -> dict[str, Any]:
    """{"start", "final": measurement dicts, "ratio": start/final CZ error} of the session in
    ``folder`` (its report.json), on a fresh backend of ``platform``."""
    report = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
    if report.get("env_id") != "pulsecal/CZCalibration-v0":
        raise ValueError(f"{folder}/report.json env_id={report.get('env_id')!r}: allowed a CZ session's report "
                         "(pulsecal/CZCalibration-v0)")
    backend = qibolab_backend(platform, emulator_seed=seed)
    out: dict[str, Any] = {"folder": str(folder), "platform": platform, "shots": shots, "seed": seed,
                           "policy": report.get("policy", {}).get("kind")}
    for end, key in (("start", "initial_params"), ("final", "final_params")):
        out[end] = measured_cz_error(backend, [float(report[key][p]) for p in PARAMETERS], shots).to_dict()
    final = out["final"]["cz_error"]
    out["ratio"] = out["start"]["cz_error"] / final if final > 0 else math.inf
    backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a CZ session's folder (its report.json)")
    ap.add_argument("--platform", default="pulsecal_emulator_2q_cz")
    ap.add_argument("--shots", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res = session_error(a.folder, platform=a.platform, shots=a.shots, seed=a.seed)
    print(f"{res['folder']} ({res['policy']}) on {res['platform']}, {res['shots']} shots per probe, seed {res['seed']}")
    print("| | start | final |\n|---|---|---|")
    for key, label in ROWS:
        print(f"| {label} | {res['start'][key]:.4g} | {res['final'][key]:.4g} |")
    print(f"start / final CZ error: {res['ratio']:.3g}x")
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
