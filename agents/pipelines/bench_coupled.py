"""Two-qubit section of the physics benchmark: the coupled-model engine against QuTiP,
dynamiqs and qiskit-dynamics on one core, in one run (ratios are what to read).

Two transmons × 3 levels (a flux-tunable q0 at 6 GHz, a fixed q1 at 5 GHz, J = 12 MHz):
- a 60-sample flux pulse at 1 ns, batch 256, a flat top (5-sample cosine ramps around 50
  equal samples, which the engine propagates as one run): closed unitaries and Lindblad superoperators
  of our engine against QuTiP's piecewise propagator (per-sample ``(-1j*H*dt).expm()``
  products and ``(liouvillian(H, c_ops)*dt).expm()``);
- the same rows for a smooth 60-sample flux pulse (a raised cosine, every sample different:
  no runs, one exponential per sample), the engine's general path;
- measurement simulation: populations after the flux pulse from |00⟩ (what a device needs
  per shot batch: ``propagate.evolve_states``) against QuTiP ``mesolve`` per sample,
  dynamiqs ``mesolve`` (Tsit5, batched) and qiskit-dynamics (jax_expm, jit + vmap),
  both on JAX with compile time excluded;
- a 300-sample cross-resonance pulse (CR tone on q0's line at q1's frame plus q1's own
  cancellation tone: one frequency, one exponential per sample or per run of equal samples;
  20-sample linear ramps around a 260-sample flat top) and the same with a drive at q0's
  frame too (two frequencies: CF4 substeps, no runs); a Lindblad 300-sample Gaussian square
  (16-sample Gaussian edges, σ = 8 samples, as the CR env's ECR halves);
- a table of cost against total dimension (1 to 3 modes, 2 to 5 levels) beside QuTiP's.
Before timing, our engine is checked against the reference and QuTiP on the timed pulses.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pulsecal.envs.physics.coupled import CoupledModel, Coupling, FluxTuning, Mode
from pulsecal.envs.physics.coupled import propagate as prop
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.controls import check_pulse
from pulsecal.envs.physics.coupled.model import compile_model
from pulsecal.envs.physics.coupled.operators import OperatorModel

BATCH = 256
FLUX_SAMPLES = 60
CR_SAMPLES = 300
TARGETS = {  # name -> (row, baseline row, least speed-up)
    "closed flux pulse vs QuTiP piecewise": ("numpy closed flux b256", "qutip piecewise closed flux", 150.0),
    "Lindblad flux pulse vs QuTiP piecewise": ("numpy lindblad flux b256", "qutip piecewise lindblad flux", 100.0),
    "measurement vs QuTiP mesolve": ("numpy measure flux b256", "qutip mesolve measure flux", 1000.0),
    "measurement vs dynamiqs": ("numpy measure flux b256", "dynamiqs measure flux b256", 3.0),
    "measurement vs qiskit-dynamics": ("numpy measure flux b256", "qiskit-dynamics measure flux b256", 3.0),
    "closed flux pulse vs qiskit-dynamics": ("numpy closed flux b256", "qiskit-dynamics closed flux b256", 3.0),
}


def cz_model() -> CoupledModel:
    return CoupledModel((
        Mode("q0", 6.0e9, -220e6, t1_s=30e-6, t2_s=25e-6, thermal_population=0.01, rabi_max_hz=60e6,
             flux=FluxTuning(asymmetry=0.2)),
        Mode("q1", 5.0e9, -240e6, t1_s=40e-6, t2_s=35e-6, thermal_population=0.01, rabi_max_hz=60e6),
    ), (Coupling("q0", "q1", 12e6),))


def flux_pulses(batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 60) flat-top flux offsets with 5-sample cosine ramps, random heights."""
    rng = np.random.default_rng(seed)
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(5) + 0.5) / 5))
    shape = np.concatenate([ramp, np.ones(FLUX_SAMPLES - 10), ramp[::-1]])
    return rng.uniform(0.2, 0.35, (batch, 1)) * shape


