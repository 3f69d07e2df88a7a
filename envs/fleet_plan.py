"""``run_template``'s path: a template's programs on a fleet of devices, planned once per fleet.

A calibration environment runs the same probe layout (``SequenceTemplate``) on the same
fleet of device models step after step; only the waveforms and frame phases change. The
plan of a fleet (programs, model groups, stacked delay channels) is built once, cached on the
template by the models' identities, and each step computes its plays in one physics call
straight from the waveform arrays.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import require
from .delay_channels import free_channels
from .physics import Transmon
from .physics.real_basis import frame_changes, pair_gaps, real_basis
from .physics.sequence_kernels import (
    BAD_PHASE,
    BAD_WAVEFORM,
    OP_FRAME,
    OP_MAT,
    OP_SKIP,
    ZERO_PHASE,
    run_programs_closed,
    run_programs_open,
    scan_waveforms_and_phases,
)
from .sequence_compiler import (
    NO_RESUME,
    PlayOperators,
    check_one_grid,
    common_open_system,
    distort,
    play_physics,
    play_physics_rows,
)
from .sequence_template import SequenceTemplate

if TYPE_CHECKING:
    from .simulated_device import SimulatedDevice

FloatArray = NDArray[np.float64]


def template_populations(
    devices: Sequence[SimulatedDevice], template: SequenceTemplate, waveforms: ArrayLike,
    phases: ArrayLike,
) -> tuple[FloatArray, PlayOperators | None]:
    """P(excited) of ``template`` on every device, (B·K,) device by device, and the play
    propagators it applied (None when nothing is played): ``compile_programs``'s programs built
    from the layout arrays instead of operation objects.

    The plays are computed from the waveform arrays in one physics call, without the
    per-device waveform caches (a calibration step never plays a waveform twice), in the
    order ``compile_programs`` requests them: (device, slot in order of first use). When those
    requests all miss the caches of the generic path (fresh waveforms, as every step of a
    calibration env) this is bit for bit what ``populations_flat`` gives for the expanded
    sequences: the same pulses batched together, the same delay channels and frame
    rotations, applied by the same loop; otherwise the two differ by float rounding at most
    (a cached propagator came from another batch).
    """
    b_n, k_n = len(devices), template.n_sequences
    if not b_n:
        return np.zeros(0), None
    w = np.asarray(waveforms, dtype=np.complex128)
    ph = np.asarray(phases, dtype=np.float64)
    if not (w.ndim == 3 and w.shape[:2] == (b_n, template.n_waveforms) and w.shape[2] >= 1):
        require(False, "waveforms", w.shape, f"shape ({b_n}, {template.n_waveforms}, S >= 1)")
    if ph.shape != (b_n, template.n_phases):
        require(False, "phases", ph.shape, f"shape ({b_n}, {template.n_phases})")
    # Play's and VirtualZ's checks, once over the arrays: one compiled pass, which also
    # says whether any phase is exactly 0 (a frame change left out, below).
    flat_ph = ph.reshape(-1)
    status = scan_waveforms_and_phases(w.reshape(-1), flat_ph, 1.0 + 1e-9)
    if status & BAD_WAVEFORM:
        peak = float(np.abs(w).max())
        raise ValueError(f"waveforms peak |u| = {peak:.6g} (or NaN/inf): allowed finite |u| <= 1")
    if status & BAD_PHASE:
        raise ValueError("phases has NaN/inf entries: allowed finite angles in rad")
    models = [d.simulated_model() for d in devices]
    plan = fleet_plan(devices, models, template)
    if plan.code.size == 0:
        return np.zeros(b_n * k_n), None
    open_system = plan.open_system
    mats = plan.delays
    plays: PlayOperators | None = None
    if plan.n_play:
        n_play = plan.n_play
        rows = (w if plan.gather is None else w[:, plan.gather, :]).reshape(b_n * n_play, -1)
        if any(d._base.distortion is not None for d in devices):
            # Distorted rows may differ in length: the generic per-row physics.
            waves = [distort(devices[r // n_play]._base.distortion, rows[r], devices[r // n_play].dt_s)
                     for r in range(rows.shape[0])]
            row_models = [models[b] for b in range(b_n) for _ in range(n_play)]
            played = play_physics(row_models, waves, open_system)
        else:
            played = play_physics_rows(plan.group_models, plan.row_groups, rows, open_system)
        plays = PlayOperators(played.reshape(b_n, n_play, plan.dim, plan.dim), template.play_order,
                              tuple(devices), tuple(models), open_system)
        mats = played if mats is None else np.concatenate((played, mats))
    if mats is None:  # only frame changes and zero delays: the loop reads no matrix
        mats = np.zeros((1, plan.dim, plan.dim), dtype=np.float64 if open_system else np.complex128)
    frames = frame_changes(flat_ph, plan.levels, open_system)
    code = plan.code_flat
    # A frame of phase exactly 0 is left out of the expanded sequence; skipping it here
    # is the same (a rotation by 0 would be the identity anyway).
    if status & ZERO_PHASE:
        zero = ph[:, plan.farg] == 0.0
        code2 = plan.code.copy()
        code2[:, plan.fcols] = np.where(zero, OP_SKIP, OP_FRAME)
        code = code2.reshape(-1)
    p_exc = np.empty(b_n * k_n)
    if open_system:
        run_programs_open(plan.starts, plan.resume, code, plan.arg_flat, mats, frames, plan.sym, plan.anti,
                  plan.pair_gap, p_exc)
    else:
        run_programs_closed(plan.starts, plan.resume, code, plan.arg_flat, mats, frames, p_exc)
    return p_exc, plays


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """What ``template_populations`` needs for one template on one fleet of B models (by
    identity; a drifted model is a new object), built once and reused every step.

    Attributes:
        models: the B models, kept alive so that their ids in the cache key stay theirs.
        open_system, levels, dim: the kind of simulation and its state dimension.
        n_play: played slots; ``gather``: their order as a list, or None when every slot is
            played in slot order (then the waveforms need no gather).
        group_models, row_groups: the distinct models and the group of each play row
            (B·n_play,), as ``play_physics_rows`` takes them.
        delays: (G·D, M, M) read-only stacked delay channels of the G model groups (None
            without delays), placed after the B·n_play plays in the matrix list.
        code, code_flat, arg_flat, starts, resume, fcols, farg: the programs
            (``_build_template_programs``) with the delay arguments of this grouping.
        sym, anti, pair_gap: the real basis' level pairs and their gap columns (open
            systems; else empty).
    """

    models: tuple[Transmon, ...]
    open_system: bool
    levels: int
    dim: int
    n_play: int
    gather: list[int] | None
    group_models: list[Transmon]
    row_groups: NDArray[np.int64]
    delays: NDArray[Any] | None
    code: NDArray[np.int64]
    code_flat: NDArray[np.int64]
    arg_flat: NDArray[np.int64]
    starts: NDArray[np.int64]
    resume: NDArray[np.int64]
    fcols: NDArray[np.int64]
    farg: NDArray[np.int64]
    sym: NDArray[np.int64]
    anti: NDArray[np.int64]
    pair_gap: NDArray[np.int64]


def fleet_plan(devices: Sequence[SimulatedDevice], models: list[Transmon],
                template: SequenceTemplate) -> FleetPlan:
    """``FleetPlan`` of ``template`` for these devices' current ``models``, cached on the
    template by the models' ids and checked by identity (the plan keeps them alive), so a
    drifted model, a new object, never hits. Checks that the devices can share one call."""
    flag = common_open_system(devices)
    fleets: dict[Any, FleetPlan] = template.fleet_cache
    key = (flag, *map(id, models))
    plan = fleets.get(key)
    if plan is None or not all(map(operator.is_, plan.models, models)):
        plan = _build_fleet_plan(devices, models, template, flag)
        if len(fleets) >= 64:
            fleets.clear()
        fleets[key] = plan
    return plan


def _build_fleet_plan(devices: Sequence[SimulatedDevice], models: list[Transmon],
                      template: SequenceTemplate, open_system: bool) -> FleetPlan:
    check_one_grid(models)
    b_n, levels = len(models), models[0].levels
    order: tuple[int, ...] = template.play_order
    delays: tuple[int, ...] = template.delay_samples
    n_play, n_del = len(order), len(delays)
    dim = levels * levels if open_system else levels
    # Devices that simulate the same model object (a fleet of one preset) share their
    # delay channels: one set per distinct model.
    index: dict[int, int] = {}
    owner: list[int] = []
    gidx = np.empty(b_n, dtype=np.int64)
    for b, model in enumerate(models):
        g = index.get(id(model))
        if g is None:
            g = index[id(model)] = len(owner)
            owner.append(b)
        gidx[b] = g
    code, arg, starts, resume, fcols, farg, dcols, dpos = _template_programs(template, b_n)
    if dcols.size and len(owner) != b_n:
        # Devices share model groups (the base arguments number the groups by device).
        arg = arg.copy()
        arg[:, dcols] = b_n * n_play + gidx[:, None] * n_del + dpos[None, :]
    stacked = None
    if n_del:
        stacked = np.empty((len(owner) * n_del, dim, dim), dtype=np.float64 if open_system else np.complex128)
        _stack_delays(devices, models, owner, delays, open_system, stacked)
    sym = anti = pair_gap = np.zeros(0, dtype=np.int64)
    if open_system:
        _, sym, anti, _ = real_basis(levels)
        pair_gap = pair_gaps(levels)[1]
    row_groups = np.repeat(gidx, n_play)
    for a in (arg, stacked, row_groups):
        if a is not None:
            a.setflags(write=False)
    return FleetPlan(
        models=tuple(models), open_system=open_system, levels=levels, dim=dim, n_play=n_play,
        gather=None if order == tuple(range(template.n_waveforms)) else list(order),
        group_models=[models[b] for b in owner], row_groups=row_groups, delays=stacked,
        code=code, code_flat=code.reshape(-1), arg_flat=arg.reshape(-1), starts=starts, resume=resume,
        fcols=fcols, farg=farg, sym=sym, anti=anti, pair_gap=pair_gap)


def _stack_delays(devices: Sequence[SimulatedDevice], models: list[Transmon], owner: list[int],
                  delays: tuple[int, ...], open_system: bool, out: NDArray[Any]) -> None:
    """The channels of the D distinct ``delays`` of each model group g (first device
    ``owner[g]``) into out[g·D + j]: from the device's own cache (cleared with its model),
    else from the shared cache by model (hashing a model costs more than the lookup). A
    device seen before in this model has the template's delays stacked: one copy."""
    n_del = len(delays)
    missing: list[tuple[int, int]] = []
    unstacked: list[int] = []
    for g, b in enumerate(owner):
        cache = devices[b].delay_cache
        stacked = cache.get((delays, open_system))
        if stacked is not None:
            out[g * n_del:(g + 1) * n_del] = stacked
            continue
        unstacked.append(g)
        for j, n in enumerate(delays):
            hit = cache.get((n, open_system))
            if hit is None:
                missing.append((g, j))
            else:
                out[g * n_del + j] = hit
    if missing:
        keys = [(models[owner[g]], delays[j], open_system) for g, j in missing]
        for (g, j), m in zip(missing, free_channels(keys, open_system), strict=True):
            out[g * n_del + j] = m
            devices[owner[g]].delay_cache[(delays[j], open_system)] = m
    for g in unstacked:
        block = out[g * n_del:(g + 1) * n_del].copy()
        block.setflags(write=False)
        devices[owner[g]].delay_cache[(delays, open_system)] = block


