"""A two-qubit calibration sweep on the Braket adapter, end to end, with AWS replaced by a
fake cloud: every created task's OpenQASM text is parsed back (the adapter's own
``trace_of``), its drive-frame samples are played on the simulated device of the qubit
whose frames the text uses, and the counts come back through the Braket SDK's own result
path (``AwsQuantumTask`` → results JSON → ``GateModelQuantumTaskResult``). So each
session must address its qubit's frames to calibrate that qubit's (different) device, and
it ends exactly where the same qubit ends on the simulated backend (~40 s CPU: slow)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("braket.pulse")

from pulsecal.agents.policies import ScriptedPolicy
from pulsecal.envs.device import SimulatedDevice
from pulsecal.envs.protocol import Play, PulseSequence
from pulsecal.hardware import sweep as sw
from pulsecal.hardware.adapters.openpulse import JOB_KEY_TAG, BraketBackend
from pulsecal.hardware.replay import default_limits, simulated_truth

from .hw_helpers import FakeClock

GATE_S = 20e-9


class FakeBraketCloud:
    """Braket's service for one device: creates run at once on per-qubit simulated devices."""

    def __init__(self, seed: int) -> None:
        # The devices (and shot-noise streams) of ``sweep.sampled_qubit_backend(seed, q)``.
        self.devices = {q: SimulatedDevice(sw.sampled_qubit_params(seed, q), None,
                                           rng=np.random.default_rng(sw.qubit_seed(seed, q)), open_system=True)
                        for q in (0, 1)}
        self.parser = BraketBackend()  # offline: parses and renders what was sent
        self.tasks: dict[str, dict[str, Any]] = {}
        self.results: dict[str, str] = {}
        self.qubits_used: dict[str, set[str]] = {}
        self._ids = itertools.count()

    # AwsSession's part
    def create_quantum_task(self, **kw: Any) -> str:
        for t in self.tasks.values():
            if t["clientToken"] == kw["clientToken"]:
                return str(t["quantumTaskArn"])
        source = json.loads(kw["action"])["source"]
        drive = set(re.findall(r"q\d+_rf_frame", source))
        capture = set(re.findall(r"q(\d+)_ro_rx_frame", source))
        assert len(drive) == 1 and len(capture) == 1, source
        q = int(capture.pop())
        trace = self.parser.trace_of(source)
        samples = np.asarray(trace.samples[f"q{q}_rf_frame"])  # the qubit's own drive frame only
        n0, n1 = self.devices[q].run([PulseSequence((Play(samples),))], int(kw["shots"]))[0]
        arn = f"arn:aws:braket:us-west-1:000000000000:quantum-task/t{next(self._ids)}"
        self.qubits_used.setdefault(f"q{q}", set()).update(drive)
        self.tasks[arn] = {"quantumTaskArn": arn, "deviceArn": kw["deviceArn"], "status": "COMPLETED",
                           "shots": kw["shots"], "tags": dict(kw["tags"]), "clientToken": kw["clientToken"],
                           "createdAt": "2026-11-21T10:00:00Z", "outputS3Bucket": kw["outputS3Bucket"],
                           "outputS3Directory": f"{kw['outputS3KeyPrefix']}/{arn[-8:]}"}
        from braket.ir.openqasm import Program
        from braket.task_result import GateModelTaskResult, TaskMetadata

        shots = [[0]] * int(n0) + [[1]] * int(n1)
        self.results[self.tasks[arn]["outputS3Directory"] + "/results.json"] = GateModelTaskResult(
            measurements=shots, measuredQubits=[q],
            taskMetadata=TaskMetadata(id=arn, shots=int(kw["shots"]), deviceId=kw["deviceArn"]),
            additionalMetadata={"action": Program(source=source)}).json()
        return arn

    def get_quantum_task(self, arn: str) -> dict[str, Any]:
        return {k: v for k, v in self.tasks[arn].items() if k != "clientToken"}

    def retrieve_s3_object_body(self, bucket: str, key: str) -> str:
        return self.results[key]

    # the boto3 client's part
    @property
    def braket_client(self) -> FakeBraketCloud:
        return self

    def search_quantum_tasks(self, *, filters: list[dict[str, Any]], maxResults: int = 100,
                             nextToken: str | None = None) -> dict[str, Any]:
        return {"quantumTasks": [self.get_quantum_task(a) for a in self.tasks]}


@pytest.mark.slow
def test_two_qubit_sweep_on_the_braket_adapter_calibrates_each_qubit(tmp_path: Path) -> None:
    cloud = FakeBraketCloud(seed=11)
    outcomes = []
    for q in (0, 1):
        params = sw.sampled_qubit_params(11, q)
        start = tuple(sw.lab_start(params, GATE_S, beta_rel=0.3).as_array())
        job = sw.QubitJob(qubit=q, sweep_dir=tmp_path / "sweep", sweep_name="braket", seed=q,
                          default_start=start, max_steps=6, env={"shots_per_probe": 200, "shot_budget": 100_000},
                          total_shots=40_000, device_ledger=tmp_path / "sweep" / "device_day_ledger.json",
                          device_qubit=q)
        clock = FakeClock()
        outcomes.append(sw.run_qubit(
            job, make_backend=lambda a: BraketBackend(aws_session=cloud, s3_destination_folder=("b", "p")),
            make_policy=ScriptedPolicy, limits=lambda be, q=q: default_limits(be, q),
            truth=lambda be, q=q: simulated_truth(SimpleNamespace(device=cloud.devices[q]), GATE_S),
            plots=False, fsync=False, clock=clock, sleep=clock.sleep))
    assert [o.state for o in outcomes] == ["finished", "finished"], [o.error for o in outcomes]
    # Each session played only on its own qubit's drive frame and read that qubit out.
    assert cloud.qubits_used == {"q0": {"q0_rf_frame"}, "q1": {"q1_rf_frame"}}
    assert all(JOB_KEY_TAG in t["tags"] for t in cloud.tasks.values())
    for o in outcomes:
        assert o.result is not None
        truth = o.result.report["truth"]
        # Calibrated on its own device: near its coherence limit.
        assert truth["infidelity_ratio"] > 5
        assert 1 - truth["final"]["fidelity"] < 1.5 * truth["final"]["coherence_limit"]
    # The same qubits on the simulated backend (same devices, same shot-noise streams):
    # the Braket text, parsed and played, gives the very same counts, so the same calibration.
    for q, o in zip((0, 1), outcomes, strict=True):
        params = sw.sampled_qubit_params(11, q)
        job = sw.QubitJob(qubit=q, sweep_dir=tmp_path / "sim", sweep_name="sim", seed=q,
                          default_start=tuple(sw.lab_start(params, GATE_S, beta_rel=0.3).as_array()),
                          max_steps=6, env={"shots_per_probe": 200, "shot_budget": 100_000})
        clock = FakeClock()
        sim = sw.run_qubit(job, make_backend=lambda a, q=q: sw.sampled_qubit_backend(seed=11, qubit=q),
                           make_policy=ScriptedPolicy, plots=False, fsync=False, clock=clock, sleep=clock.sleep)
        assert sim.result is not None and o.result is not None
        np.testing.assert_allclose(o.result.final_params.as_array(), sim.result.final_params.as_array(),
                                   rtol=1e-9, atol=0)
    s = sw.summarize(tmp_path / "sweep")
    day = json.loads((tmp_path / "sweep" / "device_day_ledger.json").read_text())
    assert sum(day["per_day"].values()) == s.total_shots == sum(t["shots"] for t in cloud.tasks.values())
