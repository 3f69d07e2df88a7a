"""The check every export passes before its manifest is written: the ONNX graph must
reproduce SB3's own ``predict`` on random observations in and beyond the observation box."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from pulsecal.agents.export.metadata import ExportCheck, ObservationNormalisation

# --------------------------------------------------------------------------- parity


def sample_observations(space: spaces.Box, n: int, rng: np.random.Generator, *, beyond: float = 0.5) -> NDArray[np.float64]:
    """``n`` observations (float64, shape (n, *space.shape)) in and beyond ``space``.

    Bounded coordinates are drawn uniformly from the box widened by ``beyond`` of its width
    on each side, so about half the samples leave it; unbounded ones from N(0, 10²).
    """
    shape = tuple(space.shape or ())
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape)
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape)
    bounded = np.isfinite(low) & np.isfinite(high)
    width = np.where(bounded, high - low, 0.0)
    lo = np.where(bounded, low - beyond * width, 0.0)
    hi = np.where(bounded, high + beyond * width, 0.0)
    uniform = rng.uniform(size=(n, *shape)) * (hi - lo) + lo
    normal = rng.normal(scale=10.0, size=(n, *shape))
    return np.where(bounded, uniform, normal)


def reference_actions(
    model: BaseAlgorithm, vec_normalize: VecNormalize | ObservationNormalisation | None, observations: NDArray[Any]
) -> NDArray[np.float32]:
    """SB3's deterministic actions for a batch of raw observations (feed-forward policies).

    This is the ground truth the export is checked against: ``model.predict`` on the
    observation as VecNormalize would hand it to the policy.
    """
    obs = _normalised(vec_normalize, observations)
    actions, _ = model.predict(obs, deterministic=True)
    return np.asarray(actions, dtype=np.float32)


def _normalised(vec_normalize: VecNormalize | ObservationNormalisation | None, observations: NDArray[Any]) -> NDArray[Any]:
    if vec_normalize is None:
        return observations
    if isinstance(vec_normalize, ObservationNormalisation):
        return vec_normalize.apply(observations)
    return np.asarray(vec_normalize.normalize_obs(observations))


def check_graph(
    data: bytes,
    model: BaseAlgorithm,
    norm: ObservationNormalisation | None,
    recurrent: bool,
    samples: int,
    tolerance: float,
    seed: int,
) -> ExportCheck:
    """Run the serialised graph in onnxruntime against SB3 on random observations."""
    from pulsecal.agents.runner import _make_session

    # The very session settings the lab runner uses, so the check covers what the lab runs.
    session = _make_session(data)
    rng = np.random.default_rng(seed)
    space = model.policy.observation_space
    assert isinstance(space, spaces.Box)
    obs = sample_observations(space, samples, rng)
    if recurrent:
        n_layers, _, hidden = model.policy.lstm_hidden_state_shape  # type: ignore[misc]
        h = rng.normal(size=(n_layers, samples, hidden)).astype(np.float32)
        c = rng.normal(size=(n_layers, samples, hidden)).astype(np.float32)
        expected, next_state = model.predict(
            _normalised(norm, obs), state=(h, c), episode_start=np.zeros(samples, dtype=bool), deterministic=True
        )
        assert next_state is not None
        eh, ec = next_state
        got, gh, gc = session.run(None, {"observation": obs, "lstm_h": h, "lstm_c": c})
        diff = max(_max_abs(got, expected), _max_abs(gh, eh), _max_abs(gc, ec))
    else:
        expected = reference_actions(model, norm, obs)
        (got,) = session.run(None, {"observation": obs})
        diff = _max_abs(got, expected)
    if not diff <= tolerance:
        raise RuntimeError(
            f"exported graph differs from SB3 predict by {diff:.3g} on {samples} observations: "
            f"allowed <= {tolerance:g}; nothing was written"
        )
    return ExportCheck(samples=samples, max_abs_diff=diff, tolerance=tolerance)


def _max_abs(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(a.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0
