"""The three benchmarks: rows of results for baselines and agents on the same devices.

- **calibration** (20 ns DRAG gate from the default miscalibration): every method gets
  the same devices (``presets.held_out_devices(n_devices, seed)``, or the ``realistic`` /
  ``stress`` set ``settings.device_set`` names: ``calibration_devices``), the same starting
  parameters and the same shot budget; each row holds the final infidelity, its ratio to
  the coherence limit, leakage, shots (as reported and as the device counted them) and
  wall time. The configured baselines run in joblib chunks; agents play the registered
  env with ``reset(options=...)`` fixing the device and the start, so they face the
  identical scenario.
- **pulse shaping** (6 ns X gate on ``transmon_short``): the calibrated DRAG pulse, the
  GRAPE model optimum, and agents.
- **drift tracking** (24 h on ``transmon_drifting``): one baseline rerun on a schedule
  (and never, for scale) against agents; time-averaged error (gate infidelity + a
  circuit's frame error from the residual detuning, as DriftTracking-v0 defines it) and
  shots spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from pulsecal.agents.baselines import (
    Baseline,
    calibrated_drag,
    grape,
    miscalibrated_start,
    run_within_limits,
)
from pulsecal.agents.pinned_env import make_pinned
from pulsecal.envs.amplitude_limit import AmplitudeLimit
from pulsecal.envs.calibration import (
    CalibrationTask,
    DragGate,
    DragParams,
    true_metrics_devices,
)
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.presets import get_preset, held_out_devices, realistic_held_out_devices
from pulsecal.envs.protocol import Device
from pulsecal.envs.stress import StressSpec, TLSDevice, stress_devices
from pulsecal.hardware.policy import Policy

from .settings import DRIFT_MISCALIBRATION, AgentSpec, EvaluationSettings, drift_device_sampler

FloatArray = NDArray[np.float64]


def _progress(it: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


def _device_shots(dev: Any) -> int:
    """Shots a static simulated device ran, read off its clock (it ticks rep_time per shot)."""
    if isinstance(dev, SimulatedDevice | TLSDevice):
        return round(dev.clock_s / dev.current_params().rep_time_s)
    return -1


def _row(task: str, method: str, budget: int, device: int, metrics: Mapping[str, float], shots: int,
         device_shots: int, wall: float, gate_duration_s: float = math.nan,
         limits: Mapping[str, Mapping[str, Any]] | None = None, limit_failure: str | None = None) -> dict[str, Any]:
    """One results row. ``gate_duration_s`` is the gate the device ended at (its ratio is to
    the coherence limit at that duration), ``clipped`` how many times a bound brought a
    parameter back (``limits``), ``limit_failure`` why it could not be calibrated within
    the limits ("" if it could)."""
    inf = float(metrics["infidelity"])
    cl = float(metrics["coherence_limit"])
    return {"task": task, "method": method, "budget": int(budget), "device": int(device),
            "infidelity": inf, "coherence_limit": cl, "ratio": inf / cl if cl > 0 else math.nan,
            "leakage": float(metrics["leakage"]), "shots_used": int(shots), "device_shots": int(device_shots),
            "wall_time_s": float(wall), "gate_duration_s": float(gate_duration_s),
            "clipped": int(sum(int(e["count"]) for e in (limits or {}).values())),
            "limit_failure": limit_failure or ""}


CalibrationDevice: TypeAlias = DeviceParams | StressSpec


def calibration_devices(settings: EvaluationSettings) -> tuple[CalibrationDevice, ...]:
    """The calibration benchmark's devices: ``settings.device_set`` with (n_devices, seed)."""
    if settings.device_set == "realistic":
        return realistic_held_out_devices(settings.n_devices, settings.seed)
    if settings.device_set == "stress":
        return stress_devices(settings.n_devices, settings.seed)
    return held_out_devices(settings.n_devices, settings.seed)


def _batch_group(spec: CalibrationDevice) -> tuple[str, int]:
    """Devices of one group share a ``CalibrationTask`` (one device class, one level count)."""
    return spec.group if isinstance(spec, StressSpec) else ("plain", spec.transmon.levels)


