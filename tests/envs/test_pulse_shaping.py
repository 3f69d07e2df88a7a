"""PulseShaping-v0: privileged and measured rewards, targets, truth in info."""

from __future__ import annotations

import math

import numpy as np
import pytest
from env_helpers import powell_on_reward

from pulsecal.envs.physics import gate_fidelity, superoperators
from pulsecal.envs.pulse_shaping import PulseShapingEnv


@pytest.mark.parametrize("target", ["X", "SX", "H"])
def test_textbook_start_and_privileged_reward(target: str) -> None:
    env = PulseShapingEnv(target=target, action_mode="set")
    env.reset(seed=0)
    dim = env.action_space.shape[0]
    _, r, term, trunc, info = env.step(np.zeros(dim, dtype=np.float32))
    assert not term and not trunc
    # z = 0 is textbook DRAG at 6 ns, α/2π = −200 MHz: far from good (PHYSICS.md: ~1e-2).
    assert 1e-3 < 1 - info["fidelity"] < 0.2
    assert r == pytest.approx(-math.log10(1 - info["fidelity"] + 1e-6))
    assert info["shots_used"] == 0


def test_fidelity_in_info_matches_qutip() -> None:
    env = PulseShapingEnv(target="H")
    env.reset(seed=1)
    _, _, _, _, info = env.step(env.action_space.sample())
    tr = env.unwrapped.device.current_transmon()
    s = superoperators(tr, info["waveform"][None], engine="qutip")
    assert info["fidelity"] == pytest.approx(
        gate_fidelity(s, "H", kind="superoperator", virtual_z=True)[0], abs=1e-10)


def test_measured_reward_uses_shots_and_tracks_truth() -> None:
    env = PulseShapingEnv(reward_mode="measured", shots_per_probe=4000, action_mode="set",
                          report_truth=True)
    _, info0 = env.reset(seed=0)
    dim = env.action_space.shape[0]
    _, r_good, _, _, info_good = env.step(np.zeros(dim, dtype=np.float32))
    assert info0["shots_used"] == 4000 * 3  # ground reference + two repeat depths
    assert info_good["shots_used"] == 2 * 4000 * 3
    bad = np.zeros(dim, dtype=np.float32)
    bad[0] = -0.5  # −10 % amplitude (the estimate is monotonic only for small errors: it wraps)
    _, r_bad, _, _, info_bad = env.step(bad)
    assert info_bad["fidelity"] < info_good["fidelity"]
    assert r_bad < r_good


def test_delta_mode_moves_coordinates_and_clips() -> None:
    env = PulseShapingEnv(max_step=0.5)
    obs, _ = env.reset(seed=0, options={"initial_z": np.zeros(11)})
    for _ in range(3):
        obs, *_ = env.step(np.ones(11, dtype=np.float32))
    np.testing.assert_allclose(obs[:11], 1.0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"target": "CZ"}, "target"), ({"reward_mode": "oracle"}, "reward_mode"),
    ({"n_basis": -1}, "n_basis"), ({"action_mode": "add"}, "action_mode"),
])
def test_invalid_kwargs(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PulseShapingEnv(**kwargs)


def test_action_space_reaches_the_coherence_limit() -> None:
    """Powell over the privileged reward: from 3e-2 (textbook DRAG at 6 ns) to within
    1.5× the coherence limit, so the shaping coordinates are rich enough."""
    env = PulseShapingEnv(target="X", action_mode="set")
    env.reset(seed=0, options={"initial_z": np.zeros(11)})
    info = powell_on_reward(env, 11)
    assert 1 - info["fidelity"] < 1.5 * info["coherence_limit"]
    assert info["leakage"] < 1e-5
