"""OpenPulse / Braket adapter, offline: every compiled program is (a) parsed by the openpulse
reference parser and round-trips, (b) passes our semantic pass against the stored Rigetti-like
properties, (c) has a time trace — rendered from the parsed text with Braket's waveform
definitions — equal to the IR's to 1e-9 and with the same gate fidelity in our simulator.
Nothing here talks to AWS."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("openpulse")
pytest.importorskip("braket.pulse")

from pulsecal.envs.physics import Transmon, gate_fidelity, unitaries
from pulsecal.hardware import ir
from pulsecal.hardware.adapters import _openqasm as oq
from pulsecal.hardware.adapters.openpulse import BraketBackend
from pulsecal.hardware.backend import BackendError
from pulsecal.hardware.safety import SafetyViolation

DT = 1e-9
RABI_HZ = 50e6
ALPHA_HZ = -300e6
MODEL = Transmon(levels=3, anharmonicity_hz=ALPHA_HZ, rabi_max_hz=RABI_HZ, dt_s=DT)
BETA_S = -1 / (2 * 2 * math.pi * ALPHA_HZ)  # first-order DRAG, +0.265 ns


@pytest.fixture(scope="module")
def backend() -> BraketBackend:
    return BraketBackend()


@pytest.fixture(scope="module")
def props(backend: BraketBackend) -> oq.BraketDeviceProperties:
    return backend.props


def _pi_amp(wf_unit: ir.Waveform) -> float:
    return 1 / (2 * RABI_HZ * float(np.sum(wf_unit.samples(DT).real)) * DT)


def _x_programs(frame: ir.Frame) -> dict[str, ir.Program]:
    g = _pi_amp(ir.Gaussian(24e-9, 6e-9, 1.0))
    d = _pi_amp(ir.Drag(24e-9, 6e-9, 1.0, 0.0))
    sampled = ir.Gaussian(24e-9, 6e-9, g).samples(DT)
    ins = {
        "gaussian": [ir.FramePlay(frame.name, ir.Gaussian(24e-9, 6e-9, g))],
        "drag": [ir.FramePlay(frame.name, ir.Drag(24e-9, 6e-9, d, BETA_S))],
        "sampled": [ir.FramePlay(frame.name, ir.Sampled(sampled, DT))],
        "phased": [ir.ShiftPhase(frame.name, 0.4), ir.FramePlay(frame.name, ir.Drag(24e-9, 6e-9, d, BETA_S, angle=-0.4)),
                   ir.FrameDelay(8e-9), ir.FramePlay(frame.name, ir.Constant(8e-9, 0.0))],
    }
    return {k: ir.Program((*v, ir.Acquire(0)), (frame,), 100) for k, v in ins.items()}


def _fidelity(samples: np.ndarray) -> float:
    return float(gate_fidelity(unitaries(MODEL, samples), "X", kind="unitary", virtual_z=True))


# -- the stored device properties --------------------------------------------------------------


def test_stored_properties_follow_brakets_schema(props: oq.BraketDeviceProperties) -> None:
    import json
    from importlib import resources

    from braket.device_schema.pulse.pulse_device_action_properties_v1 import (
        PulseDeviceActionProperties,
    )

    doc = json.loads(resources.files("pulsecal.hardware").joinpath(
        "data", "braket_rigetti_pulse.json").read_text())
    PulseDeviceActionProperties.parse_raw_schema(json.dumps(doc["pulse"]))
    assert {f.name for f in props.drive_frames()} == {"q0_rf_frame", "q1_rf_frame"}
    assert props.capture_frame(1).name == "q1_ro_rx_frame"


def test_capabilities_from_properties(backend: BraketBackend) -> None:
    caps = backend.capabilities()
    assert caps.sample_time_s == {"q0_rf": DT, "q1_rf": DT, "q0_ff": DT}
    assert (caps.granularity, caps.min_samples, caps.max_samples) == (4, 8, 12000)
    assert caps.frames[0] == ir.Frame("q0_rf_frame", "q0_rf", 4.512e9)
    # The fast-flux line's frame is exposed as a baseband flux frame.
    assert caps.frame("q0_q1_cphase_frame") == ir.Frame("q0_q1_cphase_frame", "q0_ff", 0.0, kind="flux")
    assert caps.qubits == (0, 1)


# -- (a) parse and round trip, (b) semantic pass, (c) trace and fidelity -----------------------


@pytest.mark.parametrize("kind", ["gaussian", "drag", "sampled", "phased"])
def test_compiled_programs_pass_all_three_checks(backend: BraketBackend, kind: str) -> None:
    frame = backend.capabilities().frames[0]
    prog = _x_programs(frame)[kind]
    art = backend.compile(prog)
    src = art.payload.source
    assert src.startswith("OPENQASM 3.0;") and "capture_v0(q0_ro_rx_frame)" in src
    tree = oq.parse_roundtrip(src)  # (a)
    assert oq.semantic_check(tree, backend.props) == []  # (b)
    lifted = oq.lift(tree, backend.props, frames=prog.frames)  # (c) from the parsed text
    got = ir.to_waveform_trace(lifted, DT).samples[frame.name]
    want = backend.capabilities().render(prog).samples[frame.name]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(art.trace.samples[frame.name], want, rtol=0, atol=1e-9)
    assert _fidelity(got) == pytest.approx(_fidelity(want), abs=1e-9)
    assert _fidelity(want) > 0.99  # they are X gates, not just equal noise


def test_same_program_same_text(backend: BraketBackend) -> None:
    prog = _x_programs(backend.capabilities().frames[0])["drag"]
    assert backend.to_openqasm(prog) == backend.to_openqasm(ir.Program.from_json(prog.to_json()))


def test_frame_frequency_phase_and_padding(backend: BraketBackend) -> None:
    f0 = backend.capabilities().frames[0]
    frame = ir.Frame(f0.name, f0.port, f0.frequency_hz + 3e6, phase=0.25)
    prog = ir.Program((ir.FramePlay(frame.name, ir.Sampled(np.full(5, 0.2), DT)),
                       ir.ShiftFrequency(frame.name, -1e6), ir.FrameDelay(6e-9),
                       ir.FramePlay(frame.name, ir.Constant(16e-9, 0.1, 0.3)),
                       ir.SetPhase(frame.name, 0.1), ir.FramePlay(frame.name, ir.Constant(8e-9, 0.2)),
                       ir.Acquire(0)), (frame,), 10)
    art = backend.compile(prog)
    src = art.payload.source
    assert "set_frequency(q0_rf_frame, 4515000000.0)" in src and "set_phase(q0_rf_frame, 0.25)" in src
    assert "delay[8.0ns] q0_rf_frame" in src  # 6 ns padded to the 4-sample granularity
    want = backend.capabilities().render(prog).samples[frame.name]
    np.testing.assert_allclose(art.trace.samples[frame.name], want, rtol=0, atol=1e-9)


# -- Braket's waveform definitions and the DRAG sign -------------------------------------------


@pytest.mark.parametrize("zero_at_edges", [False, True])
def test_our_braket_renderer_matches_the_sdk(zero_at_edges: bool) -> None:
    from braket.pulse import ConstantWaveform, DragGaussianWaveform, GaussianWaveform

    g = GaussianWaveform(24e-9, 6e-9, 0.7, zero_at_edges).sample(DT)
    d = DragGaussianWaveform(24e-9, 6e-9, 0.3e-9, 0.7, zero_at_edges).sample(DT)
    c = ConstantWaveform(16e-9, 0.2 - 0.1j).sample(DT)
    np.testing.assert_allclose(oq.braket_gaussian(24e-9, 6e-9, 0.7, zero_at_edges, DT), g, atol=1e-15)
    np.testing.assert_allclose(oq.braket_drag_gaussian(24e-9, 6e-9, 0.3e-9, 0.7, zero_at_edges, DT), d,
                               atol=1e-15)
    np.testing.assert_allclose(oq.braket_constant(16e-9, 0.2 - 0.1j, DT), c, atol=1e-15)


def test_braket_drag_is_i_plus_i_beta_di_dt() -> None:
    """Braket's drag_gaussian (no lift) is I + i·β·dI/dt with β in seconds: our sign."""
    w = oq.braket_drag_gaussian(24e-9, 6e-9, BETA_S, 0.5, False, DT)
    t = np.arange(24) * DT - 12e-9
    i = 0.5 * np.exp(-0.5 * (t / 6e-9) ** 2)
    np.testing.assert_allclose(w.imag, BETA_S * (-t / 6e-9**2) * i, rtol=1e-12, atol=1e-15)
    # Physics agrees: +β (= −1/(2α), α < 0) removes the phase error and leakage, −β doubles it.
    amp = 1 / (2 * RABI_HZ * float(np.sum(i / 0.5)) * DT)
    f = {s: _fidelity(oq.braket_drag_gaussian(24e-9, 6e-9, s * BETA_S, amp, False, DT))
         for s in (0, +1, -1)}
    assert 1 - f[+1] < 0.1 * (1 - f[0]) and 1 - f[-1] > 1 - f[0]