def _template_programs(template: SequenceTemplate, b_n: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """``_build_template_programs``, cached on the template itself (a lookup by B instead
    of hashing the whole layout every step)."""
    cache: dict[int, Any] = template.program_cache
    hit = cache.get(b_n)
    if hit is None:
        if len(cache) >= 64:
            cache.clear()
        hit = cache[b_n] = _build_template_programs(template, b_n)
    return hit  # type: ignore[no-any-return]


def _build_template_programs(template: SequenceTemplate, b_n: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The parts of ``template_populations``' programs that depend only on the layout and
    the number of devices: codes (B, L) with every frame as a frame change, slot arguments
    (B, L), program starts (B·K + 1,), which program each continues (``run_programs_open``'s
    ``resume``), the frame columns and their phase slots, the delay columns and the rank
    of their delay among the distinct ones.

    Matrix slots: device b's plays at b·n_play + (rank of first use), then the delays at
    B·n_play + g·D + j for the device's model group g (D distinct non-zero delays; the
    arguments here take g = b, the caller sets the groups); frame f of device b at b·F + f.
    """
    tcode, targ, lens = template.layout_arrays
    order: tuple[int, ...] = template.play_order
    delays: tuple[int, ...] = template.delay_samples
    n_play = len(order)
    play_rank = np.zeros(max(template.n_waveforms, 1), dtype=np.int64)
    play_rank[list(order)] = np.arange(n_play)
    rows = np.arange(b_n, dtype=np.int64)[:, None]
    is_play, is_frame, is_delay = tcode == 0, tcode == 1, tcode == 2
    code = np.where(is_frame, OP_FRAME, OP_MAT)[None, :].repeat(b_n, axis=0)
    arg = np.zeros((b_n, tcode.size), dtype=np.int64)
    arg[:, is_play] = rows * n_play + play_rank[targ[is_play]][None, :]
    farg = targ[is_frame]
    arg[:, is_frame] = rows * template.n_phases + farg[None, :]
    dcols = np.zeros(0, dtype=np.int64)
    dpos = np.zeros(0, dtype=np.int64)
    if delays:
        dtarg = targ[is_delay]
        dpos = np.minimum(np.searchsorted(np.asarray(delays), dtarg), len(delays) - 1)
        dcols = np.flatnonzero(is_delay)
        arg[:, is_delay] = b_n * n_play + rows * len(delays) + dpos[None, :]
        code[:, dcols[dtarg == 0]] = OP_SKIP
    else:
        code[:, is_delay] = OP_SKIP
    starts = np.zeros(b_n * lens.size + 1, dtype=np.int64)
    np.cumsum(np.tile(lens, b_n), out=starts[1:])
    continues = np.array(template.continues, dtype=np.int64)
    resume = NO_RESUME
    if (continues >= 0).any():
        k_n = continues.size
        resume = np.where(continues >= 0, rows * k_n + continues[None, :], -1).reshape(-1)
    out = (code, arg, starts, resume, np.flatnonzero(is_frame), farg, dcols, dpos)
    for a in out:
        a.setflags(write=False)
    return out
