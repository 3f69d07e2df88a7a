"""The two-qubit calibration harness: textbook, Nelder-Mead, CMA-ES and the model optimum
on the same held-out devices from the same seeded starts, at several shot budgets.

    python -m pulsecal.agents.pipelines.two_qubit_eval --gate cz --n-devices 10 \\
        --budgets 12000 24000 48000 --out runs/two_qubit_eval/cz

Devices are ``held_out_multi_qubit_devices(n, MultiQubitSampler(preset))`` (the held-out
stream, disjoint from training), each without drift. Device i's start is drawn like its
env's (``CZCalibration-v0``: nominal ± 6 mΦ0, ± 5 ns, phases anywhere; ``CRCalibration-v0``:
nominal amplitude ± 30 %, phase ± 0.5 rad, a tone up to 0.03 at any phase) from
``default_rng([seed, i])``, the same start for every method and budget. The measured
methods calibrate on a device of those parameters (closed system unless
``open_system``); every shot goes through its ``run`` and is counted. The final knobs are
scored on the *open-system* truth of the same parameters (with decoherence, so that the
coherence limit means something): CZ 1 − F with the knobs' own phases ("as set",
``fidelity_set``; the phases are knobs), with the best virtual Z, leakage, and the
two-qubit coherence limit of the pulse's duration; ECR 1 − F after the best virtual Z
(its knobs hold no frame phases), leakage and the limit. The model optimum optimises on
that truth and costs no shots: the floor of the pulse family.

The textbook runs at each budget with its shot counts scaled by budget / its default
plan (a budget too small for one shot plan per node is skipped, not faked). Outputs in
``out``: ``results.json`` (one row per device × method × budget, and the summary),
``table.md`` and ``error_vs_shots.png`` (median and p90 of error / coherence limit
against the shots used, log axes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pulsecal.agents.baselines.blackbox_2q import BlackBoxCZ, BlackBoxECR
from pulsecal.agents.baselines.cz_leakage_idles import pair_detuning_hz
from pulsecal.agents.baselines.cz_textbook import CZTextbook
from pulsecal.agents.baselines.ecr_textbook import TextbookECR
from pulsecal.agents.baselines.model_optimum_2q import ModelOptimumCZ, ModelOptimumECR
from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs.cz_calibration import NOMINAL_PARAMS
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitSampler,
    get_multi_qubit_preset,
    held_out_multi_qubit_devices,
)

GATES = {"cz": "two_transmons_cz", "cr": "two_transmons_cr"}
# "*_vz": the CZ's search over (amplitude, length) with the virtual Zs set from the probes'
# own phase readings (BlackBoxCZ.profile_phases); the ECR's knobs hold no frame phases.
METHODS = ("textbook", "nelder_mead", "cmaes", "nelder_mead_vz", "cmaes_vz", "model_optimum")
MEASURED = ("textbook", "nelder_mead", "cmaes", "nelder_mead_vz", "cmaes_vz")
CZ_ONLY = ("nelder_mead_vz", "cmaes_vz")
# The textbook's default shot plans, scaled per budget.
CZ_TEXTBOOK_SHOTS = {"shots_chevron": 50, "shots_length": 100, "shots_phase": 60, "shots_leakage": 300,
                     "shots_round": 200, "shots_reference": 300, "shots_leakage_scan": 250}
ECR_X_DRAG = ("off", "first_order")
RABI_HZ = 50e6  # the spec-sheet Rabi frequency the ECR methods assume (as TextbookECR's)
CZ_IDLES = ("fixed", "measured", "spec_sheet")


@dataclass(frozen=True)
class TwoQubitEvalSettings:
    """What the harness runs (module docstring).

    Attributes:
        gate: "cz" or "cr".
        n_devices: held-out devices, >= 1.
        budgets: shot budgets, each >= 1.
        open_system: calibrate on open-system devices (scoring is always open).
        seed: seeds the starts, the devices' shot noise and CMA-ES.
        methods: a subset of ``METHODS`` (``CZ_ONLY`` for gate "cz" only).
        first_device: index of the first held-out device (device i depends only on i and
            the seed, so runs over disjoint ranges add up to one run over their union).
        shape: the CZ's flux-pulse shape (``cz_calibration_core.CZ_SHAPES``) of the
            textbook and the model optimum; "adiabatic" is the textbook's adiabatic node
            sequence and the adiabatic family's optimum (docs/cz_calibration.md). The
            black-box methods always search the flat top.
        ecr_x_drag: the ECR's echo π and tomography pulses (``ECRShape.x_drag``) for every
            method of gate "cr": "off" (plain Gaussians, the env's default) or
            "first_order" (DRAG at ``drag_for`` of the preset's spec-sheet control
            anharmonicity, what the single-qubit calibration of the control gives; the
            error budget in docs/cr_calibration.md).
        ecr_model_starts: CR-phase starts of the ECR's model optimum (offsets from the
            nominal phase spread evenly over 2π), >= 1, each with and without a rotary
            tone of −1 turn per half when > 1; the best closed-system optimum of them
            gets the open polish. 1 is the single start from the nominal knobs.
        ecr_half_samples: the ECR's CR half (``ECRShape.half_samples``, rises of 16
            samples kept); the coherence limit is always that of the gate's own duration.
        ecr_rotary_turns: the textbook ECR's rotary tone (``TextbookECR.rotary_turns``);
            0 is none.
        cz_idles: the second idle of the textbook CZ's leakage probe (``CZ_IDLES``,
            ``cz_leakage_idles``): "fixed" (1 ns, the textbook's idle when it is not told
            the pair's f02 − f11; on held-out 24–31 the per-device choice measured 1.68×
            against 1.59×, docs/cz_calibration.md), "measured" (chosen per device from its
            f02 − f11: its two qubit frequencies, which the single-qubit chain measures
            before any CZ, as the graph's node reads them from the store, and the spec
            sheet's anharmonicity of the tunable qubit) or "spec_sheet" (chosen from
            two_transmons_cz's design f02 − f11, the same on every device).
        ecr_prior_amp, ecr_prior_phase: the textbook ECR's shrinkage of its amplitude and
            phase updates (``TextbookECR.prior_amp_rel`` / ``prior_phase_rad``); None is none.
        ecr_accept_check: the textbook ECR's closing check against its start
            (``TextbookECR.accept_check``; its shots come out of the same budget).
    """

    gate: str = "cz"
    n_devices: int = 5
    budgets: tuple[int, ...] = (12_000, 24_000, 48_000)
    open_system: bool = False
    seed: int = 0
    methods: tuple[str, ...] = ("textbook", "nelder_mead", "cmaes", "model_optimum")
    first_device: int = 0
    shape: str = "flat_top"
    ecr_x_drag: str = "off"
    ecr_model_starts: int = 1
    ecr_rotary_turns: float = 0.0
    ecr_half_samples: int = 120
    cz_idles: str = "fixed"
    ecr_prior_amp: float | None = None
    ecr_prior_phase: float | None = None
    ecr_accept_check: bool = False

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"gate={self.gate!r} is out of range: allowed {sorted(GATES)}")
        if not isinstance(self.n_devices, int) or isinstance(self.n_devices, bool) or self.n_devices < 1:
            raise ValueError(f"n_devices={self.n_devices!r} is out of range: allowed an integer >= 1")
        b = tuple(self.budgets)
        if not b or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in b):
            raise ValueError(f"budgets={self.budgets!r} is out of range: allowed a non-empty list of integers >= 1")
        object.__setattr__(self, "budgets", tuple(sorted(b)))
        f = self.first_device
        if not isinstance(f, int) or isinstance(f, bool) or f < 0:
            raise ValueError(f"first_device={f!r} is out of range: allowed an integer >= 0")
        bad = [m for m in self.methods if m not in METHODS or (self.gate != "cz" and m in CZ_ONLY)]
        if bad or not self.methods:
            raise ValueError(f"methods={list(self.methods)!r} is out of range: allowed a non-empty subset of "
                             f"{list(METHODS)} ({list(CZ_ONLY)} for gate 'cz' only)")
        object.__setattr__(self, "methods", tuple(self.methods))
        if self.shape not in cz.CZ_SHAPES or (self.gate != "cz" and self.shape != "flat_top"):
            raise ValueError(f"shape={self.shape!r} is out of range: allowed one of {list(cz.CZ_SHAPES)} "
                             "(gate 'cz' only; 'flat_top' for 'cr')")
        if self.ecr_x_drag not in ECR_X_DRAG:
            raise ValueError(f"ecr_x_drag={self.ecr_x_drag!r} is out of range: allowed one of {list(ECR_X_DRAG)}")
        n = self.ecr_model_starts
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"ecr_model_starts={n!r} is out of range: allowed an integer >= 1")
        r = self.ecr_rotary_turns
        if not isinstance(r, (int, float)) or not math.isfinite(r) or abs(r) > 3:
            raise ValueError(f"ecr_rotary_turns={r!r} is out of range: allowed [-3, 3]")
        if self.cz_idles not in CZ_IDLES:
            raise ValueError(f"cz_idles={self.cz_idles!r} is out of range: allowed one of {list(CZ_IDLES)}")
        h = self.ecr_half_samples
        if not isinstance(h, int) or isinstance(h, bool) or not 32 <= h <= 1000:
            raise ValueError(f"ecr_half_samples={h!r} is out of range: allowed an integer in [32, 1000]")
        for name in ("ecr_prior_amp", "ecr_prior_phase"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
                raise ValueError(f"{name}={v!r} is out of range: allowed None or a number > 0")

    def ecr_options(self) -> dict[str, Any]:
        """The textbook ECR's options of these settings (``textbook_for_budget``'s ``ecr``)."""
        return {"rotary_turns": self.ecr_rotary_turns, "prior_amp_rel": self.ecr_prior_amp,
                "prior_phase_rad": self.ecr_prior_phase, "accept_check": self.ecr_accept_check}

    def ecr_shape(self) -> cr.ECRShape:
        """The ECR's pulse shape of every method (``ecr_x_drag``, ``ecr_half_samples``)."""
        if self.ecr_x_drag == "off":
            return cr.ECRShape(half_samples=self.ecr_half_samples)
        model = get_multi_qubit_preset(GATES["cr"]).params.model
        assert isinstance(model, DeviceModel)
        return cr.ECRShape(half_samples=self.ecr_half_samples,
                           x_drag=cr.drag_for(model.mode(cr.CONTROL).anharmonicity_hz, model.dt_s))


