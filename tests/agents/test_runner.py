"""The lab runner: integrity checks, refusal of bad observations, the session loop, and
that it loads and acts in a process where torch and stable-baselines3 cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

import pulsecal.agents.runner as runner_module
from pulsecal.agents.export import ExportMetadata, ObservationNormalisation, export_policy
from pulsecal.agents.runner import (
    ActionError,
    ObservationError,
    ObservationOutOfBoundsWarning,
    PolicyLoadError,
    PolicyMismatchError,
    PolicyState,
    load_policy,
    manifest_digest,
    session,
)

LABELS = ("cos_theta", "sin_theta", "omega_rad_s")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feed-forward export with folded normalisation and a TorchScript twin."""
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    norm = ObservationNormalisation(mean=np.array([0.1, -0.2, 0.3]), var=np.array([0.5, 2.0, 4.0]), epsilon=1e-8, clip_obs=10.0)
    meta = ExportMetadata(env_id="Pendulum-v1", observation_labels=LABELS, observation_units=("1", "1", "rad/s"))
    return export_policy(model, tmp_path_factory.mktemp("ff") / "export", vec_normalize=norm, metadata=meta, torchscript=True)


@pytest.fixture(scope="module")
def recurrent_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = RecurrentPPO(
        "MlpLstmPolicy", "Pendulum-v1", n_steps=32, batch_size=32, device="cpu", seed=0,
        policy_kwargs={"net_arch": [8], "lstm_hidden_size": 4},
    )
    return export_policy(model, tmp_path_factory.mktemp("rec") / "export", metadata=ExportMetadata(env_id="Pendulum-v1"))


@pytest.fixture()
def copy(folder: Path, tmp_path: Path) -> Path:
    """A private copy to tamper with."""
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def _rewrite_manifest(path: Path, edit: Any, *, redigest: bool = True) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    if redigest:
        manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------ integrity


def test_loads_and_acts(folder: Path) -> None:
    policy = load_policy(folder)
    action = policy.act(np.array([0.5, 0.5, 1.0]))
    assert action.shape == (1,) and action.dtype == np.float32
    assert policy.observation_labels == LABELS and policy.env_id == "Pendulum-v1"
    assert -2.0 <= float(action[0]) <= 2.0
    np.testing.assert_array_equal(policy.act(np.array([0.5, 0.5, 1.0], dtype=np.float32)), action)


def test_modified_byte_in_graph_is_refused(copy: Path) -> None:
    data = bytearray((copy / "policy.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(PolicyLoadError, match=r"policy\.onnx: sha256 does not match") as info:
        load_policy(copy)
    assert info.value.file == "policy.onnx"


def test_truncated_graph_is_refused(copy: Path) -> None:
    data = (copy / "policy.onnx").read_bytes()
    (copy / "policy.onnx").write_bytes(data[:-100])
    with pytest.raises(PolicyLoadError, match=r"policy\.onnx: .*truncated"):
        load_policy(copy)


def test_missing_graph_is_refused(copy: Path) -> None:
    (copy / "policy.onnx").unlink()
    with pytest.raises(PolicyLoadError, match=r"policy\.onnx: listed in the manifest but missing"):
        load_policy(copy)


def test_every_listed_file_is_verified(copy: Path) -> None:
    with open(copy / "policy.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(PolicyLoadError, match=r"policy\.pt: "):
        load_policy(copy)


def test_symlinked_file_is_refused(copy: Path) -> None:
    real = copy.parent / "elsewhere.onnx"
    (copy / "policy.onnx").rename(real)
    (copy / "policy.onnx").symlink_to(real)
    with pytest.raises(PolicyLoadError, match=r"policy\.onnx: .*not a regular file"):
        load_policy(copy)


def test_missing_manifest_is_refused(copy: Path) -> None:
    (copy / "manifest.json").unlink()
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: missing"):
        load_policy(copy)


def test_edited_manifest_is_refused(copy: Path) -> None:
    # A plausible edit (relabel a unit) without recomputing the digest.
    _rewrite_manifest(copy, lambda m: m["observation"]["units"].__setitem__(2, "Hz"), redigest=False)
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: content does not match its manifest_sha256"):
        load_policy(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.__setitem__("schema_version", 2), "schema_version 2: this runner reads version 1"),
        (lambda m: m.__setitem__("schema_version", True), "schema_version True"),
        (lambda m: m.__setitem__("schema", "someone/else"), "schema 'someone/else'"),
        (lambda m: m.pop("files"), "section 'files' missing"),
        (lambda m: m["files"].pop("policy.onnx"), "files does not list policy.onnx"),
        (lambda m: m["files"].__setitem__("../../etc/passwd", m["files"]["policy.onnx"]), "not a plain file name"),
        (lambda m: m["files"]["policy.onnx"].__setitem__("sha256", "ABC"), "lowercase hex sha256"),
        (lambda m: m["observation"].__setitem__("labels", ["a"]), "observation.labels is not 3 strings"),
        (lambda m: m["action"].__setitem__("high", [None]), "action.low/high must be finite"),
        (lambda m: m["algorithm"].__setitem__("recurrent", True), "recurrent_state disagrees"),
    ],
)
def test_wrong_manifest_schema_is_refused(copy: Path, edit: Any, message: str) -> None:
    _rewrite_manifest(copy, edit)
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: ") as info:
        load_policy(copy)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text",
    ['{"schema": NaN}', '{"a": 1, "a": 2}', "not json", "[1, 2]", '{"schema": "pulsecal/policy-export"'],
)
def test_malformed_manifest_is_refused(copy: Path, text: str) -> None:
    (copy / "manifest.json").write_text(text)
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: "):
        load_policy(copy)


