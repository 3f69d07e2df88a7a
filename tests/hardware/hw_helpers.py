"""Shared helpers for the hardware tests: a fast simulated device, frames, limits, fakes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.physics import Transmon
from pulsecal.hardware.backend import (
    Artifact,
    Capabilities,
    JobHandle,
    Result,
    Violation,
    validate_against,
)
from pulsecal.hardware.guard import require_clearance
from pulsecal.hardware.ir import Frame, Program, recompute_hash
from pulsecal.hardware.package_data import emulator_platforms_dir
from pulsecal.hardware.safety import SafetyLimits

DT_S = 1e-9
DRIVE = Frame("q0_drive", "q0_drive", 5.0e9)


def make_device(seed: int = 0, *, open_system: bool = False) -> SimulatedDevice:
    """Closed-system 3-level transmon: the fault tests need counts, not decoherence."""
    params = DeviceParams(transmon=Transmon(dt_s=DT_S, rabi_max_hz=50e6))
    return SimulatedDevice(params, rng=np.random.default_rng(seed), open_system=open_system)


def make_limits(**changes: object) -> SafetyLimits:
    args: dict[str, object] = {
        "allowed_frames": (DRIVE,),
        "max_amplitude": 0.8,
        "max_slew_per_sample": 0.5,
        "max_pulse_duration_s": 200e-9,
        "max_program_duration_s": 2e-6,
        "max_drive_energy_s": 100e-9,
        "max_shots_per_job": 5000,
        "max_shots_per_day": 10_000_000,
        "max_frequency_offset_hz": 20e6,
    }
    args.update(changes)
    return SafetyLimits(**args)  # type: ignore[arg-type]


@dataclass
class FakeClock:
    """Wall clock and sleep for tests: sleeping advances time, nothing waits."""

    now_s: float = 1_700_000_000.0
    slept_s: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, duration_s: float) -> None:
        self.slept_s.append(duration_s)
        self.now_s += duration_s


class RecordingBackend:
    """A backend that runs nothing and records exactly what reached ``submit``."""

    name = "recording"

    def __init__(self, caps: Capabilities) -> None:
        self._caps = caps
        self.submitted: list[tuple[Artifact, int, str]] = []

    def capabilities(self) -> Capabilities:
        return self._caps

    def validate(self, program: Program) -> list[Violation]:
        return validate_against(program, self._caps)

    def compile(self, program: Program) -> Artifact:
        return Artifact(program, recompute_hash(program), self._caps.render(program), None)

    def submit(self, artifact: Artifact, shots: int, job_key: str) -> JobHandle:
        require_clearance(artifact, shots, job_key)
        self.submitted.append((artifact, shots, job_key))
        return JobHandle(f"rec-{len(self.submitted)}", job_key)

    def find(self, job_key: str) -> JobHandle | None:
        return None

    def result(self, handle: JobHandle, timeout_s: float) -> Result:
        return Result({"0": 1}, {"job_id": handle.job_id})


def default_caps(**changes: object) -> Capabilities:
    args: dict[str, object] = {"sample_time_s": {DRIVE.port: DT_S}, "frames": (DRIVE,),
                               "qubits": (0,), "max_samples": 4096, "max_shots": 100_000,
                               "native_waveforms": frozenset({"gaussian", "drag", "constant", "sampled"})}
    args.update(changes)
    return Capabilities(**args)  # type: ignore[arg-type]


class OutOfBoxPolicy:
    """A replay policy whose action leaves the action box at env step ``at``: the session
    must stop on it (``action_out_of_range``), never apply or clip it. Keyword arguments of
    a policy config (``policy=scripted policy._target_=hw_helpers.OutOfBoxPolicy``) are
    accepted and ignored."""

    def __init__(self, at: int = 2, **_config: object) -> None:
        self.at = int(at)

    def initial_state(self) -> int:
        return 0

    def act(self, observation: object, state: int) -> tuple[object, int]:
        import numpy as np

        step = state + 1
        action = np.zeros(3, dtype=np.float32)
        if step >= self.at:
            action[0] = 2.0
        return action, step


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """NumPy's legacy global generator seeded with ``seed`` inside the block and put back
    after it: qibolab's emulator samples its shots from that generator."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


@contextmanager
def shipped_qibolab_backend(platform: str) -> Iterator[Any]:
    """A ``QibolabBackend`` on one of the shipped emulator platforms, with
    ``QIBOLAB_PLATFORMS`` pointing at them inside the block."""
    from pulsecal.hardware.adapters.qibolab import QibolabBackend

    mp = pytest.MonkeyPatch()
    mp.setenv("QIBOLAB_PLATFORMS", str(emulator_platforms_dir()))
    try:
        yield QibolabBackend(platform)
    finally:
        mp.undo()