def held_out_devices(gate: str, n: int) -> tuple[MultiQubitParams, ...]:
    return held_out_multi_qubit_devices(n, MultiQubitSampler(preset=GATES[gate]))


def draw_start(gate: str, params: MultiQubitParams, rng: np.random.Generator,
               ecr_shape: cr.ECRShape | None = None) -> Any:
    """A start drawn like the gate's env draws it (module docstring), around the nominal
    knobs of ``ecr_shape`` (None: ``ECRShape()``) for the ECR."""
    if gate == "cz":
        amp, length, _, _ = NOMINAL_PARAMS
        u = rng.uniform(-1.0, 1.0, 2)
        phases = rng.uniform(-math.pi, math.pi, 2)
        return np.array([amp + 0.006 * u[0], length + 5e-9 * u[1], *phases])
    model = params.model
    assert isinstance(model, DeviceModel)
    nom = cr.nominal_knobs(model, ecr_shape or cr.ECRShape())
    return cr.ECRKnobs(float(np.clip(nom.cr_amp * (1 + rng.uniform(-0.3, 0.3)), 0, 1)),
                       nom.cr_phase_rad + float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0, 0.03)),
                       float(rng.uniform(-math.pi, math.pi)))


def nominal_start(gate: str, params: MultiQubitParams, ecr_shape: cr.ECRShape | None = None) -> Any:
    if gate == "cz":
        return np.array(NOMINAL_PARAMS)
    model = params.model
    assert isinstance(model, DeviceModel)
    return cr.nominal_knobs(model, ecr_shape or cr.ECRShape())