def smooth_flux_pulses(batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 60) raised-cosine flux offsets, random heights: every sample differs (no runs;
    sampled off-centre, since a symmetric sampling repeats the two samples at the peak)."""
    rng = np.random.default_rng(seed)
    shape = np.sin(np.pi * (np.arange(FLUX_SAMPLES) + 0.25) / FLUX_SAMPLES) ** 2
    return rng.uniform(0.2, 0.35, (batch, 1)) * shape


def gaussian_square(n: int, rise: int) -> np.ndarray:
    """(n,) unit flat top with Gaussian edges of ``rise`` samples (σ = rise/2)."""
    t = np.arange(n) + 0.5
    w = np.ones(n)
    lead, tail = t < rise, t > n - rise
    w[lead] = np.exp(-0.5 * ((t[lead] - rise) / (rise / 2)) ** 2)
    w[tail] = np.exp(-0.5 * ((t[tail] - (n - rise)) / (rise / 2)) ** 2)
    return w


def best_time(fn: Callable[[], Any], *, repeats: int) -> float:
    """Best wall time of one call over ``repeats`` (s), after a warm-up (JIT compiles)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# -- QuTiP baselines, built from qutip objects -----------------------------------------------


def _qutip_ops(om: OperatorModel) -> tuple[Any, dict[str, Any], list[Any]]:
    import qutip

    dims = [list(om.dims), list(om.dims)]
    h0 = qutip.Qobj(om.h_static, dims=dims)
    ops = {n: qutip.Qobj(r.operator, dims=dims) for n, r in om.reals.items()}
    for n, c in om.drives.items():
        ops[n] = qutip.Qobj(c.raising, dims=dims)
    c_ops = [qutip.Qobj(c, dims=dims) for c in om.collapse]
    return h0, ops, c_ops


def _qutip_hamiltonians(om: OperatorModel, controls: dict[str, np.ndarray], b: int) -> list[Any]:
    """Per-sample Qobj Hamiltonians of row b (a one-frequency pulse: exact per sample)."""
    pulse = check_pulse(om, controls)
    f_ref, n_sub = ref.substeps(om, pulse)
    assert n_sub == 1, "the QuTiP baselines are for one-frequency pulses"
    import qutip

    h0, ops, _ = _qutip_ops(om)
    h0 = qutip.Qobj(om.static_in_frame(f_ref), dims=h0.dims)
    out = []
    for k in range(pulse.n_samples):
        h = h0
        for n, x in pulse.reals.items():
            h = h + float(x[b, k]) * ops[n]
        for n, u in pulse.drives.items():
            v = complex(u[b, k])
            if v != 0:
                h = h + v * ops[n] + np.conj(v) * ops[n].dag()
        out.append(h)
    return out


def qutip_piecewise(om: OperatorModel, controls: dict[str, np.ndarray], rows: int, open_system: bool) -> None:
    import qutip

    _, _, c_ops = _qutip_ops(om)
    for b in range(rows):
        acc = None
        for h in _qutip_hamiltonians(om, controls, b):
            step = (qutip.liouvillian(h, c_ops) * om.dt_s).expm() if open_system else (-1j * h * om.dt_s).expm()
            acc = step if acc is None else step * acc


def qutip_mesolve(om: OperatorModel, controls: dict[str, np.ndarray], rows: int, rho0: Any) -> list[np.ndarray]:
    """Populations from ``rho0`` by ``mesolve`` once per sample (tight tolerances)."""
    import qutip

    _, _, c_ops = _qutip_ops(om)
    opts = {"atol": 1e-10, "rtol": 1e-9}
    out = []
    for b in range(rows):
        rho = rho0
        for h in _qutip_hamiltonians(om, controls, b):
            rho = qutip.mesolve(h, rho, [0.0, om.dt_s], c_ops=c_ops, options=opts).states[-1]
        out.append(np.real(np.diag(rho.full())))
    return out


# -- JAX baselines -----------------------------------------------------------------------------


_NS = 1e-9


