"""PulseShaping-v0: find a short, low-leakage pulse for a target gate.

The version for devices that vary is ``pulse_shaping_v1``."""

from __future__ import annotations

from .pulse_shaping_core import PulseShapingCore
from .vector import BatchedVectorEnv, SingleCoreEnv


class PulseShapingEnv(SingleCoreEnv):
    """Shape a short pulse (DRAG base + smooth sine basis) for a target gate.

    ## Description
    On the short-gate preset (6 ns, α/2π = −200 MHz, 0.5 ns grid) a textbook DRAG pulse
    leaks and misses the target by ~1e-2; the agent reshapes the pulse to reach the
    target gate (``target``: X, SX or H, with free virtual-Z frames) with low leakage.

    ## Action Space
    ``Box(-1, 1, (3 + 2·n_basis,), float32)`` over coordinates z: relative amplitude
    (× ``amplitude_range``), relative β (× ``beta_range``), detuning
    (× ``detuning_range_hz``), then ``n_basis`` sine coefficients on I and on Q
    (× ``coeff_range``, full-scale units). ``action_mode="set"``: z = action;
    ``"delta"``: z += ``max_step``·action, clipped to [−1, 1]. NaN/inf or out-of-range
    actions raise ``ValueError``.

    ## Observation Space
    ``Box(float32)``: z, the current score −log10(error + floor) / −log10(floor), in
    ``reward_mode="measured"`` the measured excited fractions of the probes, and with
    ``characterised`` the characterised device (α/α_nom − 1 and Ω_R/Ω_nom − 1 in units
    of 0.2, rise time / 0.5 ns, detuning / 0.5 MHz).

    ## Rewards
    ``reward_mode="privileged"`` USES SIMULATION KNOWLEDGE: −log10(1 − F + floor) with F the
    open-system average gate fidelity on the qubit subspace with virtual Z (a leaking
    gate is not unitary on the subspace, so leakage lowers F). ``"measured"`` is usable
    on hardware: the error is estimated from shots of the pulse repeated order·r times
    (ideal identity) against a ground reference (P1 ≈ N²φ²/4 → 1 − F ≈ (2/3)·slope),
    minus ``shot_cost`` per 1000 shots.

    ## Starting State
    The textbook DRAG pulse of the nominal (preset) device plus a small random sine
    perturbation; ``reset(options={"device_params": ..., "initial_z": ...})`` fixes it.

    ## Episode End
    Never terminates; truncation by ``TimeLimit`` (registered ``max_episode_steps``).

    ## Arguments
    device, target, gate_duration_s, open_system, n_basis, action_mode, reward_mode,
    amplitude_range, beta_range, detuning_range_hz, coeff_range, max_step, shots_per_probe,
    probe_repeats, shot_cost, error_floor, report_truth, randomize_device, sampler,
    characterised, characterisation_error, render_mode (``PulseShapingConfig``). ``info``: fidelity, fidelity_raw, leakage, coherence_limit
    (truth), error_estimate, shots_used, device_time_s, waveform, dt_s.

    ## Version History
    - v0: initial version.
    """

    core_class = PulseShapingCore


class PulseShapingVectorEnv(BatchedVectorEnv):
    """N copies of ``PulseShapingEnv`` sharing one propagator call per step."""

    core_class = PulseShapingCore