def score(gate: str, truth_device: SimulatedMultiQubitDevice, knobs: Any,
          pulse: cz.CZPulse | None = None, ecr_shape: cr.ECRShape | None = None) -> dict[str, float]:
    """The true error of a setting on the (open) scoring device (evaluation only);
    ``pulse``: the CZ's flux pulse the knobs belong to (None: the default flat top);
    ``ecr_shape``: the ECR's (None: ``ECRShape()``)."""
    if gate == "cz":
        p = pulse or cz.CZPulse()
        t = cz.true_metrics(truth_device, p, np.asarray(knobs))
        err = 1.0 - t["fidelity_set"]
        return {"error": err, "error_virtual_z": 1.0 - t["fidelity"], "leakage": t["leakage"],
                "leakage_limit": cz.leakage_limit(truth_device, p, np.asarray(knobs)),
                "coherence_limit": t["coherence_limit"], "ratio": err / t["coherence_limit"],
                "conditional_phase": t["conditional_phase"]}
    e = cr.ecr_truth(truth_device, knobs, ecr_shape or cr.ECRShape(), RABI_HZ)
    return {"error": e.infidelity, "error_virtual_z": e.infidelity, "leakage": e.leakage,
            "coherence_limit": e.coherence_limit, "ratio": e.infidelity / e.coherence_limit}


