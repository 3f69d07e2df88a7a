"""The CZ calibration as maintenance looks at it: a tighter cheap check that corrects the
single-qubit phases itself when only they moved.

What drifts a flux CZ over hours is the tunable qubit's frequency at the pulse's plateau
(its idle flux bias, first order there): the dynamic phase the pulse leaves on each qubit
moves first, the conditional phase (set by the |11⟩–|20⟩ exchange) much less. So
``MaintainedCZ`` is ``CZCalibration`` (same parameters, same full experiment, same
verdict) with a check_data form for maintenance:

1. the reference probes and one check round at the stored values (``CZCalibration``'s
   cheap form): in spec while the round's estimated error is at most
   ``check_max_estimated_error`` (tighter than the full calibration's verdict, which a
   bring-up can pass with a CZ still at 2x its coherence limit) and the conditional phase
   is within ``phase_tolerance_rad`` of π;
2. out of spec with the conditional phase still within ``correct_phase_tolerance_rad`` of
   π: the textbook's two single-qubit-phase rounds (one gate, then three) from the stored
   values, returned as the node's new phases (``out_of_spec`` with values: maintenance's
   ``check_corrects`` takes them, and the node's next look verifies them);
3. otherwise ``out_of_spec`` without values (or ``bad_data`` if the reference has no
   contrast): the full calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..experiment import ExperimentResult, Status, target_name
from .common import check_float
from .cz import CZCalibration, _result, _setup, _textbook
from .pulses import param


@dataclass(frozen=True)
class MaintainedCZ(CZCalibration):
    """``CZCalibration`` with maintenance's check (module docstring).

    Settings beyond ``CZCalibration``'s: ``check_max_estimated_error`` (the check's in-spec
    bound on the round's estimated error), ``correct_phase_tolerance_rad`` (how far the
    conditional phase may be from π for the check to correct the single-qubit phases
    itself instead of asking for the full calibration)."""

    check_max_estimated_error: float = 0.012
    correct_phase_tolerance_rad: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        n = "MaintainedCZ"
        check_float(n, "check_max_estimated_error", self.check_max_estimated_error, 1e-5, 1.0)
        check_float(n, "correct_phase_tolerance_rad", self.correct_phase_tolerance_rad, 1e-3, math.pi)

    def shots(self, cheap: bool) -> int:
        if cheap:  # the most a check costs: the round, and the two phase rounds of a correction
            return 7 * self.shots_reference + 3 * 8 * self.shots_round
        return super().shots(cheap)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if not cheap:
            return super().run(device, target, params, rng)
        pair, roles, timed, dev = _setup(device, target, params, self.gate)
        t = target_name(pair)
        a, b = pair
        tb = _textbook(device, shots_round=self.shots_round, shots_reference=self.shots_reference)
        phase = {q: params.get(f"{t}.cz_phase_{k}_rad", 0.0) for q, k in ((a, "a"), (b, "b"))}
        knobs = np.array([param(params, t, "cz_amplitude_phi0"), param(params, t, "cz_length_s"),
                          phase[roles.control], phase[roles.tunable]], dtype=np.float64)
        tb.reference(dev)
        r = tb.check(dev, knobs)
        err = float(r.estimated_error[0])
        cond = float(r.conditional_phase[0])
        cond_off = abs(math.remainder(cond - math.pi, 2 * math.pi))
        quality = {"estimated_error": err, "conditional_phase_rad": cond,
                   "control_phase_rad": float(r.control_phase[0]), "target_phase_rad": float(r.target_phase[0]),
                   "p11_after_1": float(r.eleven[0][0, 3]), "p11_after_3": float(r.eleven[0][1, 3])}
        msg = (f"{t} check: estimated error {err:.3g} (max {self.check_max_estimated_error:g}), conditional "
               f"phase {cond:.3f} rad")
        if not math.isfinite(err):
            return _result(self.name, pair, "bad_data", timed, {}, quality, {}, f"{msg}: no estimate")
        if err <= self.check_max_estimated_error and cond_off <= self.phase_tolerance_rad:
            return _result(self.name, pair, "in_spec", timed, {}, quality, {}, msg)
        status: Status = "out_of_spec"
        if cond_off > self.correct_phase_tolerance_rad:
            return _result(self.name, pair, status, timed, {}, quality, {},
                           f"{msg}: the conditional phase moved (> {self.correct_phase_tolerance_rad:g} rad "
                           "from π), the full calibration is needed")
        new = tb.single_qubit_phases(dev, knobs)
        ph = {roles.control: float(new[2]), roles.tunable: float(new[3])}
        values = {f"{t}.cz_phase_a_rad": ph[a], f"{t}.cz_phase_b_rad": ph[b]}
        return _result(self.name, pair, status, timed, values, quality, {},
                       f"{msg}: single-qubit phases corrected to {ph[a]:.3f}, {ph[b]:.3f} rad")


__all__ = ["MaintainedCZ"]
