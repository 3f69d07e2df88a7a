"""The ECR node of a fixed-frequency pair: the textbook echoed cross-resonance calibration.

``agents.baselines.ecr_textbook.TextbookECR`` (Sheldon et al. 2016: CR Hamiltonian
tomography, the CR phase, the cancellation tone, the ZX(π/2) amplitude, fine amplitude by
repeated gates) on the pair through ``pair.PairDevice`` with the drive plays renamed only.
The ECR code scales its own single-qubit pulses from a Rabi rate: the node derives that
rate from the store, 1/(2·A_π·area) of the calibrated DRAG π pulse of each qubit (mean of
the two). The control is the pair's higher-frequency qubit (as on ``two_transmons_cr``),
its line driven at the target's frame (``drive:<control>@<target>``).

Parameters of pair ``a-b``: ``a-b.ecr_cr_amp``, ``a-b.ecr_cr_phase_rad``,
``a-b.ecr_cancel_amp``, ``a-b.ecr_cancel_phase_rad`` (the ``ECRKnobs``) and
``a-b.ecr_half_error``. The start is ``start_cr_amp`` at phase 0 with no cancellation
tone, or the stored knobs when present. After the textbook's rounds, one more tomography
at the result measures ``half_cr_error``: the squared distance of the target's Bloch
vectors after one CR half from an ideal RZX(±π/4). The node is ``in_spec`` while that is
at most ``max_half_error``, else ``out_of_spec`` with the values (the next attempt
starts there). Its check_data form is that tomography alone. Only pairs without a flux
line get this node (``applies_to``); two-qubit RB of the ECR is not wired (``RB2Q``
runs the CZ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ....envs import cr_calibration_core as cr
from ....envs.drag import DragGate
from ...baselines.ecr_textbook import TextbookECR, _Counter
from ..experiment import ExperimentResult, Status, target_name
from .common import check_float, check_int, repetition_time_s
from .pair import QUBIT_READS, PairDevice, PairRoles, is_tunable_pair
from .pulses import DEFAULT_GATE, param

KNOBS = ("cr_amp", "cr_phase_rad", "cancel_amp", "cancel_phase_rad")


@dataclass(frozen=True)
class ECRCalibration:
    """Settings: the textbook's ``rounds``, ``lengths_samples``, ``shots`` per sequence,
    ``fine_points``, ``fine_step``, ``fine_repeats`` and ``shape``; ``start_cr_amp`` (the
    CR amplitude without a stored one), ``max_half_error`` (the verdict), ``gate`` (the
    single-qubit DRAG pulse whose π amplitude gives the Rabi rate)."""

    rounds: int = 2
    lengths_samples: tuple[int, ...] = (40, 80, 120, 160)
    shots_per_sequence: int = 250
    fine_points: int = 5
    fine_step: float = 0.05
    fine_repeats: int = 8
    shape: cr.ECRShape = field(default_factory=cr.ECRShape)
    start_cr_amp: float = 0.5
    max_half_error: float = 0.05
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "ECRCalibration"
        check_int(n, "rounds", self.rounds, 1, 20)
        check_int(n, "shots_per_sequence", self.shots_per_sequence, 16, 10**6)
        check_float(n, "start_cr_amp", self.start_cr_amp, 1e-3, 1.0)
        check_float(n, "max_half_error", self.max_half_error, 1e-6, 4.0)
        self._textbook(50e6)  # the textbook checks its own settings

    def _textbook(self, rabi_hz: float) -> TextbookECR:
        return TextbookECR(shape=self.shape, rabi_hz=rabi_hz, lengths_samples=tuple(self.lengths_samples),
                           shots=self.shots_per_sequence, rounds=self.rounds, fine_points=self.fine_points,
                           fine_step=self.fine_step, fine_repeats=self.fine_repeats)

    def applies_to(self, target: tuple[str, ...], channels: Sequence[str]) -> bool:
        """Only pairs without a flux line get an ECR (the graph builder asks)."""
        return not is_tunable_pair(target, channels)

    @property
    def name(self) -> str:
        return "ecr_calibration"

    @property
    def reads(self) -> tuple[str, ...]:
        return QUBIT_READS

    @property
    def writes(self) -> tuple[str, ...]:
        return (*(f"{{t}}.ecr_{k}" for k in KNOBS), "{t}.ecr_half_error")

    def shots(self, cheap: bool) -> int:
        check = 6 * len(self.lengths_samples) * self.shots_per_sequence
        return check if cheap else self._textbook(50e6).min_budget() + check

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if not (isinstance(target, tuple) and len(target) == 2):
            raise ValueError(f"{self.name}: target={target!r}: allowed a pair of qubit names ('q0', 'q1')")
        a, b = target[0], target[1]
        t = target_name(target)
        control, tgt = (a, b) if param(params, a, "frequency_hz") >= param(params, b, "frequency_hz") else (b, a)
        dt = float(device.dt_s)
        area = self.gate.area_s(dt)
        rabi = float(np.mean([1.0 / (2.0 * param(params, q, "pi_amplitude") * area) for q in (control, tgt)]))
        pair = PairDevice(device, PairRoles(control=control, tunable=tgt), params, self.gate, replace_single=False)
        tb = self._textbook(rabi)
        stored = all(f"{t}.ecr_{k}" in params for k in KNOBS)
        start = cr.ECRKnobs(*(float(np.clip(params[f"{t}.ecr_{k}"], 0, 1)) if k.endswith("amp")
                              else float(params[f"{t}.ecr_{k}"]) for k in KNOBS)) if stored else \
            cr.ECRKnobs(self.start_cr_amp)
        used = 0
        knobs = start
        hams: list[dict[str, float]] = []
        if not cheap:
            res = tb.run(pair, start, tb.min_budget())  # type: ignore[arg-type]
            knobs, used = res.knobs, res.shots_used
            hams = [h.as_dict() for h in res.hamiltonians]
        counter = _Counter(pair, tb.min_budget())  # type: ignore[arg-type]
        tau, bloch = tb.tomography(counter, knobs, dt)
        used += counter.used
        errs = np.asarray(cr.half_cr_error(bloch))  # per tomography length; the half is the shape's own
        k_half = int(np.argmin(np.abs(np.asarray(self.lengths_samples) - self.shape.half_samples)))
        err = float(errs[k_half])
        values = {f"{t}.ecr_cr_amp": knobs.cr_amp, f"{t}.ecr_cr_phase_rad": knobs.cr_phase_rad,
                  f"{t}.ecr_cancel_amp": knobs.cancel_amp, f"{t}.ecr_cancel_phase_rad": knobs.cancel_phase_rad,
                  f"{t}.ecr_half_error": err}
        status: Status = "in_spec" if err <= self.max_half_error else "out_of_spec"
        rep = repetition_time_s(device)
        data = {"kind": "curve", "x": [float(n) for n in self.lengths_samples],
                "y": [float(v) for v in bloch[:, 0, 1]], "x_label": "CR length (samples)",
                "y_label": "target ⟨y⟩, control |0⟩", "y_control_1": [float(v) for v in bloch[:, 1, 1]],
                "bloch": bloch.tolist(), "tau_s": [float(x) for x in tau], "hamiltonians": hams,
                "control": control, "target": tgt, "rabi_hz": rabi}
        msg = (f"{t} ECR ({control} → {tgt}): half-CR error {err:.3g} (max {self.max_half_error:g}), CR amp "
               f"{knobs.cr_amp:.4f} at {knobs.cr_phase_rad:+.3f} rad, cancel {knobs.cancel_amp:.4f}")
        return ExperimentResult(self.name, target, status, {} if cheap else values,
                                {"half_cr_error": err, "rabi_hz": rabi}, used, used * rep, data, msg)


__all__ = ["ECRCalibration"]
