"""``run_template``'s per-fleet plans (programs, model groups, stacked delay channels, cached
on the template by the models' identities): a plan is never served for a fleet it was not
built for. Every call is checked against the operation-object path (``template.expand``)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from pulsecal.envs.device import DeviceParams, SequenceTemplate, SimulatedDevice
from pulsecal.envs.physics import Transmon

DT = 1e-9
TRANSMON = Transmon(detuning_hz=1.3e6, t1_s=30e-6, t2_s=20e-6)
# Two delays of different lengths, a frame change between plays, a slot played out of order.
TEMPLATE = SequenceTemplate(
    ((("play", 1), ("delay", 300), ("frame", 0), ("play", 0)),
     (("play", 0), ("delay", 40), ("frame", 1), ("play", 1), ("delay", 300))),
    n_waveforms=2, n_phases=2)


def _inputs(b_n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    waves = 0.3 * np.exp(1j * rng.uniform(0, 6, (b_n, 2, 16))) * rng.uniform(0, 1, (b_n, 2, 16))
    return waves, rng.uniform(-3, 3, (b_n, 2))


def _check(devs: list[SimulatedDevice], seed: int) -> None:
    waves, phases = _inputs(len(devs), seed)
    got = SimulatedDevice.template_probabilities(devs, TEMPLATE, waves, phases)
    want = [d.excited_probabilities(TEMPLATE.expand(waves[b], phases[b], DT)) for b, d in enumerate(devs)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("open_system", [True, False])
def test_a_device_given_new_params_gets_a_new_plan(open_system: bool) -> None:
    base = DeviceParams(TRANSMON)
    devs = [SimulatedDevice(base, open_system=open_system) for _ in range(3)]
    _check(devs, 0)  # one model object shared by the fleet: one delay group
    devs[1].reset(params=base.replace(transmon=TRANSMON.replace(t1_s=5e-6, t2_s=4e-6, detuning_hz=-2e6)))
    _check(devs, 1)  # same devices, one model changed
    devs[1].reset(params=base)
    _check(devs, 2)  # back to the first fleet
    devs[1].reset(params=base.replace(transmon=TRANSMON.replace(t1_s=7e-6, t2_s=6e-6)))
    _check(devs, 3)


def test_device_order_and_grouping_are_part_of_the_plan() -> None:
    a = DeviceParams(TRANSMON)
    b = DeviceParams(TRANSMON.replace(t1_s=4e-6, t2_s=3e-6, detuning_hz=0.5e6), amplitude_scale=0.9)
    da, db, da2 = SimulatedDevice(a), SimulatedDevice(b), SimulatedDevice(a)
    for seed, fleet in enumerate(([da, db, da2], [db, da, da2], [da, da2, db], [db, db, da], [da, db])):
        _check(fleet, seed)


def test_models_freed_and_replaced_never_hit_an_old_plan() -> None:
    """A plan keeps its models alive, so a new model cannot take a cached model's id; the
    results follow the new models whatever the allocator does."""
    for seed, t1_s in enumerate((30e-6, 3e-6, 12e-6, 2e-6)):
        devs = [SimulatedDevice(DeviceParams(TRANSMON.replace(t1_s=t1_s, t2_s=t1_s))) for _ in range(2)]
        _check(devs, seed)
        del devs
        gc.collect()


def test_a_cached_fleet_still_checks_its_devices() -> None:
    base = DeviceParams(TRANSMON)
    opened, closed = SimulatedDevice(base), SimulatedDevice(base, open_system=False)
    _check([opened, opened], 0)  # the plan of this model, open system
    waves, phases = _inputs(2, 1)
    with pytest.raises(ValueError, match="open_system"):
        SimulatedDevice.template_probabilities([opened, closed], TEMPLATE, waves, phases)
    other = SimulatedDevice(base.replace(transmon=TRANSMON.replace(levels=2)))
    with pytest.raises(ValueError, match="levels or dt_s"):
        SimulatedDevice.template_probabilities([opened, other], TEMPLATE, waves, phases)


@pytest.mark.parametrize("open_system", [True, False])
def test_sequences_that_start_with_an_earlier_one_continue_its_run(open_system: bool) -> None:
    """A sequence whose first operations are an earlier sequence (the probes' repetition
    counts) continues from that one's final state: the same probabilities and counts as the
    operation-object path, also with a zero phase (a skipped frame) in the shared part and
    with a repeated sequence."""
    x = (("play", 0), ("frame", 0), ("play", 1))
    seqs = (x, x * 3, (("delay", 20), *x), (*x, *x, ("delay", 0), ("play", 0)), x, ())
    template = SequenceTemplate(seqs, n_waveforms=2, n_phases=1)
    assert template.continues == (-1, 0, -1, 0, 0, -1)
    devs = [SimulatedDevice(DeviceParams(TRANSMON.replace(detuning_hz=d)), open_system=open_system)
            for d in (1e6, -2e6, 1e6)]
    waves, _ = _inputs(3, 7)
    for phases in (np.array([[0.4], [0.0], [-1.1]]), np.zeros((3, 1))):
        got = SimulatedDevice.template_probabilities(devs, template, waves, phases)
        want = [d.excited_probabilities(template.expand(waves[b], phases[b], DT)) for b, d in enumerate(devs)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    twins = [SimulatedDevice(DeviceParams(TRANSMON.replace(detuning_hz=d)), open_system=open_system,
                             rng=np.random.default_rng(4)) for d in (1e6, -2e6)]
    others = [SimulatedDevice(DeviceParams(TRANSMON.replace(detuning_hz=d)), open_system=open_system,
                              rng=np.random.default_rng(4)) for d in (1e6, -2e6)]
    counts = SimulatedDevice.run_template(twins, template, waves[:2], phases[:2] + 0.3, 200)
    ref = SimulatedDevice.run_many(
        others, [template.expand(waves[b], phases[b] + 0.3, DT) for b in range(2)], 200)
    np.testing.assert_array_equal(counts, np.stack(ref))