def test_template_mode_parses_and_stays_close(backend: BraketBackend) -> None:
    """``gaussian``/``drag_gaussian`` templates: checked and rendered like the rest; their
    samples sit half a sample from the IR's grid, so the trace differs at the 1e-2 level but
    the X gate's fidelity barely moves."""
    tmpl = BraketBackend(waveforms="templates")
    frame = tmpl.capabilities().frames[0]
    for kind in ("gaussian", "drag"):
        prog = _x_programs(frame)[kind]
        art = tmpl.compile(prog)
        assert ("drag_gaussian(" if kind == "drag" else "gaussian(") in art.payload.source
        assert oq.semantic_check(art.payload.source, tmpl.props) == []
        got = art.trace.samples[frame.name]
        want = tmpl.capabilities().render(prog).samples[frame.name]
        assert 1e-3 < float(np.max(np.abs(got - want))) < 0.05
        assert abs(_fidelity(got) - _fidelity(want)) < 2e-3


# -- malformed and out-of-limit programs are rejected with the reason ------------------------------

_HEAD = "OPENQASM 3.0;\ncal {\n    bit[1] psb;\n"
_TAIL = "    psb[0] = capture_v0(q0_ro_rx_frame);\n}\n"


@pytest.mark.parametrize(("body", "limit", "needle"), [
    ("waveform w = gaussian(24.0ns, 6.0ns, 1.5, false);\n    play(q0_rf_frame, w);\n",
     "waveform 'w'.amplitude", "MAX_AMPLITUDE"),
    ("waveform w = {0.1, 1.2im, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};\n    play(q0_rf_frame, w);\n",
     "waveform 'w'.amplitude", "MAX_AMPLITUDE"),
    ("waveform w = constant(4.0ns, 0.1);\n    play(q0_rf_frame, w);\n",
     "waveform 'w'.length", "MIN/MAX_PULSE_LENGTH"),
    ("waveform w = constant(10.0ns, 0.1);\n    play(q0_rf_frame, w);\n",
     "waveform 'w'.length", "granularity"),
    ("waveform w = gaussian(24.5ns, 6.0ns, 0.5, false);\n    play(q0_rf_frame, w);\n",
     "gaussian.length", "whole number"),
    ("waveform w = gaussian(24.0ns, -6.0ns, 0.5, false);\n    play(q0_rf_frame, w);\n",
     "gaussian.sigma", "> 0"),
    ("waveform w = drag_gaussian(24.0ns, 6.0ns);\n    play(q0_rf_frame, w);\n",
     "drag_gaussian.arguments", "3..5"),
    ("waveform w = sine(24.0ns, 0.1);\n    play(q0_rf_frame, w);\n", "waveform.template", "gaussian"),
    ("waveform w = constant(8.0ns, 0.1);\n    play(q9_rf_frame, w);\n", "play.frame", "q0_rf_frame"),
    ("waveform w = constant(8.0ns, 0.1);\n    play(q0_ro_rx_frame, w);\n", "play.frame", "tx port"),
    ("play(q0_rf_frame, nothing);\n", "play.waveform", "declared earlier"),
    ("set_frequency(q0_rf_frame, 5.2e9);\n", "set_frequency.frequency", "PERMITTED_FREQUENCY_DIFFERENCE"),
    ("shift_phase(q0_rf_frame, 1.0 + 2.0im);\n", "shift_phase.value", "finite real"),
    ("delay[6.0ns] q0_rf_frame;\n", "delay.duration", "granularity"),
    ("delay[3.0dt] q0_rf_frame;\n", "delay.duration", "literal"),
    ("swap_phases(q0_rf_frame, q1_rf_frame);\n", "function", "shift_phase"),
])
def test_bad_programs_are_rejected_by_name(props: oq.BraketDeviceProperties, body: str, limit: str,
                                           needle: str) -> None:
    violations = oq.semantic_check(_HEAD + "    " + body + _TAIL, props)
    hits = [v for v in violations if v.limit == limit]
    assert hits, violations
    assert needle in hits[0].allowed and hits[0].where.startswith("line ")