# The CZ pulse per shape: the adiabatic one at the textbook's design λ_2 (its map is
# measured by the textbook and taken from the truth by the model optimum).
CZ_PULSES = {"flat_top": cz.CZPulse(), "adiabatic": cz.CZPulse(shape="adiabatic",
                                                              lambda_2=CZTextbook().adiabatic_lambda_2)}


def _pulse_fields(pulse: cz.CZPulse | None) -> dict[str, Any]:
    """The row's record of an adiabatic pulse's map (so a row's knobs can be replayed)."""
    if pulse is None or pulse.shape != "adiabatic":
        return {}
    return {"pulse": {"shape": pulse.shape, "coupling_hz": pulse.coupling_hz, "resonance_phi0": pulse.resonance_phi0,
                      "tuning_hz": pulse.tuning_hz, "lambda_2": pulse.lambda_2, "lambda_3": pulse.lambda_3}}


def cz_leakage_idles(mode: str, params: MultiQubitParams) -> dict[str, Any]:
    """The textbook CZ's leakage-idle arguments for ``cz_idles`` = ``mode`` on a device of
    ``params`` (only its qubit frequencies are read, for "measured")."""
    if mode == "fixed":
        return {}
    spec = get_multi_qubit_preset(GATES["cz"]).params.model
    model = spec if mode == "spec_sheet" else params.model
    assert isinstance(model, DeviceModel) and isinstance(spec, DeviceModel)
    det = pair_detuning_hz(model.mode(cz.TARGET).frequency_hz, model.mode(cz.CONTROL).frequency_hz,
                           spec.mode(cz.TARGET).anharmonicity_hz)
    return {"pair_detuning_hz": det}


def textbook_for_budget(gate: str, budget: int, shape: str = "flat_top",
                        ecr_shape: cr.ECRShape | None = None, ecr_rotary_turns: float = 0.0,
                        ecr: dict[str, Any] | None = None,
                        cz_idles: dict[str, Any] | None = None) -> CZTextbook | TextbookECR | None:
    """The textbook with its shot plan scaled to ``budget`` (None if it does not fit);
    ``ecr``: further ``TextbookECR`` options (``TwoQubitEvalSettings.ecr_options``), whose
    sequences (the closing check's) are in the plan that is scaled; ``cz_idles``: the CZ
    textbook's leakage-idle arguments (``cz_leakage_idles``)."""
    if gate == "cz":
        pulse = CZ_PULSES[shape]
        plan = dict(CZ_TEXTBOOK_SHOTS, shots_exchange=CZ_TEXTBOOK_SHOTS["shots_length"])
        scale = budget / CZTextbook(pulse=pulse).min_budget()
        shots = {k: math.floor(v * scale) for k, v in plan.items()}
        if min(shots.values()) < 10:
            return None
        b = CZTextbook(pulse=pulse, **shots, **(cz_idles or {}))  # type: ignore[arg-type]
    else:
        sh = ecr_shape or cr.ECRShape()
        opts = {**(ecr or {}), "rotary_turns": ecr_rotary_turns}
        base = TextbookECR(shape=sh, **opts)
        per_shot = base.min_budget() // base.shots
        n = budget // per_shot
        if n < 16:
            return None
        b = TextbookECR(shots=n, shape=sh, **opts)
    return b if b.min_budget() <= budget else None


def _knobs_list(gate: str, knobs: Any) -> list[float]:
    return [float(x) for x in (np.asarray(knobs) if gate == "cz" else knobs.as_array())]


