"""Benchmark of the physics engines on one CPU core: µs per 3-level, 20-sample pulse.

Times our numba engine (public API, validation included) at batch 1 and 1024, closed and
Lindblad (T1, T2); the plain NumPy/SciPy reference; QuTiP's piecewise-constant propagator,
``sesolve`` and ``mesolve``; and qiskit-dynamics (jit + vmap) when the extra is installed.
A second table times one transmon with 2 to 6 levels (batch 512, closed and Lindblad)
beside QuTiP's piecewise propagator per sample, so the growth with the level count is
visible. Every figure is the best of several repeats after a warm-up, so JIT compilation is
excluded. Slow engines run on small batches and are normalised per pulse. Before timing,
the fast engine is checked against the reference on the timed batch.

    python -m pulsecal.scripts.bench_physics --out bench_physics.json
"""

from __future__ import annotations

import os

# One core, set before NumPy/numba/JAX load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from pulsecal.envs.physics import Transmon, superoperators, unitaries  # noqa: E402

SAMPLES = 20
TARGETS_US = {  # name -> (row key, µs per pulse)
    "closed, batch 1024": ("numpy closed b1024", 5.0),
    "closed, batch 1": ("numpy closed b1", 30.0),
    "Lindblad, batch 1024": ("numpy lindblad b1024", 30.0),
}


def make_pulses(tr: Transmon, batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 20) waveforms: half DRAG π pulses with random amplitude, β and frame phase,
    half random samples in the unit disc."""
    rng = np.random.default_rng(seed)
    t = (np.arange(SAMPLES) + 0.5) * tr.dt_s
    dur = SAMPLES * tr.dt_s
    sigma = dur / 4
    g = np.exp(-((t - dur / 2) ** 2) / (2 * sigma**2))
    g0 = math.exp(-((dur / 2) ** 2) / (2 * sigma**2))
    shape = (g - g0) / (1 - g0)
    dshape = -(t - dur / 2) / sigma**2 * g / (1 - g0)
    amp = 1.0 / (2 * tr.rabi_max_hz) / (shape.sum() * tr.dt_s)
    beta = -1.0 / (2 * 2 * math.pi * tr.anharmonicity_hz)
    n_drag = batch // 2 + batch % 2
    scale = amp * rng.uniform(0.8, 1.2, (n_drag, 1))
    b = beta * rng.uniform(0.0, 2.0, (n_drag, 1))
    drag = scale * (shape + 1j * b * dshape) * np.exp(1j * rng.uniform(0, 2 * np.pi, (n_drag, 1)))
    r = np.sqrt(rng.uniform(0, 1, (batch - n_drag, SAMPLES)))
    rand = r * np.exp(1j * rng.uniform(0, 2 * np.pi, (batch - n_drag, SAMPLES)))
    w = np.concatenate([drag, rand])
    return w / np.maximum(1.0, np.abs(w))


def best_time(fn: Callable[[], Any], *, repeats: int, inner: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of one call on ``clock``, over ``repeats`` runs of ``inner`` calls each (s)."""
    fn()  # warm-up: JIT compilation, caches
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        best = min(best, (clock() - t0) / inner)
    return best


def qutip_mesolve(tr: Transmon, w: np.ndarray) -> None:
    """QuTiP ``mesolve`` of |0><0| through each pulse, one call per sample (T1, T2)."""
    import qutip

    a = qutip.destroy(tr.levels)
    num = qutip.num(tr.levels)
    h0 = 2 * math.pi * tr.detuning_hz * num + math.pi * tr.anharmonicity_hz * num * (num - 1)
    c_ops = [math.sqrt(1 / tr.t1_s) * a, math.sqrt(2 / tr.tphi_s) * num]
    opts = {"atol": 1e-12, "rtol": 1e-10}
    for row in w:
        rho = qutip.fock_dm(tr.levels, 0)
        for u in row:
            h = h0 + math.pi * tr.rabi_max_hz * (complex(u) * a.dag() + np.conj(u) * a)
            rho = qutip.mesolve(h, rho, [0.0, tr.dt_s], c_ops=c_ops, options=opts).states[-1]


LEVELS = (2, 3, 4, 5, 6)
LEVELS_BATCH = 512