def _chunks(devices: Sequence[CalibrationDevice], size: int) -> list[list[int]]:
    """Device indices in chunks of at most ``size``, each within one ``_batch_group``."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, d in enumerate(devices):
        groups.setdefault(_batch_group(d), []).append(i)
    return [idx[s:s + size] for idx in groups.values() for s in range(0, len(idx), size)]


def _calibration_device(seed: int, i: int, params: CalibrationDevice) -> Device:
    # Each (method, budget) gets a fresh copy of device i with the same seed.
    rng = np.random.default_rng([seed, i, 1])
    if isinstance(params, StressSpec):
        return params.make(rng)
    return SimulatedDevice(params, rng=rng)


def _calibration_start(settings: EvaluationSettings, seed: int, i: int, dev: Any) -> FloatArray:
    return miscalibrated_start(dev, settings.gate_duration_s, np.random.default_rng([seed, i, 2]),
                               settings.miscalibration)


# -- calibration ------------------------------------------------------------------------------


def _baseline_chunk(settings: EvaluationSettings, baseline: Baseline, budget: int, index: list[int],
                    params: list[CalibrationDevice]) -> list[dict[str, Any]]:
    """One baseline on a chunk of held-out devices (a joblib job)."""
    seed = settings.seed
    devs = [_calibration_device(seed, i, p) for i, p in zip(index, params, strict=True)]
    starts = np.stack([_calibration_start(settings, seed, i, d) for i, d in zip(index, devs, strict=True)])
    task = CalibrationTask(list(devs), DragGate(settings.gate_duration_s),
                           amplitude_limit=settings.amplitude_limit)
    t0 = time.perf_counter()
    # Each chunk's generator depends on its first device and the budget only, so the rows
    # do not depend on which baselines run or on the number of workers.
    res = run_within_limits(baseline, task, starts, budget, np.random.default_rng([seed, index[0], 3, budget]))
    wall = (time.perf_counter() - t0) / len(index)
    truth = task.true_metrics(res.params)
    assert truth is not None
    rows = []
    for b, i in enumerate(index):
        m = {"infidelity": 1.0 - truth["fidelity"][b], "coherence_limit": truth["coherence_limit"][b],
             "leakage": truth["leakage"][b]}
        rows.append(_row("calibration", baseline.name, budget, i, m, int(res.shots_used[b]),
                         _device_shots(devs[b]), wall, float(res.gate_duration_s[b]), res.limits[b],
                         res.failures[b]))
    if settings.verify:
        from .verification import verdict_row, verify_result

        verdicts = verify_result(task, res, settings=settings.verification_settings())
        rows = [verdict_row(r, v) for r, v in zip(rows, verdicts, strict=True)]
    return rows


def _drift_scenario(settings: EvaluationSettings, i: int, realistic: bool = False) -> dict[str, Any]:
    """Reset options of drift device ``i``: a fresh ``transmon_drifting`` (or a draw of the
    realistic drift sampler, ``_drift_params``) and its start."""
    preset = get_preset("transmon_drifting")
    dev = SimulatedDevice(_drift_params(settings, i, realistic), preset.drift,
                          rng=np.random.default_rng([settings.seed, i, 6]))
    p = miscalibrated_start(dev, preset.gate_duration_s, np.random.default_rng([settings.seed, i, 7]),
                            DRIFT_MISCALIBRATION)
    return {"device": dev, "initial_params": DragParams.from_array(p)}


def _first_scenario(settings: EvaluationSettings, agent: AgentSpec) -> dict[str, Any]:
    """Reset options of the first episode the agent's benchmark plays (device 0)."""
    if agent.task == "calibration":
        dev = _calibration_device(settings.seed, 0, calibration_devices(settings)[0])
        start = _calibration_start(settings, settings.seed, 0, dev)
        return {"device": dev, "initial_params": start}
    if agent.task == "pulse_shaping":
        return {"device_params": get_preset(settings.shaping_preset).params}
    return _drift_scenario(settings, 0)


def _drift_steps(settings: EvaluationSettings) -> int:
    return round(settings.drift_hours * 3600.0 / settings.drift_interval_s)