def dynamiqs_measure(om: OperatorModel, flux: np.ndarray, name: str, rho0: np.ndarray) -> Callable[[], np.ndarray]:
    """dynamiqs mesolve of ``rho0`` through a batch of flux pulses, batched over the pulses;
    returns a callable that runs it. Tsit5 at rtol 1e-8, atol 1e-10: in this run's
    preparation dynamiqs' Expm method (exact for piecewise-constant H) was ~20× slower."""
    import dynamiqs as dq
    import jax.numpy as jnp

    dq.set_precision("double")
    x = np.asarray(check_pulse(om, {name: flux}).reals[name]) * _NS
    times = np.arange(flux.shape[1] + 1) * om.dt_s / _NS
    h = dq.constant(jnp.asarray(om.h_static * _NS)) + dq.pwc(times, x, jnp.asarray(om.reals[name].operator))
    jumps = [jnp.asarray(c * math.sqrt(_NS)) for c in om.collapse]
    rho = jnp.asarray(rho0)

    def run() -> np.ndarray:
        res = dq.mesolve(h, jumps, rho, [0.0, times[-1]], method=dq.method.Tsit5(rtol=1e-8, atol=1e-10),
                         progress_meter=False)
        return np.asarray(res.states.to_jax()[..., -1, :, :]).diagonal(axis1=-2, axis2=-1).real

    return run


def dynamics_measure(om: OperatorModel, flux: np.ndarray, name: str, rho0: np.ndarray | None,
                     open_system: bool) -> Callable[[], np.ndarray]:
    """qiskit-dynamics jax_expm (one step per sample), jit(vmap) over the pulses: final
    populations from ``rho0`` (open) or unitaries (closed, rho0 None)."""
    import jax
    from qiskit_dynamics import DiscreteSignal, Solver

    jax.config.update("jax_enable_x64", True)
    dt_ns = om.dt_s / _NS
    solver = Solver(static_hamiltonian=om.h_static * _NS, hamiltonian_operators=[om.reals[name].operator * _NS],
                    static_dissipators=[c * math.sqrt(_NS) for c in om.collapse] if open_system else None,
                    array_library="jax", vectorized=True if open_system else None)
    t_span = np.array([0.0, flux.shape[1] * dt_ns])
    d = om.dimension
    # Vectorized Lindblad: y is vec(ρ), column stacking, so ρ[i, i] sits at i·(D + 1).
    y0 = rho0.reshape(-1, order="F") if rho0 is not None else np.eye(d, dtype=complex)

    def one(samples: Any) -> Any:
        sig = [DiscreteSignal(dt=dt_ns, samples=samples)]
        res = solver.solve(t_span=t_span, y0=y0, signals=(sig, None) if open_system else sig,
                           method="jax_expm", max_dt=dt_ns)
        return res.y[-1]

    fn = jax.jit(jax.vmap(one))
    x = np.asarray(check_pulse(om, {name: flux}).reals[name])

    def run() -> np.ndarray:
        out = np.asarray(fn(x))
        return out[:, :: d + 1].real if open_system else out

    return run


# -- the section ------------------------------------------------------------------------------


def cpu_ratios(model: CoupledModel, om: OperatorModel, c_flux: dict[str, np.ndarray], rho00: np.ndarray,
               rep: int) -> dict[str, float]:
    """The Lindblad and measurement rows again in CPU time of this (single-threaded)
    process, ours against QuTiP's (piecewise Liouvillian expm; ``mesolve`` per sample) in
    the same run: on a shared machine a long QuTiP call is stretched by other processes in
    wall time far more than our short ones, so the wall ratios above move with the load
    (µs per pulse, and the ratios)."""
    import qutip

    def cpu_best(fn: Callable[[], Any], repeats: int) -> float:
        fn()
        best = math.inf
        for _ in range(repeats):
            c0 = time.process_time()
            fn()
            best = min(best, time.process_time() - c0)
        return best

    n = next(iter(c_flux.values())).shape[0]
    flux1 = {k: v[:1] for k, v in c_flux.items()}
    rho_q = qutip.Qobj(rho00, dims=[list(om.dims)] * 2)
    out = {
        "ours lindblad": cpu_best(lambda: prop.superoperators(model, c_flux), rep) / n * 1e6,
        "qutip piecewise lindblad": cpu_best(lambda: qutip_piecewise(om, flux1, 1, True), 2) * 1e6,
        "ours measure": cpu_best(lambda: prop.evolve_states(model, [c_flux], rho00, populations=True), rep) / n * 1e6,
        "qutip mesolve measure": cpu_best(lambda: qutip_mesolve(om, flux1, 1, rho_q), 2) * 1e6,
    }
    out["lindblad ratio"] = out["qutip piecewise lindblad"] / out["ours lindblad"]
    out["measure ratio"] = out["qutip mesolve measure"] / out["ours measure"]
    print(f"\nCPU time, flat-top flux pulse, batch {n} (µs/pulse): Lindblad ours {out['ours lindblad']:,.1f} vs "
          f"QuTiP {out['qutip piecewise lindblad']:,.0f} = {out['lindblad ratio']:,.0f}x (target >= 100x); "
          f"measurement ours {out['ours measure']:,.1f} vs QuTiP mesolve {out['qutip mesolve measure']:,.0f} = "
          f"{out['measure ratio']:,.0f}x (target >= 1000x)", flush=True)
    return out


