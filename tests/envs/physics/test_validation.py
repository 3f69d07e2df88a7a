"""Bad input fails loudly, with a message that names the offending thing."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics import Transmon, gate_fidelity, superoperators, unitaries

TR = Transmon()


@pytest.mark.parametrize("fn", [unitaries, superoperators])
@pytest.mark.parametrize(
    ("waveforms", "match"),
    [
        (np.array([0.1, np.nan, 0.2]), r"waveforms\[0, 1\] is not finite"),
        (np.array([[0.1, 0.2], [np.inf, 0.0]]), r"waveforms\[1, 0\] is not finite"),
        (np.array([0.1, 1j * np.inf]), "not finite"),
        (np.array([0.5, 0.9 + 0.5j]), r"waveforms\[0, 1\] has \|u\| = 1\.02956"),
        (np.array([1.5]), r"\|u\| <= 1"),
        (np.zeros((2, 3, 4)), r"waveforms has shape \(2, 3, 4\)"),
        (np.zeros((2, 0)), r"waveforms has shape \(2, 0\)"),
        (np.zeros(0), "need at least one pulse and one sample"),
        (np.array(["a", "b"]), "waveforms cannot be read as complex"),
    ],
)
def test_bad_waveforms(fn, waveforms: np.ndarray, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        fn(TR, waveforms)


def test_t2_above_twice_t1() -> None:
    with pytest.raises(ValueError, match=r"t2_s=.*<= 2·t1_s"):
        Transmon(t1_s=10e-6, t2_s=25e-6)
    Transmon(t1_s=10e-6, t2_s=20e-6)  # the bound itself is allowed (no pure dephasing)


@pytest.mark.parametrize(("field", "value"), [("levels", 1), ("rabi_max_hz", 0.0),
                                              ("dt_s", -1e-9), ("t1_s", float("nan"))])
def test_bad_transmon_fields(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Transmon(**{field: value})


@pytest.mark.parametrize("fn", [unitaries, superoperators])
def test_unknown_engine(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"engine='scipy' is unknown: allowed \['numpy'"):
        fn(TR, np.zeros(3), engine="scipy")


def test_per_row_transmons_must_match_the_batch_and_each_other() -> None:
    with pytest.raises(ValueError, match="transmon is a sequence of 2 but waveforms has 3"):
        unitaries((TR, TR), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"transmon\[1\] has levels=4"):
        unitaries((TR, TR.replace(levels=4)), np.zeros((2, 4)))


def test_metric_arguments() -> None:
    with pytest.raises(ValueError, match="kind='unitaries' is unknown"):
        gate_fidelity(np.eye(3), "X", kind="unitaries")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target='Z90' is unknown"):
        gate_fidelity(np.eye(3), "Z90", kind="unitary")
    with pytest.raises(ValueError, match="superoperator dimension 8"):
        gate_fidelity(np.eye(8), "X", kind="superoperator")
