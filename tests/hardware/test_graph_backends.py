"""The calibration graph on lab backends through ``hardware.graph_device.BackendGraphDevice``:
a short graph (idle, spectroscopy, Rabi on one qubit) on qibolab's emulator, the same on
the Braket adapter against the fake cloud of ``test_braket_sweep``, a node's programs
validated offline against the stored Rigetti pulse properties, and an unsafe amplitude
refused by the envelope before anything is submitted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pulsecal.agents.graph.graph import graph_from_definition
from pulsecal.agents.graph.readout import ReadoutClassification
from pulsecal.agents.graph.scheduler import CALIBRATED, FAILED, Scheduler
from pulsecal.agents.graph.store import ParameterStore
from pulsecal.envs.protocol import Measure, Play, PulseSequence
from pulsecal.hardware import sweep as sw
from pulsecal.hardware.graph_device import BackendGraphDevice, graph_limits
from pulsecal.hardware.journal import Journal, read_journal
from pulsecal.hardware.ledger import ShotLedger

GATE_40NS = {"_target_": "pulsecal.envs.drag.DragGate", "duration_s": 40e-9}


def _graph(gate: dict[str, Any] | None, qubit: str) -> Any:
    g = {} if gate is None else {"gate": gate}
    return graph_from_definition({
        "crosstalk_distance": 1, "qubits": [qubit],
        "qubit_nodes": [
            {"name": "idle", "experiment": {"_target_": "pulsecal.agents.graph.checks.IdlePopulation",
                                            "shots": 200, "cheap_shots": 50}},
            {"name": "spectroscopy", "depends_on": ["idle"], "retries": 2, "experiment": {
                "_target_": "pulsecal.agents.graph.experiments.spectroscopy.Spectroscopy",
                "duration_s": 100e-9, "window_hz": 15e6, "points": 21, "cheap_points": 11, **g}},
            {"name": "rabi", "depends_on": ["spectroscopy"], "retries": 2, "experiment": {
                "_target_": "pulsecal.agents.graph.experiments.rabi.Rabi", "points": 11, "cheap_points": 7, **g}},
        ]}, [qubit], [])


def _device(backend: Any, folder: Path, **limits: Any) -> BackendGraphDevice:
    return BackendGraphDevice(backend, ledger=ShotLedger(folder / "jobs_ledger.json", fsync=False),
                              journal=Journal(folder / "jobs.jsonl", fsync=False), session_id="test",
                              limits=graph_limits(backend, **limits) if limits else None)


def _run(graph: Any, device: BackendGraphDevice, folder: Path, priors: dict[str, float]) -> Any:
    store = ParameterStore(folder / "store.json")
    store.record("priors", priors, experiment="test", experiment_id="priors", run_id="test")
    ledger = ShotLedger(folder / "ledger.json", fsync=False)
    sched = Scheduler(graph, device, store, qubits=device.qubits, edges=device.edges, ledger=ledger, seed=3,
                      run_id="test")
    return sched.run(), store.current(), ledger


def _events(folder: Path) -> list[str]:
    return [r["event"] for r in read_journal(folder / "jobs.jsonl")]


def test_a_short_graph_runs_on_the_qibolab_emulator(tmp_path: Path) -> None:
    pytest.importorskip("qibolab")
    from pulsecal.hardware.adapters.qibolab import qibolab_backend

    backend = qibolab_backend("pulsecal_emulator")
    device = _device(backend, tmp_path)
    truth = backend.transmon_model(0)
    assert truth is not None and device.qubits == ("q0",)
    frequency = device.params.model.mode("q0").frame_hz + truth.detuning_hz
    gate_area_s = 2.1412466019086468e-08  # the 40 ns lifted Gaussian's area on the 1 ns grid
    pi_amplitude = 1.0 / (2.0 * truth.rabi_max_hz * gate_area_s)
    report, current, ledger = _run(_graph(GATE_40NS, "q0"), device, tmp_path,
                                   {"q0.frequency_hz": frequency + 4e6, "q0.pi_amplitude": 1.3 * pi_amplitude})
    assert {n: o.outcome for n, o in report.outcomes.items()} == {
        "idle:q0": CALIBRATED, "spectroscopy:q0": CALIBRATED, "rabi:q0": CALIBRATED}
    # The emulator's own qubit: its frequency (lab frame: within the Bloch-Siegert and
    # fit error of a 100 ns line) and the π amplitude its Rabi rate implies for the gate.
    assert abs(current["q0.frequency_hz"] - frequency) < 0.5e6
    assert current["q0.pi_amplitude"] == pytest.approx(pi_amplitude, rel=0.03)
    # Every shot the graph counted went through the guard's job ledger, one job per sequence.
    assert report.shots == ledger.used_shots == device.ledger.used_shots > 0
    events = _events(tmp_path)
    assert events.count("completed") == events.count("submitted") > 0 and "refused" not in events
    assert device.clock_s > 0


def test_a_backend_without_iq_refuses_readout_classification_by_name(tmp_path: Path) -> None:
    from pulsecal.hardware.adapters.openpulse import BraketBackend

    device = _device(BraketBackend(), tmp_path)
    with pytest.raises(ValueError, match="has no run_iq"):
        ReadoutClassification().run(device, "q0", {"q0.frequency_hz": 5e9, "q0.pi_amplitude": 0.5},
                                    np.random.default_rng(0))
    assert _events(tmp_path) == []


@pytest.mark.slow  # ~7 s: the emulator integrates the lab-frame readout window
def test_the_qibolab_emulators_integrated_shots_are_its_discriminated_bits() -> None:
    # Why BackendGraphDevice has no run_iq on qibolab: the emulator's INTEGRATION shots are
    # the sampled state as I with Q = 0 (no blobs, no readout noise), so a discriminator fit
    # has nothing to fit. If qibolab adds a readout model this fails: then run_iq is worth
    # wiring (docs/calibration_backends.md).
    qibolab = pytest.importorskip("qibolab")
    from pulsecal.hardware.adapters.qibolab import qibolab_backend

    platform = qibolab_backend("pulsecal_emulator").platform
    platform.connect()
    native = platform.natives.single_qubit[0]
    seq = native.RX() | native.MZ()
    (acq,) = [a for _, a in seq.acquisitions]
    raw = platform.execute([seq], nshots=100, averaging_mode=qibolab.AveragingMode.SINGLESHOT,
                           acquisition_type=qibolab.AcquisitionType.INTEGRATION)
    points = np.asarray(raw[acq.id])
    assert points.shape == (100, 2)
    assert set(np.unique(points[:, 0])) <= {0.0, 1.0} and np.all(points[:, 1] == 0.0)
    assert np.count_nonzero(points[:, 0]) > 50  # the π pulse's |1⟩, read as I = 1


def test_a_failed_emulator_integration_is_retried_not_a_refusal(tmp_path: Path) -> None:
    # scipy's ode raises ValueError from a SystemError when the emulator's right-hand side
    # fails; that integration is retried (the job never ran), a plain ValueError is not.
    pytest.importorskip("qibolab")
    from pulsecal.hardware.adapters.qibolab import qibolab_backend
    from pulsecal.hardware.backend import BackendError

    backend = qibolab_backend("dummy")
    execute = backend.platform.execute
    failures: list[BaseException] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(ValueError("Function to integrate must not return a tuple."))
            raise failures[0] from SystemError("error return without exception set")
        return execute(*args, **kwargs)

    backend.platform.execute = flaky
    device = BackendGraphDevice(backend, ledger=ShotLedger(tmp_path / "jobs_ledger.json", fsync=False),
                                journal=Journal(tmp_path / "jobs.jsonl", fsync=False), session_id="t",
                                sleep=lambda s: None)
    counts = device.run([PulseSequence((Measure(("q0",)),))], 50)
    assert counts.sum() == 50 and len(failures) == 1
    retries = [r for r in read_journal(tmp_path / "jobs.jsonl") if r["event"] == "retry"]
    assert len(retries) == 1 and "integrator failed" in retries[0]["error"]
    assert device.ledger.used_shots == 50  # the failed attempt is the same job key: counted once

    def refusing(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("not a sequence this platform plays")

    backend.platform.execute = refusing
    with pytest.raises(BackendError, match="rejected the sequence"):
        device.run([PulseSequence((Measure(("q1",)),))], 50)


def _graph_cloud(seed: int) -> Any:
    """``test_braket_sweep.FakeBraketCloud`` for graph programs: each task's text parsed back
    and its drive-frame samples played on the qubit's simulated device; a bare measurement
    (the idle check) renders no samples and plays nothing."""
    from braket.ir.openqasm import Program
    from braket.task_result import GateModelTaskResult, TaskMetadata

    from .test_braket_sweep import FakeBraketCloud

    class GraphCloud(FakeBraketCloud):
        def create_quantum_task(self, **kw: Any) -> str:
            for t in self.tasks.values():
                if t["clientToken"] == kw["clientToken"]:
                    return str(t["quantumTaskArn"])
            source = json.loads(kw["action"])["source"]
            q = int(re.findall(r"q(\d+)_ro_rx_frame", source)[0])
            self.qubits_used.setdefault(f"q{q}", set()).update(re.findall(r"q\d+_rf_frame", source))
            samples = np.asarray(self.parser.trace_of(source).samples.get(f"q{q}_rf_frame", np.zeros(0)))
            seq = PulseSequence((Play(samples),)) if samples.size else PulseSequence(())
            n0, n1 = self.devices[q].run([seq], int(kw["shots"]))[0]
            arn = f"arn:aws:braket:us-west-1:000000000000:quantum-task/t{next(self._ids)}"
            out = f"{kw['outputS3KeyPrefix']}/{arn[-8:]}"
            self.tasks[arn] = {"quantumTaskArn": arn, "deviceArn": kw["deviceArn"], "status": "COMPLETED",
                               "shots": kw["shots"], "tags": dict(kw["tags"]), "clientToken": kw["clientToken"],
                               "createdAt": "2026-12-07T10:00:00Z", "outputS3Bucket": kw["outputS3Bucket"],
                               "outputS3Directory": out}
            self.results[out + "/results.json"] = GateModelTaskResult(
                measurements=[[0]] * int(n0) + [[1]] * int(n1), measuredQubits=[q],
                taskMetadata=TaskMetadata(id=arn, shots=int(kw["shots"]), deviceId=kw["deviceArn"]),
                additionalMetadata={"action": Program(source=source)}).json()
            return arn

    return GraphCloud(seed)


def _braket(cloud: Any) -> Any:
    from pulsecal.hardware.adapters.openpulse import BraketBackend

    return BraketBackend(aws_session=cloud, s3_destination_folder=("b", "p"))


def _braket_priors(cloud: Any, backend: Any, q: int) -> dict[str, float]:
    params = sw.sampled_qubit_params(11, q)  # the fake cloud's device of qubit q (seed 11)
    t, scale = params.transmon, float(params.amplitude_scale)
    area = 1.0710140187097486e-08  # the library's 20 ns lifted Gaussian on the 1 ns grid
    frame = backend.capabilities().drive_frame(q).frequency_hz
    return {f"q{q}.frequency_hz": frame + t.detuning_hz + 3e6,
            f"q{q}.pi_amplitude": 1.2 / (2.0 * t.rabi_max_hz * scale * area)}


@pytest.mark.slow  # ~11 s: three openpulse parses of every task's text (compile, submit, the fake cloud)
def test_the_graph_runs_on_the_braket_adapter_against_the_fake_cloud(tmp_path: Path) -> None:
    pytest.importorskip("braket.pulse")
    cloud = _graph_cloud(seed=11)
    backend = _braket(cloud)
    device = _device(backend, tmp_path)
    assert device.qubits == ("q0", "q1")
    priors = _braket_priors(cloud, backend, 1)
    report, current, ledger = _run(_graph(None, "q1"), device, tmp_path, priors)
    assert {n: o.outcome for n, o in report.outcomes.items()} == {
        "idle:q1": CALIBRATED, "spectroscopy:q1": CALIBRATED, "rabi:q1": CALIBRATED}
    # Only q1's own frames were addressed, and every text sent is valid against the stored
    # Rigetti properties (frames, ports, the frequency window, pulse lengths).
    assert cloud.qubits_used == {"q1": {"q1_rf_frame"}}
    t = sw.sampled_qubit_params(11, 1).transmon
    frame = backend.capabilities().drive_frame(1).frequency_hz
    assert abs(current["q1.frequency_hz"] - (frame + t.detuning_hz)) < 0.3e6
    assert report.shots == ledger.used_shots == device.ledger.used_shots == sum(
        int(x["shots"]) for x in cloud.tasks.values())


class _Offline:
    """The graph device interface of ``device`` whose ``run`` only compiles: it collects the
    programs a node would submit and answers with all-|0⟩ counts (so the node's fit fails,
    which is not what these tests look at)."""

    def __init__(self, device: BackendGraphDevice) -> None:
        self.device = device
        self.qubits, self.params, self.dt_s, self.clock_s = device.qubits, device.params, device.dt_s, 0.0
        self.programs: list[Any] = []

    def run(self, sequences: Any, shots: int) -> np.ndarray:
        self.programs += [self.device.compile_sequence(s, shots) for s in sequences]
        return np.tile(np.array([shots, 0]), (len(sequences), 1))


def test_a_nodes_braket_programs_validate_offline_against_the_rigetti_properties(tmp_path: Path) -> None:
    pytest.importorskip("braket.pulse")
    from pulsecal.agents.graph.experiments.ramsey import Ramsey
    from pulsecal.hardware.adapters._openqasm import semantic_check
    from pulsecal.hardware.adapters.openpulse import BraketBackend
    from pulsecal.hardware.safety import SafetyEnvelope

    backend = BraketBackend()  # offline: no AWS session is ever made
    device = _device(backend, tmp_path)
    offline = _Offline(device)
    frame = backend.capabilities().drive_frame(0).frequency_hz
    params = {"q0.frequency_hz": frame + 2e6, "q0.pi_amplitude": 0.45}
    Ramsey(points=9, cheap_points=9, max_delay_s=2e-6, cheap_max_delay_s=2e-6).run(
        offline, "q0", params, np.random.default_rng(0))
    assert len(offline.programs) == 9
    envelope = SafetyEnvelope(device.limits, backend.capabilities())
    for p in offline.programs:
        assert backend.validate(p) == [] and envelope.check(p, shots=100) == []
        art = backend.compile(p)  # parse round trip and trace of the text included
        assert semantic_check(art.payload.source, backend.props) == []
        assert "q0_rf_frame" in art.payload.source and "capture_v0(q0_ro_rx_frame)" in art.payload.source
    # The frame phase the second X90 carries (artificial detuning) is in the text.
    assert "shift_phase(q0_rf_frame" in backend.compile(offline.programs[-1]).payload.source
    assert _events(tmp_path) == []


def test_an_unsafe_amplitude_is_refused_by_the_envelope_before_submission(tmp_path: Path) -> None:
    pytest.importorskip("braket.pulse")
    cloud = _graph_cloud(seed=11)
    backend = _braket(cloud)
    # A lab envelope of |u| <= 0.3: Rabi's scan (up to 2.5x the prior π amplitude) passes it.
    device = _device(backend, tmp_path, max_amplitude=0.3)
    priors = _braket_priors(cloud, backend, 0)
    graph = graph_from_definition({"qubits": ["q0"], "qubit_nodes": [
        {"name": "rabi", "retries": 2,
         "experiment": {"_target_": "pulsecal.agents.graph.experiments.rabi.Rabi", "points": 7, "cheap_points": 5}},
    ]}, ["q0"], [])
    report, _, ledger = _run(graph, device, tmp_path, priors)
    o = report.outcomes["rabi:q0"]
    assert o.outcome == FAILED and "SafetyViolation" in o.message and "amplitude" in o.message
    # Refused as a batch before anything ran: no task created, no shot counted anywhere.
    assert cloud.tasks == {} and ledger.used_shots == 0 and device.ledger.used_shots == 0
    events = _events(tmp_path)
    assert events and set(events) == {"refused"}