def device_rows(rep: int) -> dict[str, float]:
    """µs per sequence of the CZ env's eight probes through ``SimulatedMultiQubitDevice``
    (two_transmons_cz, Lindblad, 2 × 3 levels): ``outcome_probabilities`` for a new gate each
    call on one truth (the env's step: its single-qubit pulses are built once), on a fresh
    truth each call (nothing cached), and by the device's unfactored path (one engine call
    per sequence, every segment propagated where it is), with the largest difference."""
    from pulsecal.envs import cz_calibration_core as cz
    from pulsecal.envs import multi_qubit_device as mqd
    from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device

    pulse = cz.CZPulse()
    gates = iter(np.linspace(0.15, 0.25, 4 * rep + 8))

    def probes() -> list[Any]:
        return cz.probe_sequences(pulse, np.array([next(gates), 40e-9, 0.3, -0.5]), 3)

    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0))
    seqs = probes()
    cached = dev.outcome_probabilities(seqs)

    def unfactored(seqs: list[Any]) -> list[np.ndarray]:
        out = []
        for seq in seqs:
            sched = dev._schedule(seq, "sequence")
            _, om = dev._subsystem(sched)
            rho = mqd._propagate_segments(om, dev._initial_state(om)[None], sched.segments, True)
            out.append(np.real(np.diagonal(rho[0])))
        return out

    pops = [dev._populations(dev._schedule(q, "sequence"), q)[2][0] for q in seqs]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(pops, unfactored(seqs), strict=True))
    n = len(seqs)
    same = best_time(lambda: dev.outcome_probabilities(probes()), repeats=rep) / n
    fresh = best_time(lambda: make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0))
                      .outcome_probabilities(probes()), repeats=rep) / n
    old = best_time(lambda: unfactored(probes()), repeats=max(1, rep // 2)) / n
    assert cached.shape[0] == n
    return {"same truth": same * 1e6, "fresh truth": fresh * 1e6, "unfactored": old * 1e6, "max |Δp|": diff}


def _dimension_models() -> list[tuple[str, CoupledModel]]:
    out = []
    for n_modes, levels in [(1, 2), (1, 3), (1, 4), (1, 5), (2, 2), (2, 3), (2, 4), (2, 5), (3, 2), (3, 3)]:
        modes = tuple(Mode(f"q{i}", 5.0e9 + 0.3e9 * i, -250e6, levels=levels, t1_s=40e-6, t2_s=30e-6)
                      for i in range(n_modes))
        couplings = tuple(Coupling(f"q{i}", f"q{i + 1}", 5e6) for i in range(n_modes - 1))
        out.append((f"{n_modes}x{levels}", CoupledModel(modes, couplings)))
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Time every row; return {rows, targets, checks, dimension table}. Prints as it goes."""
    model = cz_model()
    om = compile_model(model)
    rep = 2 if quick else 5
    batch = 32 if quick else BATCH
    n_q = 1 if quick else 2
    flux = flux_pulses(batch)
    c_flux = {"flux:q0": flux}
    rows: dict[str, dict[str, Any]] = {}

    def add(key: str, seconds: float, n: int, note: str) -> None:
        rows[key] = {"us_per_pulse": seconds / n * 1e6, "batch": n, "what": note}
        print(f"  timed {key:<40s} {seconds / n * 1e6:12.2f} µs/pulse", flush=True)

    print(f"\nTwo transmons × 3 levels, flux pulse {FLUX_SAMPLES} samples at 1 ns, batch {batch}.", flush=True)
    checks: dict[str, float] = {}
    u_fast = prop.unitaries(model, c_flux)
    checks["closed flux: max |ΔU| vs reference"] = float(np.abs(u_fast[:16] - ref.unitaries(model, {"flux:q0": flux[:16]})).max())
    s_fast = prop.superoperators(model, c_flux)
    checks["Lindblad flux: max |ΔS| vs reference"] = float(
        np.abs(s_fast[:4] - ref.superoperators(model, {"flux:q0": flux[:4]})).max())
    import qutip

    d = model.dimension
    rho00 = np.zeros((d, d), dtype=complex)
    rho00[0, 0] = 1.0
    pops = prop.evolve_states(model, [c_flux], rho00, populations=True)
    q_pops = qutip_mesolve(om, {"flux:q0": flux[:1]}, 1, qutip.Qobj(rho00, dims=[list(om.dims)] * 2))
    checks["measurement: max |Δp| vs QuTiP mesolve"] = float(np.abs(pops[0] - q_pops[0]).max())
    for k, v in checks.items():
        print(f"  check {k}: {v:.2e}", flush=True)

    add("numpy closed flux b256", best_time(lambda: prop.unitaries(model, c_flux), repeats=rep), batch,
        "flat top; our engine, unitaries(), excitation-number blocks")
    add("numpy lindblad flux b256", best_time(lambda: prop.superoperators(model, c_flux), repeats=rep), batch,
        "flat top; our engine, superoperators(), coherence-order blocks")
    add("numpy measure flux b256",
        best_time(lambda: prop.evolve_states(model, [c_flux], rho00, populations=True), repeats=rep), batch,
        "flat top; our engine, evolve_states() from |00>, populations")
    c_smooth = {"flux:q0": smooth_flux_pulses(batch)}
    checks["smooth flux: max |ΔS| vs reference"] = float(np.abs(
        prop.superoperators(model, {"flux:q0": c_smooth["flux:q0"][:2]})
        - ref.superoperators(model, {"flux:q0": c_smooth["flux:q0"][:2]})).max())
    print(f"  check smooth flux: max |ΔS| vs reference: {checks['smooth flux: max |ΔS| vs reference']:.2e}")
    add("numpy closed flux smooth b256", best_time(lambda: prop.unitaries(model, c_smooth), repeats=rep), batch,
        "raised cosine, no runs; unitaries()")
    add("numpy lindblad flux smooth b256", best_time(lambda: prop.superoperators(model, c_smooth), repeats=rep),
        batch, "raised cosine, no runs; superoperators()")
    add("numpy measure flux smooth b256",
        best_time(lambda: prop.evolve_states(model, [c_smooth], rho00, populations=True), repeats=rep), batch,
        "raised cosine, no runs; evolve_states() from |00>")
    add("numpy-reference closed flux", best_time(lambda: ref.unitaries(model, {"flux:q0": flux[:8]}), repeats=2), 8,
        "scipy expm per sample, batch 8")
    add("qutip piecewise closed flux", best_time(lambda: qutip_piecewise(om, {"flux:q0": flux[:n_q]}, n_q, False),
                                                 repeats=2), n_q, f"Qobj.expm per sample, batch {n_q}")
    add("qutip piecewise lindblad flux", best_time(lambda: qutip_piecewise(om, {"flux:q0": flux[:1]}, 1, True),
                                                   repeats=2), 1, "liouvillian(H, c_ops).expm() per sample, batch 1")
    rho_q = qutip.Qobj(rho00, dims=[list(om.dims)] * 2)
    add("qutip mesolve measure flux", best_time(lambda: qutip_mesolve(om, {"flux:q0": flux[:1]}, 1, rho_q),
                                                repeats=1), 1, "mesolve per sample from |00>, batch 1")
    if importlib.util.find_spec("dynamiqs") is not None:
        run_dq = dynamiqs_measure(om, flux, "flux:q0", rho00)
        checks["measurement: max |Δp| dynamiqs vs ours"] = float(np.abs(run_dq() - pops).max())
        add("dynamiqs measure flux b256", best_time(run_dq, repeats=1), batch,
            "dynamiqs mesolve Tsit5, batched, compile excluded")
    if importlib.util.find_spec("qiskit_dynamics") is not None:
        run_qd = dynamics_measure(om, flux, "flux:q0", rho00, True)
        checks["measurement: max |Δp| qiskit-dynamics vs ours"] = float(np.abs(run_qd() - pops).max())
        # One repeat: at ~0.2 s per pulse this row alone would dominate make bench.
        add("qiskit-dynamics measure flux b256", best_time(run_qd, repeats=1), batch,
            "jax_expm, jit(vmap), compile excluded")
        run_qu = dynamics_measure(om, flux, "flux:q0", None, False)
        checks["closed flux: max |ΔU| qiskit-dynamics vs ours"] = float(np.abs(run_qu() - u_fast).max())
        add("qiskit-dynamics closed flux b256", best_time(run_qu, repeats=rep), batch,
            "jax_expm, jit(vmap), compile excluded")

    # Cross-resonance, 300 samples: CR + cancellation (one frame), then a q0-frame tone too.
    rng = np.random.default_rng(1)
    n_cr = 16 if quick else 64
    t = np.arange(CR_SAMPLES)
    env = np.minimum(1.0, np.minimum(t + 0.5, CR_SAMPLES - t - 0.5) / 20.0)
    amp = rng.uniform(0.3, 0.6, (n_cr, 1)) * env
    cr = {"drive:q0@q1": amp, "drive:q1": -0.1 * amp * np.exp(1j * rng.uniform(0, 2 * np.pi, (n_cr, 1)))}
    cr2 = dict(cr, **{"drive:q0": 0.05 * amp})
    k2 = ref.substeps(om, check_pulse(om, cr2))[1]
    checks["CR one frequency: max |ΔU| vs reference"] = float(
        np.abs(prop.unitaries(model, cr)[:2] - ref.unitaries(model, {k: v[:2] for k, v in cr.items()})).max())
    add("numpy closed CR300 b64", best_time(lambda: prop.unitaries(model, cr), repeats=rep), n_cr,
        "one frame, linear-ramp square: one exponential per run")
    cr4 = {k: v[:4] for k, v in cr.items()}
    cr2_4 = {k: v[:4] for k, v in cr2.items()}
    add("numpy lindblad CR300 b4", best_time(lambda: prop.superoperators(model, cr4), repeats=1), 4,
        "one frame, linear-ramp square, dense 81-state block, batch 4")
    gs = rng.uniform(0.3, 0.6, (4, 1)) * gaussian_square(CR_SAMPLES, 16)
    cr_gs = {"drive:q0@q1": gs, "drive:q1": -0.1 * gs * np.exp(1j * rng.uniform(0, 2 * np.pi, (4, 1)))}
    checks["Lindblad CR Gaussian square: max |ΔS| vs reference"] = float(np.abs(
        prop.superoperators(model, {k: v[:1] for k, v in cr_gs.items()})
        - ref.superoperators(model, {k: v[:1] for k, v in cr_gs.items()})).max())
    print(f"  check Lindblad CR Gaussian square: max |ΔS| vs reference: "
          f"{checks['Lindblad CR Gaussian square: max |ΔS| vs reference']:.2e}")
    add("numpy lindblad CR300 gaussian-square b4", best_time(lambda: prop.superoperators(model, cr_gs), repeats=1), 4,
        "one frame, 16-sample Gaussian edges, dense 81-state block, batch 4")
    add("qutip piecewise closed CR300", best_time(lambda: qutip_piecewise(om, {k: v[:1] for k, v in cr.items()}, 1,
                                                                          False), repeats=1), 1, "batch 1")
    add("numpy closed CR300 two frames b4", best_time(lambda: prop.unitaries(model, cr2_4), repeats=1), 4,
        f"q0 and q1 frames together: {k2} CF4 substeps per sample, batch 4")

    cpu = cpu_ratios(model, om, c_flux, rho00, rep)
    dev_rows = device_rows(rep)
    print("\nCZ env probes through SimulatedMultiQubitDevice (Lindblad), µs per sequence: "
          f"new gate on one truth {dev_rows['same truth']:,.0f}, fresh truth {dev_rows['fresh truth']:,.0f}, "
          f"unfactored path {dev_rows['unfactored']:,.0f} "
          f"({dev_rows['unfactored'] / dev_rows['same truth']:.1f}x, max |Δp| {dev_rows['max |Δp|']:.1e})",
          flush=True)

    print("\ncost against total dimension: driven 20-sample pulse (drive:q0), batch 16, µs/pulse")
    table = []
    nb = 16
    w = 0.4 * np.exp(1j * np.linspace(0, 3, 20))[None, :] * np.ones((nb, 1))
    c = {"drive:q0": w}
    for label, m in _dimension_models():
        mom = compile_model(m)
        row: dict[str, Any] = {"model": label, "dimension": m.dimension}
        one = {"drive:q0": w[:1]}
        row["numpy closed"] = best_time(functools.partial(prop.unitaries, m, c), repeats=2) / nb * 1e6
        row["qutip closed"] = best_time(functools.partial(qutip_piecewise, mom, one, 1, False), repeats=1) * 1e6
        if m.dimension <= 9:
            row["numpy lindblad"] = best_time(functools.partial(prop.superoperators, m, c), repeats=1) / nb * 1e6
            row["qutip lindblad"] = best_time(functools.partial(qutip_piecewise, mom, one, 1, True), repeats=1) * 1e6
        table.append(row)
        print(f"  {label:>4s} D={m.dimension:<3d} closed {row['numpy closed']:10.1f} (QuTiP {row['qutip closed']:10.1f})"
              + (f"   Lindblad {row['numpy lindblad']:10.1f} (QuTiP {row['qutip lindblad']:10.1f})"
                 if "numpy lindblad" in row else ""), flush=True)

    base = {"closed": rows["qutip piecewise closed flux"]["us_per_pulse"],
            "lindblad": rows["qutip piecewise lindblad flux"]["us_per_pulse"],
            "measure": rows["qutip mesolve measure flux"]["us_per_pulse"]}
    print(f"\n{'two-qubit row':<40s} {'µs/pulse':>12s} {'vs QuTiP':>10s}  what")
    for key, r in rows.items():
        kind = "measure" if "measure" in key else ("lindblad" if "lindblad" in key else "closed")
        if "CR300" in key:
            b = rows["qutip piecewise closed CR300"]["us_per_pulse"] if kind == "closed" else math.nan
        else:
            b = base[kind]
        r["speedup_vs_qutip"] = b / r["us_per_pulse"]
        print(f"{key:<40s} {r['us_per_pulse']:12.2f} {r['speedup_vs_qutip']:9.1f}x  {r['what']}")
    targets = {}
    for name, (key, against, least) in TARGETS.items():
        if key not in rows or against not in rows:
            continue
        ratio = rows[against]["us_per_pulse"] / rows[key]["us_per_pulse"]
        met = ratio >= least
        targets[name] = {"ratio": ratio, "least": least, "met": met}
        print(f"target met: {'yes' if met else 'no '}  {name}: {ratio:.1f}x (target >= {least:g}x)")
    return {"model": repr(model), "batch": batch, "flux_samples": FLUX_SAMPLES, "cr_samples": CR_SAMPLES,
            "cr_two_frame_substeps": k2, "checks": checks, "rows": rows, "targets": targets,
            "device_probes_us_per_sequence": dev_rows, "dimension_table": table, "cpu_ratios": cpu}
