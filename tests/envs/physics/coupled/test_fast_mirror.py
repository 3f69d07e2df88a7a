"""Lindblad superoperators by their Hermiticity symmetry: of two coherence-order blocks that
vec(ρ) -> vec(ρ†) swaps only one is propagated (the other is its conjugate image), and a
block mapped onto itself runs in the real basis. Both must give what the plain complex
computation of every block gives, and the reference."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics.coupled import fast
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.model import compile_model

from .test_fast_engine import BATCH, random_controls, random_model


@pytest.mark.parametrize("driven", [False, True])
@pytest.mark.parametrize("batch", [2, BATCH])  # the compiled loop and the BLAS path
def test_mirrored_blocks_match_the_plain_computation(monkeypatch, driven, batch):
    rng = np.random.default_rng(5)
    model = random_model(rng, (3, 3))
    controls = {k: v[:batch] for k, v in random_controls(rng, model, 4).items()
                if driven or k.startswith("flux:")}
    om = compile_model(model)
    reals = tuple(k for k in controls if k.startswith("flux:"))
    drives = tuple(k for k in controls if k.startswith("drive:"))
    assert fast._mirror(om, om.frame_hz if not drives else om.mode_frames_hz[1], reals, drives) is not None
    got = fast.superoperators(om, controls)
    monkeypatch.setattr(fast, "_mirror", lambda *a: None)
    plain = fast.superoperators(compile_model(model), controls)
    np.testing.assert_allclose(got, plain, atol=1e-12, rtol=0)
    np.testing.assert_allclose(got, ref.superoperators(model, controls), atol=1e-9, rtol=0)


def test_a_term_without_the_symmetry_has_no_mirror():
    om = compile_model(random_model(np.random.default_rng(2), (2, 2)))
    terms = fast._terms(om, om.frame_hz, (), (), True)
    assert fast._mirror(om, om.frame_hz, (), ()) is not None
    om._cache[f"fast:terms:{om.frame_hz!r}:():():True"] = terms * np.exp(0.3j)  # no longer Hermiticity-preserving
    om._cache.pop(f"fast:mirror:{om.frame_hz!r}:():()")
    assert fast._mirror(om, om.frame_hz, (), ()) is None