def levels_table(rep: int, quick: bool = False) -> dict[str, Any]:
    """µs per 20-sample pulse of our engine at batch 512 for one transmon with 2..6 levels
    (closed and Lindblad), QuTiP's piecewise propagator per sample beside it, and the
    4-level/3-level ratios of this run. Each level count is checked against the reference
    on part of the timed batch first.

    Timed in CPU time of this (single-threaded) process, which equals wall time on an idle
    core but, unlike it, does not grow when other processes share the cores: the table is
    about how the cost grows with the level count, and the ratios stay readable on a
    busy machine."""
    from pulsecal.envs.physics import engine_qutip

    rows: dict[str, dict[str, float]] = {}
    n_q = 2 if quick else 4
    for levels in LEVELS:
        tr = Transmon(levels=levels, t1_s=50e-6, t2_s=40e-6)
        w = make_pulses(tr, LEVELS_BATCH)
        n_ref = 32
        du = float(np.max(np.abs(unitaries(tr, w[:n_ref])
                                 - unitaries(tr, w[:n_ref], engine="numpy-reference"))))
        ds = float(np.max(np.abs(superoperators(tr, w[:n_ref])
                                 - superoperators(tr, w[:n_ref], engine="numpy-reference"))))
        cpu = time.process_time
        closed = best_time(partial(unitaries, tr, w), repeats=rep, clock=cpu)
        lindblad = best_time(partial(superoperators, tr, w), repeats=rep, clock=cpu)
        wq = w[:n_q]
        q_closed = best_time(partial(engine_qutip.unitaries, tr, wq), repeats=2, clock=cpu)
        q_lind = best_time(partial(engine_qutip.superoperators, tr, wq), repeats=2, clock=cpu)
        rows[str(levels)] = {
            "closed_us_per_pulse": closed / LEVELS_BATCH * 1e6,
            "lindblad_us_per_pulse": lindblad / LEVELS_BATCH * 1e6,
            "qutip_closed_us_per_sample": q_closed / (n_q * SAMPLES) * 1e6,
            "qutip_lindblad_us_per_sample": q_lind / (n_q * SAMPLES) * 1e6,
            "max_abs_dU_vs_reference": du, "max_abs_dS_vs_reference": ds,
        }
        print(f"  timed {levels} levels", flush=True)
    print(f"\nOne transmon, {SAMPLES} samples, batch {LEVELS_BATCH}: CPU µs per pulse (ours) and "
          "per sample (QuTiP piecewise)")
    print(f"{'levels':>6s} {'closed':>10s} {'Lindblad':>10s} {'QuTiP closed':>13s} "
          f"{'QuTiP Lindblad':>15s} {'max|ΔU|':>9s} {'max|ΔS|':>9s}")
    for key, r in rows.items():
        print(f"{key:>6s} {r['closed_us_per_pulse']:10.2f} {r['lindblad_us_per_pulse']:10.2f} "
              f"{r['qutip_closed_us_per_sample']:13.1f} {r['qutip_lindblad_us_per_sample']:15.1f} "
              f"{r['max_abs_dU_vs_reference']:9.1e} {r['max_abs_dS_vs_reference']:9.1e}")
    ratio_closed = rows["4"]["closed_us_per_pulse"] / rows["3"]["closed_us_per_pulse"]
    ratio_lind = rows["4"]["lindblad_us_per_pulse"] / rows["3"]["lindblad_us_per_pulse"]
    print(f"4 levels / 3 levels, this run: closed {ratio_closed:.2f}x, Lindblad {ratio_lind:.2f}x "
          "(target <= 3x)")
    return {"batch": LEVELS_BATCH, "rows": rows, "ratio_4_to_3_closed": ratio_closed,
            "ratio_4_to_3_lindblad": ratio_lind}


