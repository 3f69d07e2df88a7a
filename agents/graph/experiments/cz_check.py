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
2. a first round that says out of spec is not believed alone: one round of 200 shots reads
   the phases to ~0.1-0.3 rad, and the estimate is quadratic in them, so a fresh ring_8 CZ
   of true error ~5e-3 reads anywhere from 5e-3 to 4e-2, and the reference's |11⟩
   fraction (300 shots) is as noisy. ``confirm_rounds`` more looks (reference and round)
   at the same values are pooled with it (the rounds' counts added, the references
   averaged), and the pooled reading decides: a sequential test whose second look costs shots only when the
   first is ambiguous;
3. confirmed out of spec with the conditional phase still within
   ``correct_phase_tolerance_rad`` of π: the textbook's two single-qubit-phase rounds (one
   gate, then three) from the stored values, then (``verify_correction``) one round at the
   corrected phases. In spec there: returned as the node's new phases (``out_of_spec`` with
   values: maintenance's ``check_corrects`` takes them); not: ``out_of_spec`` without
   values, so the correction escalates to the full calibration instead of leaving a CZ
   whose conditional phase or leakage moved with only its phases touched;
4. otherwise ``out_of_spec`` without values (or ``bad_data`` if the reference has no
   contrast): the full calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs import cz_calibration_core as core
from ..experiment import ExperimentResult, Status, target_name
from .common import check_float
from .cz import CZCalibration, _result, _setup, _textbook
from .pulses import param


@dataclass(frozen=True)
class MaintainedCZ(CZCalibration):
    """``CZCalibration`` with maintenance's check (module docstring).

    Settings beyond ``CZCalibration``'s: ``check_max_estimated_error`` (the check's in-spec
    bound on the estimated error), ``correct_phase_tolerance_rad`` (how far the conditional
    phase may be from π for the check to correct the single-qubit phases itself instead of
    asking for the full calibration), ``confirm_rounds`` (rounds pooled with a first round
    that says out of spec, 0-4), ``verify_correction`` (a round at the corrected phases must
    be in spec for the correction to stand)."""

    check_max_estimated_error: float = 0.012
    correct_phase_tolerance_rad: float = 0.25
    confirm_rounds: int = 1
    verify_correction: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        n = "MaintainedCZ"
        check_float(n, "check_max_estimated_error", self.check_max_estimated_error, 1e-5, 1.0)
        check_float(n, "correct_phase_tolerance_rad", self.correct_phase_tolerance_rad, 1e-3, math.pi)
        c = self.confirm_rounds
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 4:
            raise ValueError(f"{n}.confirm_rounds={c!r} is out of range: allowed an integer in [0, 4]")
        if not isinstance(self.verify_correction, bool):
            raise ValueError(f"{n}.verify_correction={self.verify_correction!r}: allowed true or false")

    def shots(self, cheap: bool) -> int:
        if cheap:  # the most a check costs: its rounds, the two phase rounds and the verification
            looks = 1 + self.confirm_rounds
            rounds = looks + 2 + int(self.verify_correction)
            return looks * 7 * self.shots_reference + rounds * 8 * self.shots_round
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
        refs = [tb.reference(dev)]
        counts = _round_counts(dev, tb, knobs)
        r = core.analyse(counts[None], gates=1, repeats=3, offsets=refs[0])
        looks = 1
        if not self._passes(r) and math.isfinite(float(r.estimated_error[0])):
            # The reference (its |11⟩ fraction at 300 shots: ~4e-3 on the loss part) is as
            # noisy as the round, so each look repeats both.
            for _ in range(self.confirm_rounds):
                refs.append(tb.reference(dev))
                counts = counts + _round_counts(dev, tb, knobs)
                looks += 1
            r = core.analyse(counts[None], gates=1, repeats=3, offsets=_pooled_offsets(refs))
        offsets = _pooled_offsets(refs)
        err = float(r.estimated_error[0])
        cond = float(r.conditional_phase[0])
        cond_off = abs(math.remainder(cond - math.pi, 2 * math.pi))
        quality = {"estimated_error": err, "conditional_phase_rad": cond,
                   "control_phase_rad": float(r.control_phase[0]), "target_phase_rad": float(r.target_phase[0]),
                   "p11_after_1": float(r.eleven[0][0, 3]), "p11_after_3": float(r.eleven[0][1, 3]),
                   "check_rounds": float(looks)}
        msg = (f"{t} check ({looks} round{'s' if looks > 1 else ''}): estimated error {err:.3g} (max "
               f"{self.check_max_estimated_error:g}), conditional phase {cond:.3f} rad")
        if not math.isfinite(err):
            return _result(self.name, pair, "bad_data", timed, {}, quality, {}, f"{msg}: no estimate")
        if self._passes(r):
            return _result(self.name, pair, "in_spec", timed, {}, quality, {}, msg)
        status: Status = "out_of_spec"
        if cond_off > self.correct_phase_tolerance_rad:
            return _result(self.name, pair, status, timed, {}, quality, {},
                           f"{msg}: the conditional phase moved (> {self.correct_phase_tolerance_rad:g} rad "
                           "from π), the full calibration is needed")
        new = tb.single_qubit_phases(dev, knobs)
        ph = {roles.control: float(new[2]), roles.tunable: float(new[3])}
        msg = f"{msg}: single-qubit phases corrected to {ph[a]:.3f}, {ph[b]:.3f} rad"
        if self.verify_correction:
            v = core.analyse(_round_counts(dev, tb, new)[None], gates=1, repeats=3, offsets=offsets)
            quality["corrected_estimated_error"] = float(v.estimated_error[0])
            if not self._passes(v):
                return _result(self.name, pair, status, timed, {}, quality, {},
                               f"{msg}, which the verification round does not pass (estimated error "
                               f"{float(v.estimated_error[0]):.3g}, conditional phase "
                               f"{float(v.conditional_phase[0]):.3f} rad): the full calibration is needed")
        values = {f"{t}.cz_phase_a_rad": ph[a], f"{t}.cz_phase_b_rad": ph[b]}
        return _result(self.name, pair, status, timed, values, quality, {}, msg)

    def _passes(self, r: core.CZReadings) -> bool:
        err = float(r.estimated_error[0])
        cond_off = abs(math.remainder(float(r.conditional_phase[0]) - math.pi, 2 * math.pi))
        return err <= self.check_max_estimated_error and cond_off <= self.phase_tolerance_rad


def _pooled_offsets(refs: list[np.ndarray]) -> np.ndarray:
    """The mean of references of equal shots (their phases on the circle, the |11⟩ fraction
    as it is)."""
    r = np.asarray(refs, dtype=np.float64).reshape(len(refs), -1, 4)
    out = r.mean(axis=0)
    out[:, :3] = np.angle(np.exp(1j * r[:, :, :3]).mean(axis=0))
    return out


def _round_counts(dev: Any, tb: Any, knobs: np.ndarray) -> np.ndarray:
    """The counts (8, 4) of one check round (the textbook's ``check``, one gate), so rounds
    at the same values can be pooled before one analysis."""
    s = tb.shots["round"]
    f = dev.run("check", core.probe_sequences(tb.pulse, knobs, repeats=3, gates=1), s)
    return np.rint(np.asarray(f) * s).astype(np.int64)


__all__ = ["MaintainedCZ"]