def agent_env_kwargs(settings: EvaluationSettings, agent: AgentSpec, budget: int | None = None) -> dict[str, Any]:
    """The keyword arguments the agent's benchmark builds its env with: the benchmark's
    own settings (gate, device preset, timeline), the agent's ``env_kwargs`` over them,
    and for calibration the shot ``budget`` of the row over everything."""
    if agent.task == "calibration":
        budget = settings.budgets[0] if budget is None else budget
        kwargs: dict[str, Any] = {"gate_duration_s": settings.gate_duration_s}
        if settings.amplitude_limit != AmplitudeLimit():  # (an env without the option keeps working at the default)
            kwargs["amplitude_limit"] = settings.amplitude_limit
        return {**kwargs, **dict(agent.env_kwargs), "shot_budget": budget}
    if agent.task == "pulse_shaping":
        return {"device": settings.shaping_preset, "gate_duration_s": settings.shaping_duration_s,
                **dict(agent.env_kwargs)}
    steps = _drift_steps(settings)
    return {"decision_interval_s": settings.drift_interval_s, "episode_s": steps * settings.drift_interval_s,
            "circuit_time_s": settings.circuit_time_s, **dict(agent.env_kwargs)}


def check_agents(settings: EvaluationSettings, agents: Sequence[AgentSpec]) -> None:
    """Build every env an agent will play and reset it on its benchmark's first device,
    before any benchmark runs, and refuse one the agent's policy cannot act in: an env
    its arguments do not build, a device its env refuses (e.g. a device preset with
    another sample time than the training one), or (for a policy that knows its
    training spaces, such as an SB3 model) other observation or action spaces. Raises
    ``ValueError`` naming the agent, its env id and arguments."""
    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the env ids)

    enabled = {"calibration": True, "pulse_shaping": settings.pulse_shaping, "drift_tracking": settings.drift}
    for agent in agents:
        if not enabled[agent.task]:
            continue
        for budget in settings.budgets if agent.task == "calibration" else (None,):
            kwargs = agent_env_kwargs(settings, agent, budget)
            where = f"agents[{agent.name}]: {agent.resolved_env_id} with {kwargs}"
            try:
                env = make_pinned(agent.resolved_env_id, **kwargs)
            except (TypeError, ValueError, gym.error.Error) as err:
                raise ValueError(f"{where}: the env refuses its arguments: {err}") from None
            try:
                try:
                    env.reset(seed=settings.seed, options=_first_scenario(settings, agent))
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{where}: its env refuses the benchmark's devices: {err}") from None
                for name in ("observation_space", "action_space"):
                    want = getattr(agent.policy, name, None)
                    got = getattr(env, name)
                    if want is not None and got != want:
                        raise ValueError(f"{where}: {name} {got} differs from the policy's {want} (trained with "
                                         "other env settings or another env id): allowed the run's env_id and "
                                         "env_kwargs")
            finally:
                env.close()


def _agent_calibration(settings: EvaluationSettings, agent: AgentSpec, budget: int,
                       devices: Sequence[CalibrationDevice]) -> list[dict[str, Any]]:
    import pulsecal.envs  # noqa: F401  (registers the env ids)

    env = make_pinned(agent.resolved_env_id, **agent_env_kwargs(settings, agent, budget))
    rows = []
    for i, params in enumerate(_progress(devices, settings.progress, f"{agent.name} @ {budget}")):
        dev = _calibration_device(settings.seed, i, params)
        start = _calibration_start(settings, settings.seed, i, dev)
        t0 = time.perf_counter()
        # The start as an array: on a weakly driven device its amplitude exceeds full scale
        # at the nominal gate, and the env chooses the gate it fits (amplitude_limit).
        info = _episode(env, agent.policy, settings.seed + i, {"device": dev, "initial_params": start})
        wall = time.perf_counter() - t0
        m = {"infidelity": 1.0 - info["fidelity"], "coherence_limit": info["coherence_limit"],
             "leakage": info["leakage"]}
        rows.append(_row("calibration", agent.name, budget, i, m, int(info["shots_used"]), _device_shots(dev), wall,
                         float(info.get("gate_duration_s", math.nan)), info.get("limits"),
                         info.get("limit_failure")))
    env.close()
    return rows