def test_gates_defcal_and_missing_capture_are_rejected(props: oq.BraketDeviceProperties) -> None:
    v = oq.semantic_check("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n", props)
    assert {x.limit for x in v} >= {"statement", "cal", "capture_v0"}
    v = oq.semantic_check('OPENQASM 3.0;\ndefcal x $0 { play(q0_rf_frame, w); }\n', props)
    assert any(x.limit == "statement" and "defcal" in x.allowed for x in v)


def test_syntax_errors_are_parse_errors(props: oq.BraketDeviceProperties) -> None:
    with pytest.raises(ValueError, match="parse error"):
        oq.semantic_check(_HEAD + "    play(q0_rf_frame, \n" + _TAIL, props)


def test_out_of_limit_ir_programs_never_compile(backend: BraketBackend) -> None:
    f0 = backend.capabilities().frames[0]
    far = ir.Frame(f0.name, f0.port, f0.frequency_hz + 1e9)
    prog = ir.Program((ir.FramePlay(far.name, ir.Constant(8e-9, 0.1)), ir.Acquire(0)), (far,), 10)
    assert [v.limit for v in backend.validate(prog)] == ["frame.frequency_hz"]
    with pytest.raises(BackendError, match=r"frame\.frequency_hz"):
        backend.compile(prog)
    loud = ir.Program((ir.FramePlay(f0.name, ir.Constant(8e-9, 1.2)), ir.Acquire(0)), (f0,), 10)
    assert [v.limit for v in backend.validate(loud)] == ["amplitude"]