def run_method(gate: str, method: str, device: SimulatedMultiQubitDevice, start: Any, budget: int,
               rng: np.random.Generator, shape: str = "flat_top",
               ecr_shape: cr.ECRShape | None = None, ecr_rotary_turns: float = 0.0,
               ecr: dict[str, Any] | None = None, cz_idles: dict[str, Any] | None = None
               ) -> tuple[Any, int, cz.CZPulse | None, dict[str, Any]]:
    """(final knobs, shots used, the CZ pulse they belong to, what else the row records)
    of one measured method on one device; ``ecr`` and ``cz_idles`` as ``textbook_for_budget``'s."""
    if method == "textbook":
        tb = textbook_for_budget(gate, budget, shape, ecr_shape, ecr_rotary_turns, ecr, cz_idles)
        if tb is None:
            raise ValueError(f"budget={budget} is out of range: below the textbook's smallest shot plan")
        if isinstance(tb, CZTextbook):
            r = tb.run(device, start, budget)
            return r.params, r.shots_used, r.pulse or tb.pulse, {}
        e = tb.run(device, start, budget)
        extra = {} if e.accept is None else {"accept_verdict": e.accept.verdict,
                                             "accept_cost": [e.accept.cost_start, e.accept.cost_calibrated]}
        return e.knobs, e.shots_used, None, extra
    if gate == "cz":
        vz = method.endswith("_vz")
        r = BlackBoxCZ(method=method.removesuffix("_vz"), profile_phases=vz).run(device, start, budget, rng)
        return r.params, r.shots_used, None, {}
    e = BlackBoxECR(method=method, shape=ecr_shape or cr.ECRShape()).run(device, start, budget, rng)
    return e.knobs, e.shots_used, None, {}


def model_optimum(gate: str, params: MultiQubitParams, truth_device: SimulatedMultiQubitDevice,
                  shape: str = "flat_top", ecr_shape: cr.ECRShape | None = None,
                  ecr_starts: int = 1) -> tuple[Any, cz.CZPulse | None]:
    """The knob-space optimum on the scoring truth, from the nominal start (and its pulse);
    for the ECR from ``ecr_starts`` CR phases (``ModelOptimumECR.phase_starts``), each
    also with the textbook's rotary tone (−1 turn per half) when ``ecr_starts`` > 1."""
    if gate == "cz":
        r = ModelOptimumCZ(pulse=CZ_PULSES[shape]).run(truth_device, nominal_start(gate, params))
        return r.params, r.pulse
    sh = ecr_shape or cr.ECRShape()
    # The closed-system optimum first (~20× cheaper per evaluation), then a short open polish.
    closed = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    # Multi-start: each CR phase with and without the textbook's rotary (-1 turn per half).
    rotary = (0.0,) if ecr_starts == 1 else (0.0, -1.0)
    k = ModelOptimumECR(shape=sh, phase_starts=ecr_starts, rotary_starts=rotary).run(
        closed, nominal_start(gate, params, sh)).knobs
    return ModelOptimumECR(maxfev=60, restarts=0, shape=sh).run(truth_device, k).knobs, None