def test_graph_that_does_not_match_the_manifest_is_refused(copy: Path, recurrent_folder: Path) -> None:
    # A consistent-looking folder whose graph is another policy's: hashes updated, layout not.
    other = (recurrent_folder / "policy.onnx").read_bytes()
    (copy / "policy.onnx").write_bytes(other)
    import hashlib

    def swap(m: dict[str, Any]) -> None:
        m["files"]["policy.onnx"] = {"sha256": hashlib.sha256(other).hexdigest(), "bytes": len(other)}

    _rewrite_manifest(copy, swap)
    with pytest.raises(PolicyLoadError, match=r"policy\.onnx: graph inputs"):
        load_policy(copy)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="not a folder"):
        load_policy(tmp_path / "nothing")


# ------------------------------------------------------------------ observations


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        (np.zeros(4), r"shape \(4,\): allowed \(3,\)"),
        (np.zeros((1, 3)), r"shape \(1, 3\): allowed \(3,\)"),
        (np.zeros(()), r"shape \(\): allowed \(3,\)"),
        ([0.0, 0.0, 0.0], "is a list: allowed a numpy array"),
        (np.zeros(3, dtype=np.int64), "dtype int64"),
        (np.zeros(3, dtype=np.complex128), "dtype complex128"),
        (np.zeros(3, dtype=object), "dtype object"),
        (np.array([0.0, np.nan, 0.0]), "NaN/inf at 'sin_theta'"),
        (np.array([0.0, 0.0, -np.inf]), "NaN/inf at 'omega_rad_s'"),
    ],
)
def test_bad_observations_are_refused(folder: Path, observation: Any, message: str) -> None:
    policy = load_policy(folder)
    with pytest.raises(ObservationError, match=message):
        policy.act(observation)