def test_submit_needs_the_guards_clearance(backend: BraketBackend) -> None:
    prog = _x_programs(backend.capabilities().frames[0])["gaussian"]
    with pytest.raises(SafetyViolation, match="clearance"):
        backend.submit(backend.compile(prog), 100, "never-sent")


# -- two-qubit programs: flux and cross-resonance frames ---------------------------------------


def _render_all(backend: BraketBackend, prog: ir.Program) -> None:
    """(a) parse and round trip, (b) semantic pass, (c) the parsed text's trace equals the
    program's render on every frame, readouts included."""
    art = backend.compile(prog)
    tree = oq.parse_roundtrip(art.payload.source)
    assert oq.semantic_check(tree, backend.props) == []
    lifted = oq.lift(tree, backend.props, frames=prog.frames)
    assert [f.kind for f in lifted.frames] == [f.kind for f in prog.frames]
    got = ir.to_waveform_trace(lifted, DT)
    want = backend.capabilities().render(prog)
    assert set(got.samples) == set(want.samples) and got.n_samples == want.n_samples
    assert got.acquires == want.acquires
    for name, s in want.samples.items():
        np.testing.assert_allclose(got.samples[name], s, rtol=0, atol=1e-9)
        np.testing.assert_allclose(art.trace.samples[name], s, rtol=0, atol=1e-9)