def _act(env: Any, policy: Policy, obs: NDArray[Any], state: Any) -> tuple[NDArray[Any], Any]:
    """The policy's action and next state, as a replay session asks for them: its optional
    ``bind`` hook sees the env's calibration state first."""
    bind = getattr(policy, "bind", None)
    if callable(bind):
        bind(env.unwrapped.calibration_state())
    return policy.act(obs, state)


def _episode(env: Any, policy: Policy, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """Run one episode to its end; the last info (the final gate's truth)."""
    state = policy.initial_state()
    obs, info = env.reset(seed=seed, options=options)
    done = False
    while not done:
        action, state = _act(env, policy, obs, state)
        obs, _, term, trunc, info = env.step(action)
        done = bool(term or trunc)
    return dict(info)


def calibration_rows(settings: EvaluationSettings, agents: Sequence[AgentSpec] = ()) -> list[dict[str, Any]]:
    """Every baseline ``settings.methods`` names and every calibration agent, every budget."""
    devices = calibration_devices(settings)
    chunks = _chunks(devices, settings.chunk_size)
    jobs = [(m, b, c) for m in settings.run_methods for b in settings.budgets for c in chunks
            if b >= m.min_budget()]
    rows: list[dict[str, Any]] = []
    if jobs:
        if settings.workers > 1 and len(jobs) > 1:
            from joblib import Parallel, delayed

            par = Parallel(n_jobs=settings.workers, return_as="generator")
            gen = par(delayed(_baseline_chunk)(settings, m, b, c, [devices[i] for i in c]) for m, b, c in jobs)
            for part in _progress(gen, settings.progress, "baselines", total=len(jobs)):
                rows += part
        else:
            for m, b, c in _progress(jobs, settings.progress, "baselines"):
                rows += _baseline_chunk(settings, m, b, c, [devices[i] for i in c])
    for agent in agents:
        if agent.task == "calibration":
            for b in settings.budgets:
                rows += _agent_calibration(settings, agent, b, devices)
    return rows


# -- pulse shaping ----------------------------------------------------------------------------


def shaping_rows(settings: EvaluationSettings, agents: Sequence[AgentSpec] = ()) -> tuple[
        list[dict[str, Any]], dict[str, NDArray[np.complex128]], float]:
    """Calibrated DRAG, the GRAPE optimum and pulse-shaping agents on the shaping preset.

    Returns rows, the waveform of each method (for the pulse-shape plot) and dt_s.
    """

    import pulsecal.envs  # noqa: F401

    preset = get_preset(settings.shaping_preset)
    params = preset.params
    dt = params.dt_s
    dev = SimulatedDevice(params, rng=np.random.default_rng([settings.seed, 0, 4]))
    tr = dev.current_transmon()
    rows: list[dict[str, Any]] = []
    shapes: dict[str, NDArray[np.complex128]] = {}

    t0 = time.perf_counter()
    w_drag, _ = calibrated_drag(tr, settings.shaping_duration_s, "X")
    wall = time.perf_counter() - t0
    truth = true_metrics_devices([dev], w_drag[None], "X")
    assert truth is not None
    rows.append(_row("pulse_shaping", "drag_calibrated", 0, 0,
                     {"infidelity": 1 - truth["fidelity"][0], "coherence_limit": truth["coherence_limit"][0],
                      "leakage": truth["leakage"][0]}, 0, 0, wall))
    shapes["drag_calibrated"] = w_drag

    t0 = time.perf_counter()
    g = grape(tr, settings.shaping_duration_s, "X", rng=np.random.default_rng([settings.seed, 0, 5]),
              restarts=settings.grape_restarts, maxiter=settings.grape_maxiter)
    wall = time.perf_counter() - t0
    truth = true_metrics_devices([dev], g.waveform[None], "X")
    assert truth is not None
    rows.append(_row("pulse_shaping", "grape", 0, 0,
                     {"infidelity": 1 - truth["fidelity"][0], "coherence_limit": truth["coherence_limit"][0],
                      "leakage": truth["leakage"][0]}, 0, 0, wall))
    shapes["grape"] = g.waveform

    for agent in agents:
        if agent.task != "pulse_shaping":
            continue
        env = make_pinned(agent.resolved_env_id, **agent_env_kwargs(settings, agent))
        t0 = time.perf_counter()
        info = _episode(env, agent.policy, settings.seed, {"device_params": params})
        wall = time.perf_counter() - t0
        env.close()
        rows.append(_row("pulse_shaping", agent.name, int(info.get("shots_used", 0)), 0,
                         {"infidelity": 1 - info["fidelity"], "coherence_limit": info["coherence_limit"],
                          "leakage": info["leakage"]}, int(info.get("shots_used", 0)), -1, wall))
        shapes[agent.name] = np.asarray(info["waveform"])
    if settings.shaping_held_out:
        rows += _shaping_held_out_rows(settings, agents)
    if settings.shaping_realistic:
        rows += _shaping_realistic_rows(settings, agents)
    return rows, shapes, dt


def shaping_verdict(infidelity: float, grape_infidelity: float, target: float, duration_s: float) -> tuple[str, str]:
    """``(status, reason)`` of one shaped pulse on one device.

    ``calibrated`` when its true 1 − F is at most ``target``. Otherwise ``failed``, with the
    reason: if the GRAPE model optimum on the same device is above the target too, no
    pulse of this length reaches it (``below physical limit at <duration>``); else the
    method fell short of a pulse that exists. Both reasons quote the GRAPE optimum.
    """
    if infidelity <= target:
        return "calibrated", ""
    limit = f"{duration_s * 1e9:g} ns"
    if grape_infidelity > target:
        return "failed", (f"below physical limit at {limit}: GRAPE model optimum 1 − F = {grape_infidelity:.3g} "
                          f"> target {target:g}")
    return "failed", (f"pulse not found: 1 − F = {infidelity:.3g} > target {target:g}, while the GRAPE "
                      f"model optimum at {limit} reaches {grape_infidelity:.3g}")


def _shaping_held_out_rows(settings: EvaluationSettings, agents: Sequence[AgentSpec],
                           devices: Sequence[DeviceParams] | None = None, suffix: str = "heldout",
                           seed_key: int = 0) -> list[dict[str, Any]]:
    """Calibrated DRAG, GRAPE and the shaping agents on randomised devices (methods ``*_<suffix>``).

    ``devices`` default to ``shaping_held_out`` draws of ``held_out_shaping_devices``.
    DRAG and GRAPE optimise on the device's true transmon (α, Ω_R with its amplitude
    error, detuning, T1, T2) but not through its AWG distortion, which their models do
    not include; every method is scored on the full device, distortion included. Every row
    but GRAPE's carries ``status``/``reason`` (``shaping_verdict``) and the GRAPE optimum
    of its device (``grape_infidelity``).
    """

    import pulsecal.envs  # noqa: F401
    from pulsecal.envs.pulse_shaping_core import held_out_shaping_devices

    if devices is None:
        devices = held_out_shaping_devices(settings.shaping_held_out, settings.seed)
    rows: list[dict[str, Any]] = []
    grape_inf: list[float] = []
    target = settings.targets.shaping_infidelity

    def add(row: dict[str, Any], i: int, grape_row: bool = False) -> None:
        if not grape_row:
            row["grape_infidelity"] = grape_inf[i]
            row["status"], row["reason"] = shaping_verdict(row["infidelity"], grape_inf[i], target,
                                                           settings.shaping_duration_s)
        rows.append(row)

    def truth_row(method: str, i: int, dev: SimulatedDevice, w: NDArray[np.complex128], wall: float) -> dict[str, Any]:
        truth = true_metrics_devices([dev], w[None], "X")
        assert truth is not None
        return _row("pulse_shaping", method, 0, i,
                    {"infidelity": 1 - truth["fidelity"][0], "coherence_limit": truth["coherence_limit"][0],
                     "leakage": truth["leakage"][0]}, 0, 0, wall)

    for i, params in enumerate(_progress(devices, settings.progress, f"{suffix} shaping")):
        dev = SimulatedDevice(params, rng=np.random.default_rng([settings.seed, i, 8 + seed_key]))
        tr = dev.current_transmon()
        t0 = time.perf_counter()
        g = grape(tr, settings.shaping_duration_s, "X", rng=np.random.default_rng([settings.seed, i, 9 + seed_key]),
                  restarts=settings.grape_restarts, maxiter=settings.grape_maxiter)
        row = truth_row(f"grape_{suffix}", i, dev, g.waveform, time.perf_counter() - t0)
        grape_inf.append(row["infidelity"])
        add(row, i, grape_row=True)
        t0 = time.perf_counter()
        w_drag, _ = calibrated_drag(tr, settings.shaping_duration_s, "X")
        add(truth_row(f"drag_calibrated_{suffix}", i, dev, w_drag, time.perf_counter() - t0), i)
    for agent in agents:
        if agent.task != "pulse_shaping":
            continue
        env = make_pinned(agent.resolved_env_id, **agent_env_kwargs(settings, agent))
        for i, params in enumerate(devices):
            t0 = time.perf_counter()
            info = _episode(env, agent.policy, settings.seed + i, {"device_params": params})
            wall = time.perf_counter() - t0
            add(_row("pulse_shaping", f"{agent.name}_{suffix}", int(info.get("shots_used", 0)), i,
                     {"infidelity": 1 - info["fidelity"], "coherence_limit": info["coherence_limit"],
                      "leakage": info["leakage"]}, int(info.get("shots_used", 0)), -1, wall), i)
        env.close()
    return rows


def _shaping_realistic_rows(settings: EvaluationSettings, agents: Sequence[AgentSpec]) -> list[dict[str, Any]]:
    """The shaping benchmark on ``shaping_realistic`` devices of the realistic held-out
    population (``realistic_shaping_devices``; ``shaping_realistic_sampler`` overrides its
    ranges); methods ``*_realistic``."""
    from pulsecal.envs.pulse_shaping_core import realistic_shaping_devices

    devices = realistic_shaping_devices(settings.shaping_realistic, settings.seed,
                                        settings.shaping_realistic_sampler)
    return _shaping_held_out_rows(settings, agents, devices, "realistic", seed_key=100)


# -- drift tracking ---------------------------------------------------------------------------


def _drift_error(dev: SimulatedDevice, gate: DragGate, p: FloatArray, circuit_time_s: float) -> tuple[float, float]:
    """DriftTracking-v0's true error of parameters p now, and the coherence limit."""
    w = gate.waveforms(p[None], dev.dt_s)
    truth = true_metrics_devices([dev], w, "X")
    assert truth is not None
    resid = dev.current_transmon().detuning_hz - p[2]
    frame = (2.0 / 3.0) * math.sin(math.pi * resid * circuit_time_s) ** 2
    return float(1.0 - truth["fidelity"][0] + frame), float(truth["coherence_limit"][0])


def _drift_params(settings: EvaluationSettings, i: int, realistic: bool) -> DeviceParams:
    """Device i of the drift benchmark: transmon_drifting's, or a draw of the realistic
    sampler (its own seed stream, key 79)."""
    if not realistic:
        return get_preset("transmon_drifting").params
    return drift_device_sampler(settings.drift_sampler).sample(np.random.default_rng([settings.seed, i, 79]))


def _drift_baseline(settings: EvaluationSettings, i: int, recalibrate: bool, realistic: bool = False) -> tuple[
        dict[str, Any], FloatArray, FloatArray]:
    """The scheduled recalibration (or none) on drifting device i over the episode."""
    preset = get_preset("transmon_drifting")
    dev = SimulatedDevice(_drift_params(settings, i, realistic), preset.drift,
                          rng=np.random.default_rng([settings.seed, i, 6]))
    gate = DragGate(preset.gate_duration_s)
    p = miscalibrated_start(dev, preset.gate_duration_s, np.random.default_rng([settings.seed, i, 7]),
                            DRIFT_MISCALIBRATION)
    task = CalibrationTask([dev], gate)
    steps = round(settings.drift_hours * 3600.0 / settings.drift_interval_s)
    every = max(1, round(settings.recalibration_interval_s / settings.drift_interval_s))
    recalibration = settings.baseline(settings.drift_recalibration)
    recalibration_rng = np.random.default_rng([settings.seed, i, 10])  # for randomised baselines
    times, errs, limits = [], [], []
    t0 = time.perf_counter()
    for k in range(steps):
        if recalibrate and k % every == 0:
            p = recalibration.run(task, p, settings.recalibration_budget, recalibration_rng).params[0]
        e0, _ = _drift_error(dev, gate, p, settings.circuit_time_s)
        dev.advance(settings.drift_interval_s)
        e1, cl = _drift_error(dev, gate, p, settings.circuit_time_s)
        errs.append(0.5 * (e0 + e1))
        limits.append(cl)
        times.append(dev.clock_s)
    wall = time.perf_counter() - t0
    method = (settings.scheduled_method if recalibrate else "no_recalibration") + ("_realistic" if realistic else "")
    shots = int(task.shots_used[0])
    row = _row("drift_tracking", method, settings.recalibration_budget if recalibrate else 0, i,
               {"infidelity": float(np.mean(errs)), "coherence_limit": float(np.mean(limits)), "leakage": math.nan},
               shots, shots, wall)
    return row, np.asarray(times), np.asarray(errs)


def _drift_agent(settings: EvaluationSettings, agent: AgentSpec, i: int, realistic: bool = False) -> tuple[
        dict[str, Any], FloatArray, FloatArray]:
    import pulsecal.envs  # noqa: F401

    steps = _drift_steps(settings)
    env = make_pinned(agent.resolved_env_id, max_episode_steps=steps, **agent_env_kwargs(settings, agent))
    state = agent.policy.initial_state()
    t0 = time.perf_counter()
    obs, info = env.reset(seed=settings.seed + i, options=_drift_scenario(settings, i, realistic))
    times, errs, limits = [], [], []
    done = False
    while not done:
        action, state = _act(env, agent.policy, obs, state)
        obs, _, term, trunc, info = env.step(action)
        errs.append(float(info["interval_error"]))
        limits.append(float(info.get("coherence_limit", math.nan)))
        times.append(float(info["device_time_s"]))
        done = bool(term or trunc)
    env.close()
    wall = time.perf_counter() - t0
    shots = int(info["shots_used"])
    row = _row("drift_tracking", agent.name + ("_realistic" if realistic else ""), 0, i,
               {"infidelity": float(np.mean(errs)), "coherence_limit": float(np.nanmean(limits)),
                "leakage": math.nan}, shots, shots, wall)
    return row, np.asarray(times), np.asarray(errs)


def drift_rows(settings: EvaluationSettings, agents: Sequence[AgentSpec] = ()) -> tuple[
        list[dict[str, Any]], dict[str, tuple[FloatArray, FloatArray]]]:
    """Scheduled recalibration, no recalibration and drift agents; timelines of device 0."""
    sets = [(settings.drift_devices, False), (settings.drift_realistic, True)]
    jobs = [(i, rec, real) for n, real in sets for i in range(n) for rec in (True, False)]
    if settings.workers > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=settings.workers)(delayed(_drift_baseline)(settings, i, rec, real)
                                                    for i, rec, real in jobs)
    else:
        results = [_drift_baseline(settings, i, rec, real)
                   for i, rec, real in _progress(jobs, settings.progress, "drift")]
    rows = [r[0] for r in results]
    # Timelines of device 0 of the preset set (the plot's), never of the realistic set.
    timelines = {r[0]["method"]: (r[1], r[2]) for (i, _, real), r in zip(jobs, results, strict=True)
                 if i == 0 and not real}
    for agent in agents:
        if agent.task != "drift_tracking":
            continue
        for n, real in sets:
            for i in _progress(range(n), settings.progress, f"{agent.name} drift"):
                row, t, e = _drift_agent(settings, agent, i, real)
                rows.append(row)
                if i == 0 and not real:
                    timelines[agent.name] = (t, e)
    return rows, timelines