def run(out: Path, quick: bool = False) -> dict[str, Any]:
    from pulsecal.envs.physics import engine_qutip

    tr = Transmon(levels=3, t1_s=50e-6, t2_s=40e-6)
    big = 1024
    w_big = make_pulses(tr, big)
    w_one = w_big[:1]
    rep = 3 if quick else 7
    rows: dict[str, dict[str, Any]] = {}

    def add(key: str, seconds: float, batch: int, note: str) -> None:
        rows[key] = {"us_per_pulse": seconds / batch * 1e6, "batch": batch, "what": note}
        print(f"  timed {key:<34s} {seconds / batch * 1e6:12.2f} µs/pulse", flush=True)

    print(f"Transmon: {tr}\n3 levels, {SAMPLES} samples per pulse, one core.", flush=True)

    # Correctness on the timed batches before any timing.
    u_fast = unitaries(tr, w_big)
    u_ref = unitaries(tr, w_big, engine="numpy-reference")
    du = float(np.max(np.abs(u_fast - u_ref)))
    n_open_ref = 64
    s_fast = superoperators(tr, w_big)
    s_ref = superoperators(tr, w_big[:n_open_ref], engine="numpy-reference")
    ds = float(np.max(np.abs(s_fast[:n_open_ref] - s_ref)))
    print(f"max |ΔU| fast vs reference over {big} pulses: {du:.2e}")
    print(f"max |ΔS| fast vs reference over {n_open_ref} pulses: {ds:.2e}", flush=True)

    add("numpy closed b1", best_time(lambda: unitaries(tr, w_one), repeats=rep, inner=200), 1,
        "our engine, public unitaries(), batch 1")
    add("numpy closed b1024", best_time(lambda: unitaries(tr, w_big), repeats=rep, inner=5), big,
        "our engine, public unitaries(), batch 1024")
    add("numpy lindblad b1", best_time(lambda: superoperators(tr, w_one), repeats=rep, inner=50),
        1, "our engine, public superoperators(), batch 1")
    add("numpy lindblad b1024", best_time(lambda: superoperators(tr, w_big), repeats=rep), big,
        "our engine, public superoperators(), batch 1024")
    add("numpy-reference closed b1024",
        best_time(lambda: unitaries(tr, w_big, engine="numpy-reference"), repeats=3), big,
        "batched numpy eigh per sample, batch 1024")
    w64 = w_big[:64]
    add("numpy-reference lindblad b64",
        best_time(lambda: superoperators(tr, w64, engine="numpy-reference"), repeats=2), 64,
        "scipy expm per sample, batch 64")

    n_q = 4 if quick else 8
    wq = w_big[:n_q]
    add("qutip piecewise closed", best_time(lambda: engine_qutip.unitaries(tr, wq), repeats=2),
        n_q, f"Qobj.expm per sample, batch {n_q}")
    add("qutip piecewise lindblad",
        best_time(lambda: engine_qutip.superoperators(tr, wq[:4]), repeats=2), 4,
        "liouvillian + expm per sample, batch 4")
    add("qutip sesolve closed",
        best_time(lambda: engine_qutip.unitaries_sesolve(tr, wq[:2]), repeats=2), 2,
        "sesolve (adams) per sample on the 3x3 identity, batch 2")
    add("qutip mesolve lindblad", best_time(lambda: qutip_mesolve(tr, wq[:2]), repeats=2), 2,
        "mesolve of |0><0| per sample, batch 2")

    dyn_note = "not installed"
    if importlib.util.find_spec("qiskit_dynamics") is not None:
        from pulsecal.envs.physics import engine_dynamics

        n_d = 64
        wd = w_big[:n_d]
        add("qiskit-dynamics closed", best_time(lambda: engine_dynamics.unitaries(tr, wd),
                                                repeats=3), n_d,
            f"Solver jax_expm, jit(vmap) over batch {n_d}, compile excluded")
        add("qiskit-dynamics lindblad",
            best_time(lambda: engine_dynamics.superoperators(tr, wd), repeats=3), n_d,
            f"vectorized Lindblad jax_expm, jit(vmap) over batch {n_d}, compile excluded")
        dyn_note = f"batch {n_d}, jit(vmap), compile excluded"

    base_closed = rows["qutip piecewise closed"]["us_per_pulse"]
    base_open = rows["qutip piecewise lindblad"]["us_per_pulse"]
    print(f"\n{'engine':<34s} {'µs/pulse':>12s} {'vs QuTiP piecewise':>20s}  what")
    for key, row in rows.items():
        base = base_open if ("lindblad" in key or "mesolve" in key) else base_closed
        row["speedup_vs_qutip_piecewise"] = base / row["us_per_pulse"]
        print(f"{key:<34s} {row['us_per_pulse']:12.2f} {row['speedup_vs_qutip_piecewise']:19.1f}x"
              f"  {row['what']}")
    print()
    targets = {}
    for name, (key, limit) in TARGETS_US.items():
        got = rows[key]["us_per_pulse"]
        met = got <= limit
        targets[name] = {"limit_us": limit, "us_per_pulse": got, "met": met}
        print(f"target met: {'yes' if met else 'no '}  {name}: {got:.2f} µs <= {limit:.0f} µs")
    levels = levels_table(rep, quick)
    result = {
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "machine": platform.machine(), "threads": 1},
        "levels": 3, "samples": SAMPLES, "transmon": repr(tr),
        "max_abs_dU_fast_vs_reference": du, "max_abs_dS_fast_vs_reference": ds,
        "qiskit_dynamics": dyn_note, "rows": rows, "targets": targets,
        "levels_table": levels,
    }
    from pulsecal.agents.pipelines import bench_coupled

    result["two_qubit"] = bench_coupled.run(quick=quick)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_physics.json"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick)