def test_two_qubit_program_with_a_flux_frame_round_trips(backend: BraketBackend) -> None:
    from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ

    caps = backend.capabilities()
    channels = {"drive:q0": caps.frame("q0_rf_frame"), "drive:q1": caps.frame("q1_rf_frame"),
                "flux:q0": caps.frame("q0_q1_cphase_frame")}
    g = ir.Gaussian(24e-9, 6e-9, _pi_amp(ir.Gaussian(24e-9, 6e-9, 1.0))).samples(DT)
    ramp = np.concatenate([np.linspace(0.02, 0.2, 10), np.full(20, 0.2), np.linspace(0.2, 0.02, 10)])
    seq = PulseSequence((Play(g, channel="drive:q0"), Barrier(), Play(ramp, channel="flux:q0"),
                         VirtualZ(0.3, frame="q0"), Delay(8e-9, channel="drive:q1"), Play(g, channel="drive:q1"),
                         Barrier(), Play(g, channel="drive:q0"), Measure(("q0", "q1"))))
    prog = ir.from_sequence(seq, channels, DT, shots=100)
    src = backend.compile(prog).payload.source
    # The flux line plays baseband: its frame is moved to 0 Hz (and phase 0) first.
    assert "set_frequency(q0_q1_cphase_frame, 0.0)" in src
    assert "psb[0] = capture_v0(q0_ro_rx_frame)" in src and "psb[1] = capture_v0(q1_ro_rx_frame)" in src
    _render_all(backend, prog)
    # A hand-edited text that plays the flux frame at its 375 MHz carrier is refused by the lift.
    edited = src.replace("set_frequency(q0_q1_cphase_frame, 0.0);", "")
    with pytest.raises(ValueError, match=r"flux frame 'q0_q1_cphase_frame' plays at 375000000.0 Hz"):
        oq.lift(edited, backend.props, frames=prog.frames)


def test_cross_resonance_frame_round_trips() -> None:
    # A test fixture, not a device: today's stored Rigetti properties have no CR frame
    # (Rigetti's two-qubit gates are flux-activated), so add one on q0's drive port at q1's
    # frequency, mapped to both qubits, as a CR-capable Braket device would declare it.
    import json
    from importlib import resources

    d = json.loads(resources.files("pulsecal.hardware").joinpath("data", "braket_rigetti_pulse.json").read_text())
    q1 = d["pulse"]["frames"]["q1_rf_frame"]
    d["pulse"]["frames"]["q0_q1_cr_frame"] = {**q1, "frameId": "q0_q1_cr_frame", "portId": "q0_rf",
                                              "qubitMappings": [0, 1]}
    backend = BraketBackend(oq.BraketDeviceProperties.from_dict(d))
    caps = backend.capabilities()
    cr = caps.frame("q0_q1_cr_frame")
    assert (cr.kind, cr.port, cr.frequency_hz) == ("cr", "q0_rf", q1["frequency"])
    assert caps.drive_frames == {0: "q0_rf_frame", 1: "q1_rf_frame"}
    ramp = np.sin(np.linspace(0, np.pi / 2, 8)) ** 2
    w = 0.3 * np.concatenate([ramp, np.ones(48), ramp[::-1]])
    prog = ir.Program((ir.FramePlay("q0_q1_cr_frame", ir.Sampled(w, DT)), ir.ShiftPhase("q0_q1_cr_frame", 3.0),
                       ir.FramePlay("q0_q1_cr_frame", ir.Sampled(-w, DT)), ir.Acquire(0), ir.Acquire(1)),
                      (cr,), 100, (0, 1))
    assert "shift_phase(q0_q1_cr_frame, 3.0)" in backend.compile(prog).payload.source
    _render_all(backend, prog)


def test_current_rigetti_device_is_stored_by_arn_and_refuses_without_pulse_properties() -> None:
    with pytest.raises(ValueError, match=r"Cepheus-1-108Q.*pulse=None: allowed a 'pulse' section"):
        oq.BraketDeviceProperties.load("braket_rigetti_cepheus_1_108q")
