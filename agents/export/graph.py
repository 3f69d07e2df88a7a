"""The exported computation as torch modules: raw observation in, deterministic action
out, the VecNormalize statistics and SB3's action post-processing folded in; traced to
ONNX (legacy TorchScript-based exporter, ``dynamo=False``) or TorchScript."""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from pulsecal.agents.export.metadata import ObservationNormalisation
from pulsecal.agents.runner import (
    ONNX_NAME,
)

# --------------------------------------------------------------------------- graph

# Opset 17 is read by every onnxruntime since 1.13 and covers LSTM, Clip with tensor
# bounds and Cast; a higher opset would buy the lab nothing.
DEFAULT_OPSET = 17


class _FeedForwardActor(th.nn.Module):
    """Raw float64 observation -> action in the Box, for PPO/A2C/SAC/TD3 policies."""

    def __init__(self, policy: BasePolicy, post: _Post) -> None:
        super().__init__()
        self.policy = policy
        self.post = post

    def forward(self, observation: th.Tensor) -> th.Tensor:
        x = self.post.normalise(observation)
        action = self.policy._predict(x, deterministic=True)
        return self.post.finish(action)


class _RecurrentActor(th.nn.Module):
    """Raw observation + LSTM (h, c) -> action in the Box + next (h, c), for RecurrentPPO.

    Episode starts are not a graph input: SB3 resets the state by multiplying it with
    ``1 - episode_start``, which is the same as passing zeros, so the runner starts each
    episode from ``initial_state()`` (zeros) instead.
    """

    def __init__(self, policy: BasePolicy, post: _Post) -> None:
        super().__init__()
        self.policy = policy
        self.post = post

    def forward(self, observation: th.Tensor, hidden: th.Tensor, cell: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        x = self.post.normalise(observation)
        # All zeros: no reset inside this one-step sequence, so SB3 takes its unrolled path.
        episode_starts = th.zeros_like(x.reshape(x.shape[0], -1)[:, 0])
        distribution, (h, c) = self.policy.get_distribution(x, (hidden, cell), episode_starts)  # type: ignore[operator]
        action = distribution.get_actions(deterministic=True)
        return self.post.finish(action), h, c


class _Post(th.nn.Module):
    """Observation normalisation before, and SB3's Box post-processing after, the network."""

    mean: th.Tensor
    std: th.Tensor
    low: th.Tensor
    high: th.Tensor

    def __init__(self, norm: ObservationNormalisation | None, action_space: spaces.Box, squash: bool) -> None:
        super().__init__()
        self.has_norm = norm is not None
        self.squash = squash
        self.action_shape = tuple(int(s) for s in action_space.shape)
        if norm is not None:
            self.register_buffer("mean", th.as_tensor(norm.mean, dtype=th.float64))
            # sqrt computed once in numpy, exactly as VecNormalize computes it.
            self.register_buffer("std", th.as_tensor(np.sqrt(norm.var + norm.epsilon), dtype=th.float64))
            self.clip_obs = float(norm.clip_obs)
        self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def normalise(self, observation: th.Tensor) -> th.Tensor:
        x = observation
        if self.has_norm:
            x = th.clamp((x - self.mean) / self.std, -self.clip_obs, self.clip_obs)
        return x.to(th.float32)

    def finish(self, action: th.Tensor) -> th.Tensor:
        a = action.reshape((-1, *self.action_shape))
        if self.squash:
            # BasePolicy.unscale_action: tanh output in [-1, 1] -> [low, high].
            a = self.low + 0.5 * (a + 1.0) * (self.high - self.low)
        # SB3 clips the unsquashed case; the squashed case is clipped too, which moves an
        # action by at most one rounding error but guarantees the Box to the lab.
        return th.maximum(th.minimum(a, self.high), self.low)


def _is_recurrent(policy: BasePolicy) -> bool:
    return hasattr(policy, "lstm_actor") and hasattr(policy, "lstm_hidden_state_shape")


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Trace without torch.distributions' argument checks (data-dependent Python branches the
    tracer can only freeze, warning each time) and without the legacy-exporter notice."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=th.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            # Said of LSTMs whose h0/c0 are not graph inputs; ours are.
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM.*")
            yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def build_actor(model: BaseAlgorithm, norm: ObservationNormalisation | None) -> tuple[th.nn.Module, bool]:
    policy = model.policy
    if not isinstance(policy.observation_space, spaces.Box):
        raise ValueError(f"observation space {policy.observation_space}: allowed a Box")
    if not isinstance(policy.action_space, spaces.Box):
        raise ValueError(f"action space {policy.action_space}: allowed a Box (pulsecal actions are Box(-1, 1))")
    if norm is not None and norm.mean.shape != policy.observation_space.shape:
        raise ValueError(
            f"normalisation shape {norm.mean.shape}: allowed the observation shape {policy.observation_space.shape}"
        )
    action_space = policy.action_space
    policy = policy.to("cpu")
    policy.set_training_mode(False)
    post = _Post(norm, action_space, bool(policy.squash_output))
    recurrent = _is_recurrent(policy)
    actor: th.nn.Module = _RecurrentActor(policy, post) if recurrent else _FeedForwardActor(policy, post)
    return actor.eval(), recurrent


def example_inputs(model: BaseAlgorithm, recurrent: bool) -> tuple[th.Tensor, ...]:
    obs_shape = tuple(model.policy.observation_space.shape or ())
    obs = th.zeros((2, *obs_shape), dtype=th.float64)
    if not recurrent:
        return (obs,)
    n_layers, _, hidden = model.policy.lstm_hidden_state_shape  # type: ignore[misc]
    h = th.zeros((n_layers, 2, hidden), dtype=th.float32)
    return (obs, h, h.clone())


def onnx_bytes(actor: th.nn.Module, inputs: tuple[th.Tensor, ...], recurrent: bool, opset: int) -> bytes:
    input_names = ["observation", "lstm_h", "lstm_c"] if recurrent else ["observation"]
    output_names = ["action", "lstm_h_out", "lstm_c_out"] if recurrent else ["action"]
    dynamic_axes: dict[str, dict[int, str]] = {"observation": {0: "batch"}, "action": {0: "batch"}}
    if recurrent:
        for name in ("lstm_h", "lstm_c", "lstm_h_out", "lstm_c_out"):
            dynamic_axes[name] = {1: "batch"}
    with tempfile.TemporaryDirectory() as tmp, _quiet_tracing(), th.no_grad():
        path = Path(tmp) / ONNX_NAME
        th.onnx.export(
            actor,
            inputs,
            path,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        data = path.read_bytes()
    import onnx  # only the exporter needs the checker; the runner never imports onnx

    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    return data


def torchscript_bytes(actor: th.nn.Module, inputs: tuple[th.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with _quiet_tracing(), th.no_grad():
        traced = th.jit.trace(actor, inputs, check_trace=False)
        th.jit.save(traced, buffer)
    return buffer.getvalue()