def evaluate_two_qubit(settings: TwoQubitEvalSettings, out_dir: Path | str | None = None,
                       log: Any = print) -> dict[str, Any]:
    """Run the harness; returns {"settings", "rows", "summary"} and writes ``out_dir`` if given."""
    s = settings
    rows: list[dict[str, Any]] = []
    devices = held_out_devices(s.gate, s.first_device + s.n_devices)
    ecr_shape = s.ecr_shape() if s.gate == "cr" else None
    for i, params in enumerate(devices):
        if i < s.first_device:
            continue
        start = draw_start(s.gate, params, np.random.default_rng([s.seed, i]), ecr_shape)
        truth = SimulatedMultiQubitDevice(params, rng=np.random.default_rng([s.seed, i, 0]), open_system=True)
        base = {"device": i}
        rows.append({**base, "method": "start", "budget": 0, "shots_used": 0, "knobs": _knobs_list(s.gate, start),
                     "seconds": 0.0, "failure": None, **score(s.gate, truth, start, ecr_shape=ecr_shape)})
        if "model_optimum" in s.methods:
            t0 = time.perf_counter()
            k, pulse = model_optimum(s.gate, params, truth, s.shape, ecr_shape, s.ecr_model_starts)
            rows.append({**base, "method": "model_optimum", "budget": 0, "shots_used": 0,
                         "knobs": _knobs_list(s.gate, k), "seconds": time.perf_counter() - t0, "failure": None,
                         **_pulse_fields(pulse), **score(s.gate, truth, k, pulse, ecr_shape)})
        for j, method in enumerate(m for m in s.methods if m in MEASURED):
            for budget in s.budgets:
                dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng([s.seed, i, 1 + j, budget]),
                                                open_system=s.open_system)
                t0 = time.perf_counter()
                row: dict[str, Any] = {**base, "method": method, "budget": budget}
                try:
                    k, used, pulse, extra = run_method(s.gate, method, dev, start, budget,
                                                       np.random.default_rng([s.seed, i, 100 + j, budget]),
                                                       s.shape, ecr_shape, s.ecr_rotary_turns, s.ecr_options(),
                                                       cz_leakage_idles(s.cz_idles, params) if s.gate == "cz" else None)
                except Exception as exc:  # a method that fails is reported, not hidden
                    row.update(shots_used=0, knobs=None, seconds=time.perf_counter() - t0,
                               failure=f"{type(exc).__name__}: {exc}")
                    rows.append(row)
                    log(f"device {i} {method} {budget}: FAILED {row['failure']}")
                    continue
                if used > budget:
                    raise AssertionError(f"{method} spent {used} shots over budget={budget}")
                row.update(shots_used=int(used), knobs=_knobs_list(s.gate, k), seconds=time.perf_counter() - t0,
                           failure=None, **_pulse_fields(pulse), **extra,
                           **score(s.gate, truth, k, pulse, ecr_shape))
                rows.append(row)
        done = [r for r in rows if r["device"] == i and r["failure"] is None]
        log(f"device {i}: " + ", ".join(f"{r['method']}@{r['budget']} {r['error']:.2e} ({r['ratio']:.2f}x)"
                                        for r in done))
    result: dict[str, Any] = {"settings": asdict(s), "rows": rows, "summary": summarise(rows)}
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def merge_results(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs over disjoint device ranges with otherwise equal settings."""
    if not results:
        raise ValueError("results=[] is out of range: allowed at least one result")
    first = dict(results[0]["settings"])
    same = ("gate", "budgets", "open_system", "seed", "methods", "ecr_x_drag", "ecr_model_starts",
            "ecr_rotary_turns", "ecr_half_samples", "ecr_prior_amp", "ecr_prior_phase", "ecr_accept_check", "cz_idles")
    defaults = {f.name: f.default for f in dataclasses.fields(TwoQubitEvalSettings)}
    for r in results[1:]:
        for k in same:
            # results written before a setting existed ran at its default
            if (list(np.atleast_1d(r["settings"].get(k, defaults[k])))
                    != list(np.atleast_1d(first.get(k, defaults[k])))):
                raise ValueError(f"settings.{k}={r['settings'].get(k, defaults[k])!r} differs from "
                                 f"{first.get(k, defaults[k])!r}: "
                                 "allowed runs that differ only in their devices")
    rows = [row for r in results for row in r["rows"]]
    ids = [row["device"] for row in rows if row["method"] == "start"]
    if len(ids) != len(set(ids)):
        raise ValueError(f"devices {sorted(ids)} overlap: allowed disjoint device ranges")
    first.update(n_devices=len(ids), first_device=min(ids))
    return {"settings": first, "rows": rows, "summary": summarise(rows)}


def write_outputs(result: dict[str, Any], out_dir: Path | str) -> None:
    """``results.json``, ``table.md`` and ``error_vs_shots.png`` of ``result`` in ``out_dir``."""
    st = result["settings"]
    s = TwoQubitEvalSettings(st["gate"], st["n_devices"], tuple(st["budgets"]), st["open_system"], st["seed"],
                             tuple(st["methods"]), st.get("first_device", 0))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    (out / "table.md").write_text(markdown_table(result["summary"], s.gate), encoding="utf-8")
    plot_error_vs_shots(result["summary"], out / "error_vs_shots.png", s)


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (method, budget): medians and p90s over the devices that ran it, how
    many of them end worse than their start (``worse_than_start``, true error), and the
    textbook ECR's closing-check verdicts when it ran one."""
    start = {r["device"]: r["error"] for r in rows if r["method"] == "start"}
    keys = sorted({(r["method"], r["budget"]) for r in rows},
                  key=lambda k: (["start", *METHODS].index(k[0]), k[1]))
    out = []
    for method, budget in keys:
        sel = [r for r in rows if r["method"] == method and r["budget"] == budget]
        ok = [r for r in sel if r["failure"] is None]
        entry: dict[str, Any] = {"method": method, "budget": budget, "n": len(ok), "failed": len(sel) - len(ok)}
        if ok:
            for name in ("error", "error_virtual_z", "leakage", "ratio"):
                v = np.array([r[name] for r in ok])
                entry[f"{name}_median"] = float(np.median(v))
                entry[f"{name}_p90"] = float(np.percentile(v, 90))
            entry["shots_median"] = float(np.median([r["shots_used"] for r in ok]))
            entry["coherence_limit_median"] = float(np.median([r["coherence_limit"] for r in ok]))
            entry["seconds_median"] = float(np.median([r["seconds"] for r in ok]))
            if all("leakage_limit" in r for r in ok):
                entry["leakage_limit_median"] = float(np.median([r["leakage_limit"] for r in ok]))
            if method != "start" and all(r["device"] in start for r in ok):
                entry["worse_than_start"] = sum(r["error"] > start[r["device"]] for r in ok)
            verdicts = [r["accept_verdict"] for r in ok if "accept_verdict" in r]
            if verdicts:
                entry["verdicts"] = {v: verdicts.count(v) for v in sorted(set(verdicts))}
        out.append(entry)
    return out


def markdown_table(summary: Sequence[dict[str, Any]], gate: str) -> str:
    vz = " | 1 − F vz median" if gate == "cz" else ""
    lines = [f"| method | budget | shots (median) | 1 − F median | 1 − F p90{vz} | ratio median | ratio p90 | "
             "leakage median | n (failed) |",
             "|---|---:|---:|---:|---:|" + ("---:|" if gate == "cz" else "") + "---:|---:|---:|---|"]
    for e in summary:
        if not e["n"]:
            lines.append(f"| {e['method']} | {e['budget']} | - | - | - |{' - |' if gate == 'cz' else ''} - | - | - | "
                         f"0 ({e['failed']}) |")
            continue
        vzv = f" | {e['error_virtual_z_median']:.2e}" if gate == "cz" else ""
        lines.append(f"| {e['method']} | {e['budget'] or '-'} | {e['shots_median']:,.0f} | {e['error_median']:.2e} | "
                     f"{e['error_p90']:.2e}{vzv} | {e['ratio_median']:.2f} | {e['ratio_p90']:.2f} | "
                     f"{e['leakage_median']:.1e} | {e['n']} ({e['failed']}) |")
    notes = [f"- {e['method']}@{e['budget']}: {e['worse_than_start']}/{e['n']} worse than their start"
             + (", verdicts " + ", ".join(f"{k} {v}" for k, v in e["verdicts"].items()) if "verdicts" in e else "")
             for e in summary if e["n"] and "worse_than_start" in e and e["method"] in MEASURED]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def plot_error_vs_shots(summary: Sequence[dict[str, Any]], path: Path, settings: TwoQubitEvalSettings) -> None:
    """Median (solid) and p90 (dashed) of error / coherence limit against the median shots
    used, one colour per measured method; the start and the model optimum (0 shots) as
    horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    colours = {"textbook": "tab:blue", "nelder_mead": "tab:orange", "cmaes": "tab:green",
               "nelder_mead_vz": "tab:purple", "cmaes_vz": "tab:brown",
               "model_optimum": "black", "start": "tab:gray"}
    for method in MEASURED:
        pts = [e for e in summary if e["method"] == method and e["n"]]
        if not pts:
            continue
        x = [e["shots_median"] for e in pts]
        ax.plot(x, [e["ratio_median"] for e in pts], "o-", color=colours[method], label=f"{method} median")
        ax.plot(x, [e["ratio_p90"] for e in pts], "s--", color=colours[method], alpha=0.6, label=f"{method} p90")
    for method, style in (("start", ":"), ("model_optimum", "-.")):
        for e in summary:
            if e["method"] == method and e["n"]:
                ax.axhline(e["ratio_median"], color=colours[method], ls=style,
                           label=f"{method.replace('_', ' ')} median ({e['ratio_median']:.2f}, 0 shots)")
                ax.axhline(e["ratio_p90"], color=colours[method], ls=style, alpha=0.4,
                           label=f"{method.replace('_', ' ')} p90 ({e['ratio_p90']:.2f})")
    ax.axhline(1.0, color="tab:red", lw=0.8, label="coherence limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Ticks at the budgets, in thousands: log-axis minor labels collide at these ranges.
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator([float(b) for b in settings.budgets]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
    ax.set_xlabel("shots used (median over devices)")
    ax.set_ylabel("true 1 − F / coherence limit")
    gate = {"cz": "CZ (as set)", "cr": "ECR (virtual Z)"}[settings.gate]
    system = "open" if settings.open_system else "closed"
    ax.set_title(f"{gate}: {settings.n_devices} held-out devices\n{system}-system calibration, "
                 "scored on the open-system truth", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gate", choices=sorted(GATES), default="cz")
    ap.add_argument("--n-devices", type=int, default=5)
    ap.add_argument("--budgets", type=int, nargs="+", default=None,
                    help="shot budgets (default: 12000 24000 48000 for cz, 4000 8000 16000 for cr)")
    ap.add_argument("--open-system", action="store_true", help="calibrate on open-system devices (slow)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first-device", type=int, default=0, help="index of the first held-out device")
    ap.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                    help="default: all (for cr: all but the CZ-only *_vz)")
    ap.add_argument("--shape", choices=list(cz.CZ_SHAPES), default="flat_top",
                    help="the CZ's flux-pulse shape of the textbook and the model optimum")
    ap.add_argument("--ecr-x-drag", choices=list(ECR_X_DRAG), default="off",
                    help="the ECR's echo and tomography pulses: plain Gaussians or first-order DRAG")
    ap.add_argument("--ecr-model-starts", type=int, default=1,
                    help="CR-phase starts of the ECR's model optimum (spread over 2π)")
    ap.add_argument("--ecr-rotary-turns", type=float, default=0.0,
                    help="the textbook ECR's rotary tone, target turns per CR half (0: none)")
    ap.add_argument("--ecr-half-samples", type=int, default=120, help="samples of one CR half")
    ap.add_argument("--cz-idles", choices=list(CZ_IDLES), default="fixed",
                    help="the textbook CZ leakage probe's second idle (TwoQubitEvalSettings.cz_idles)")
    ap.add_argument("--ecr-prior-amp", type=float, default=None,
                    help="the textbook ECR's prior width of its relative amplitude updates (shrinkage; none: off)")
    ap.add_argument("--ecr-prior-phase", type=float, default=None,
                    help="the textbook ECR's prior width of its phase updates, rad (shrinkage; none: off)")
    ap.add_argument("--ecr-accept-check", action="store_true",
                    help="the textbook ECR's closing check: keep the start unless the calibrated is measured better")
    ap.add_argument("--out", type=Path, default=Path("runs/two_qubit_eval"))
    ap.add_argument("--replot", action="store_true", help="redraw the plot and table from <out>/results.json only")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="merge the results.json of runs over disjoint device ranges into --out")
    a = ap.parse_args(argv)
    if a.replot or a.merge:
        paths = [d / "results.json" for d in (a.merge or [a.out])]
        saved = merge_results([json.loads(p.read_text(encoding="utf-8")) for p in paths])
        write_outputs(saved, a.out)
        print(markdown_table(saved["summary"], saved["settings"]["gate"]))
        return
    budgets = a.budgets or ([12_000, 24_000, 48_000] if a.gate == "cz" else [4_000, 8_000, 16_000])
    methods = a.methods or [m for m in METHODS if a.gate == "cz" or m not in CZ_ONLY]
    s = TwoQubitEvalSettings(a.gate, a.n_devices, tuple(budgets), a.open_system, a.seed, tuple(methods),
                             a.first_device, a.shape, a.ecr_x_drag, a.ecr_model_starts,
                             a.ecr_rotary_turns, a.ecr_half_samples, cz_idles=a.cz_idles,
                             ecr_prior_amp=a.ecr_prior_amp, ecr_prior_phase=a.ecr_prior_phase,
                             ecr_accept_check=a.ecr_accept_check)
    res = evaluate_two_qubit(s, a.out)
    print(markdown_table(res["summary"], s.gate))


if __name__ == "__main__":
    main()


__all__ = ["METHODS", "TwoQubitEvalSettings", "draw_start", "evaluate_two_qubit", "held_out_devices",
           "markdown_table", "merge_results", "plot_error_vs_shots", "score", "summarise", "textbook_for_budget",
           "write_outputs"]
