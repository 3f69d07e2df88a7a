"""Structural properties on random devices and pulses (hypothesis): our engine returns
unitaries and CPTP maps, and agrees with the plain NumPy reference."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsecal.envs.physics import Transmon, superoperators, unitaries

from .conftest import random_waveforms


@st.composite
def devices(draw: st.DrawFn, max_levels: int = 5) -> Transmon:
    t1 = draw(st.floats(1e-6, 500e-6))
    return Transmon(
        levels=draw(st.integers(2, max_levels)),
        anharmonicity_hz=draw(st.floats(-400e6, -50e6)),
        rabi_max_hz=draw(st.floats(5e6, 500e6)),
        detuning_hz=draw(st.floats(-40e6, 40e6)),
        t1_s=t1,
        t2_s=draw(st.floats(0.05, 2.0)) * t1,
        dt_s=draw(st.sampled_from([0.25e-9, 1e-9, 2e-9, 4e-9])),
    )


SETTINGS = settings(max_examples=30, deadline=None)


def choi(s: np.ndarray) -> np.ndarray:
    """Choi matrix Σ_jk E_jk ⊗ Φ(E_jk) of a column-stacking superoperator (N², N²)."""
    n = math.isqrt(s.shape[0])
    out = np.zeros((n * n, n * n), dtype=complex)
    for j in range(n):
        for k in range(n):
            out[j * n:(j + 1) * n, k * n:(k + 1) * n] = s[:, j + k * n].reshape(n, n, order="F")
    return out


@SETTINGS
@given(tr=devices(), seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 19),
       samples=st.integers(1, 24))
def test_unitaries_are_unitary_and_match_reference(tr: Transmon, seed: int, batch: int,
                                                   samples: int) -> None:
    w = random_waveforms(np.random.default_rng(seed), batch, samples)
    u = unitaries(tr, w)
    eye = np.eye(tr.levels)
    assert np.max(np.abs(u @ np.swapaxes(u.conj(), 1, 2) - eye)) < 1e-12
    assert np.max(np.abs(u - unitaries(tr, w, engine="numpy-reference"))) < 1e-10


@SETTINGS
@given(tr=devices(max_levels=4), seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 9),
       samples=st.integers(1, 12))
def test_superoperators_are_cptp_and_match_reference(tr: Transmon, seed: int, batch: int,
                                                     samples: int) -> None:
    w = random_waveforms(np.random.default_rng(seed), batch, samples)
    s = superoperators(tr, w)
    n = tr.levels
    vec_eye = np.eye(n).reshape(-1, order="F")
    # Trace preservation: Tr(Φ(ρ)) = vec(I)ᵀ·S·vec(ρ) = vec(I)ᵀ·vec(ρ) for every ρ.
    assert np.max(np.abs(vec_eye @ s - vec_eye)) < 1e-12
    # Complete positivity: the Choi matrix is positive semidefinite.
    for one in s:
        c = choi(one)
        assert np.max(np.abs(c - c.conj().T)) < 1e-12
        assert np.linalg.eigvalsh(c).min() > -1e-11
    assert np.max(np.abs(s - superoperators(tr, w, engine="numpy-reference"))) < 1e-10