def test_bad_batches_are_refused(folder: Path) -> None:
    policy = load_policy(folder)
    with pytest.raises(ObservationError, match="allowed"):
        policy.act_batch(np.zeros(3))
    with pytest.raises(ObservationError, match="allowed"):
        policy.act_batch(np.zeros((0, 3)))
    bad = np.zeros((5, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ObservationError, match="row 3, 'sin_theta'"):
        policy.act_batch(bad)
    assert policy.act_batch(np.zeros((5, 3), dtype=np.float16)).shape == (5, 1)


def test_out_of_bounds_policy(folder: Path) -> None:
    outside = np.array([0.0, 0.0, 50.0])  # Pendulum's |omega| <= 8
    with pytest.warns(ObservationOutOfBoundsWarning, match="'omega_rad_s'"):
        warned = load_policy(folder).act(outside)
    with pytest.raises(ObservationError, match=r"outside the training box at 'omega_rad_s': allowed \[-8.0, 8.0\]"):
        load_policy(folder, out_of_bounds="refuse").act(outside)
    np.testing.assert_array_equal(load_policy(folder, out_of_bounds="allow").act(outside), warned)
    with pytest.raises(ValueError, match="out_of_bounds"):
        load_policy(folder, out_of_bounds="ignore")  # type: ignore[arg-type]


def test_action_outside_the_box_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(folder)

    class Broken:
        def __init__(self, value: float) -> None:
            self.value = value

        def run(self, _outputs: Any, feeds: dict[str, Any]) -> list[np.ndarray]:
            return [np.full((feeds["observation"].shape[0], 1), self.value, dtype=np.float32)]

    monkeypatch.setattr(policy, "_session", Broken(5.0))
    with pytest.raises(ActionError, match="outside the action box"):
        policy.act(np.zeros(3))
    monkeypatch.setattr(policy, "_session", Broken(np.nan))
    with pytest.raises(ActionError, match="NaN/inf action"):
        policy.act(np.zeros(3))


# ------------------------------------------------------------------ recurrent


def test_recurrent_policy_carries_state_explicitly(recurrent_folder: Path) -> None:
    policy = load_policy(recurrent_folder, out_of_bounds="allow")
    assert policy.recurrent
    with pytest.raises(TypeError, match="act_with_state"):
        policy.act(np.zeros(3))
    state0 = policy.initial_state()
    assert [a.shape for a in state0.arrays] == [(1, 1, 4), (1, 1, 4)]
    obs = np.array([0.3, -0.9, 2.0])
    a1, s1 = policy.act_with_state(obs, state0)
    a2, s2 = policy.act_with_state(obs, s1)
    assert not np.array_equal(s1.arrays[0], s2.arrays[0]), "the state must evolve"
    # Same inputs, same outputs: the state is all the memory there is.
    np.testing.assert_array_equal(policy.act_with_state(obs, s1)[0], a2)
    np.testing.assert_array_equal(policy.act_with_state(obs, state0)[0], a1)
    # The state round-trips through a JSON journal.
    restored = PolicyState.from_json(json.loads(json.dumps(s1.to_json())))
    np.testing.assert_array_equal(policy.act_with_state(obs, restored)[0], a2)
    with pytest.raises(ValueError, match=r"state lstm_h: allowed a float32 array of shape \(1, 1, 4\)"):
        policy.act_with_state(obs, PolicyState((np.zeros((1, 1, 5), np.float32), s1.arrays[1])))
    with pytest.raises(ValueError, match="state has 0 arrays"):
        policy.act_with_state(obs, PolicyState())
    with pytest.raises(ValueError, match="NaN/inf"):
        policy.act_with_state(obs, PolicyState((np.full((1, 1, 4), np.nan, np.float32), s1.arrays[1])))


# ------------------------------------------------------------------ session


class ScriptedEnv:
    """An env-like backend that records the actions it was given."""

    def __init__(self, length: int = 5, obs_dim: int = 3) -> None:
        self.length = length
        self.obs_dim = obs_dim
        self.actions: list[np.ndarray] = []
        self.resets: list[int | None] = []
        self.options: list[dict[str, Any] | None] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.resets.append(seed)
        self.options.append(options)
        self.actions.clear()
        return np.zeros(self.obs_dim), {"shots": 0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.actions.append(action)
        n = len(self.actions)
        return np.full(self.obs_dim, 0.1 * n), -1.0, False, n >= self.length, {"shots": 100 * n}


def test_session_runs_until_truncation(folder: Path) -> None:
    policy = load_policy(folder)
    env = ScriptedEnv(length=5)
    seen: list[int] = []
    device = object()  # how pulsecal-replay hands the env its BackendDevice
    result = session(env, policy, max_steps=100, seed=3, options={"device": device}, on_step=lambda r: seen.append(r.index))
    assert env.resets == [3] and env.options == [{"device": device}]
    assert len(result.steps) == 5 and seen == [0, 1, 2, 3, 4]
    assert result.truncated and not result.terminated and not result.stopped
    assert result.total_reward == -5.0 and result.final_info == {"shots": 500}
    for record, applied in zip(result.steps, env.actions, strict=True):
        np.testing.assert_array_equal(record.action, applied)
        np.testing.assert_array_equal(record.action, policy.act(record.observation))


def test_session_stops_on_budget_and_callback(folder: Path) -> None:
    policy = load_policy(folder)
    assert len(session(ScriptedEnv(length=50), policy, max_steps=3).steps) == 3
    result = session(ScriptedEnv(length=50), policy, max_steps=50, on_step=lambda r: r.index < 1)
    assert result.stopped and len(result.steps) == 2


def test_session_refuses_a_backend_for_another_policy(folder: Path) -> None:
    policy = load_policy(folder)
    with pytest.raises(PolicyMismatchError, match="observation_space shape"):
        session(_with_space(ScriptedEnv(obs_dim=4), gym.spaces.Box(-1, 1, (4,))), policy, max_steps=1)
    env = gym.make("Pendulum-v1")
    env.spec.id = "pulsecal/Other-v0"  # type: ignore[union-attr]
    with pytest.raises(PolicyMismatchError, match="Other-v0"):
        session(env, policy, max_steps=1)


def _with_space(env: ScriptedEnv, space: gym.spaces.Box) -> ScriptedEnv:
    env.observation_space = space  # type: ignore[attr-defined]
    return env


def test_session_on_a_gymnasium_env_and_resume(recurrent_folder: Path) -> None:
    policy = load_policy(recurrent_folder, out_of_bounds="refuse")
    env = gym.make("Pendulum-v1", max_episode_steps=12)
    full = session(env, policy, max_steps=100, seed=5)
    assert full.truncated and len(full.steps) == 12
    # Interrupt after 4 steps, resume from the journaled observation + state: same actions.
    first = session(env, policy, max_steps=4, seed=5)
    # The env continues where it was interrupted (restoring it is the replay layer's job).
    resumed = session(env, policy, max_steps=3, start=(first.final_observation, first.final_state))
    for a, b in zip(resumed.steps, full.steps[4:7], strict=True):
        np.testing.assert_allclose(a.action, b.action, atol=1e-6)


# ------------------------------------------------------------------ torch-free


def test_runner_imports_only_numpy_onnxruntime_and_stdlib() -> None:
    tree = ast.parse(Path(runner_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names)
    assert third_party <= {"numpy", "onnxruntime"}, third_party
    assert not imported & {"pickle", "marshal", "shelve", "yaml"}


_BLOCKER = '''
import importlib.abc, sys

BLOCKED = {"torch", "stable_baselines3", "sb3_contrib", "gymnasium", "onnx", "yaml"}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this lab-runner test")
        return None


sys.meta_path.insert(0, Blocker())
'''

_LAB_SCRIPT = '''
import sys
import numpy as np

for name in ("torch", "stable_baselines3"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"blocker inactive: {name} imported")

from pulsecal.agents.runner import load_policy, session


class Env:
    def reset(self, *, seed=None, options=None):
        self.n = 0
        return np.array([1.0, 0.0, 0.0]), {}

    def step(self, action):
        self.n += 1
        return np.array([np.cos(self.n), np.sin(self.n), 0.5]), 0.0, False, self.n >= 3, {}


policy = load_policy(sys.argv[1])
print("ACTION", policy.act(np.array([1.0, 0.0, 0.0]))[0])
result = session(Env(), policy, max_steps=10)
print("STEPS", len(result.steps))
leaked = sorted(m for m in ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "onnx", "yaml") if m in sys.modules)
print("LEAKED", leaked)
'''


def test_runner_works_where_torch_cannot_be_imported(folder: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCKER))
    script = tmp_path / "lab.py"
    script.write_text(textwrap.dedent(_LAB_SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, str(script), str(folder)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    expected = load_policy(folder).act(np.array([1.0, 0.0, 0.0]))[0]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert float(lines["ACTION"]) == pytest.approx(float(expected), abs=1e-6)
    assert lines["STEPS"] == "3"
    assert lines["LEAKED"] == "[]"
