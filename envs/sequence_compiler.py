"""Pulse sequences to integer programs, and the propagators they index, for the simulated device.

Every sequence becomes a program (propagator index or frame change per operation) that one
compiled loop (``physics.sequence_kernels``) applies to |0⟩⟨0|. Only distinct waveforms need
physics: they are deduplicated across all sequences and devices of a call, computed in one
batched physics call per pulse length and cached per device until its model drifts. The
state is held in the sequence's own frame (``physics.real_basis.frame_changes``), so a
``Play`` applies its waveform's propagator unchanged whatever the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from .delay_channels import free_channels
from .physics import Transmon, superoperators, unitaries
from .physics.fast import superoperators_real as fast_superoperators_real
from .physics.real_basis import frame_changes, from_hermitian_basis, pair_gaps, real_basis, to_real
from .physics.sequence_kernels import (
    OP_FRAME,
    OP_MAT,
    OP_SKIP,
    run_programs_closed,
    run_programs_open,
)
from .protocol import Delay, Play, PulseSequence, VirtualZ
from .pulses import LowPass

if TYPE_CHECKING:
    from .simulated_device import SimulatedDevice

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]
_Key = TypeVar("_Key")

# Propagators a device keeps per waveform before its cache is cleared.
_CACHE_LIMIT = 512

# The run loops' ``resume`` when no program continues another.
NO_RESUME = np.zeros(0, dtype=np.int64)
NO_RESUME.setflags(write=False)


@dataclass(frozen=True)
class PlayOperators:
    """The propagators a ``run_template_operators`` call applied for its waveform slots,
    exactly as the devices applied them (simulation truth: for evaluation, never for an
    agent).

    Attributes:
        mats: (B, P, M, M) real Hermitian-basis forms (open system, ``real_basis``) or
            (B, P, N, N) unitaries (closed), of the P played slots of each device.
        slots: the waveform slot of each of the P entries.
        devices: the B devices, and ``models`` the model each simulated during the run; the
            operators are the devices' truth while ``device.simulated_model() is model`` (a drifted
            model is a new object).
        open_system: which of the two forms ``mats`` holds.
    """

    mats: NDArray[Any]
    slots: tuple[int, ...]
    devices: tuple[SimulatedDevice, ...]
    models: tuple[Transmon, ...]
    open_system: bool

    def current(self) -> bool:
        """Whether every device still simulates the model the operators were made with."""
        return all(d.simulated_model() is m for d, m in zip(self.devices, self.models, strict=True))

    def operators(self, slot: int) -> ComplexArray:
        """(B, N², N²) column-stacking superoperators (open) or (B, N, N) unitaries of
        waveform slot ``slot``: what ``SimulatedDevice.play_operators`` gives for it."""
        if slot not in self.slots:
            raise ValueError(f"slot={slot!r} was not played: allowed one of {list(self.slots)}")
        mats = self.mats[:, self.slots.index(slot)]
        if self.open_system:
            return from_hermitian_basis(mats, real_basis(self.models[0].levels)[0])
        return mats


def shared_open_system(devices: Sequence[SimulatedDevice]) -> bool:
    """``common_open_system``, having checked that the devices share one grid and level
    count; brings every device's model up to date."""
    flag = common_open_system(devices)
    check_one_grid([d.simulated_model() for d in devices])
    return flag


def common_open_system(devices: Sequence[SimulatedDevice]) -> bool:
    """The devices' common ``open_system`` (one kind per call)."""
    flag = devices[0]._open_system
    if any(d._open_system is not flag for d in devices):
        raise ValueError("devices mix open_system=True and False: allowed one kind per call")
    return flag


def check_one_grid(models: Sequence[Transmon]) -> None:
    first = models[0]
    if any(m.levels != first.levels or m.dt_s != first.dt_s for m in models):
        raise ValueError("devices differ in levels or dt_s: allowed one grid and level count per call")


def distort(lp: LowPass | None, w: ComplexArray, dt_s: float) -> ComplexArray:
    return w if lp is None or lp.rise_time_s == 0 else lp.apply(w, dt_s)


def play_physics(transmons: list[Transmon], waveforms: list[ComplexArray], open_system: bool) -> NDArray[Any]:
    """Propagators of rows of possibly different lengths: one physics call per length.

    Open systems give the real Hermitian-basis forms the run loop works in (``real_basis``;
    ``play_operators`` turns them into column stacking), closed ones unitaries.
    """
    lengths = np.array([w.size for w in waveforms])
    out: NDArray[Any] | None = None
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        waves = np.stack([waveforms[i] for i in rows])
        if open_system:
            # Models deduplicated by identity (a device's model object is shared by all its
            # pulses); equal models under different objects just repeat their coefficients.
            index: dict[int, int] = {}
            uniq: list[Transmon] = []
            gidx = np.empty(rows.size, dtype=np.int64)
            for j, i in enumerate(rows.tolist()):
                t = transmons[i]
                g = index.get(id(t))
                if g is None:
                    g = index[id(t)] = len(uniq)
                    uniq.append(t)
                gidx[j] = g
            real = fast_superoperators_real(uniq, waves, gidx)
            if real is None:  # a model without the fast engine's structure
                real = to_real(superoperators([uniq[g] for g in gidx], waves),
                                real_basis(uniq[0].levels)[0])
            part: NDArray[Any] = real
        else:
            part = unitaries(tuple(transmons[i] for i in rows), waves)
        if out is None:
            out = np.empty((len(waveforms), *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    assert out is not None
    return out


def play_physics_rows(models: list[Transmon], gidx: NDArray[np.int64], waves: ComplexArray,
                  open_system: bool) -> NDArray[Any]:
    """``play_physics`` for rows of one length held in one array: (R, S) waveforms, row r on
    ``models[gidx[r]]`` (distinct model objects). The same physics call ``play_physics`` makes
    for these rows, bit for bit, without the per-row lists."""
    if not open_system:
        return unitaries(tuple(models[g] for g in gidx.tolist()), waves)
    real = fast_superoperators_real(models, waves, gidx)
    if real is None:  # a model without the fast engine's structure
        real = to_real(superoperators([models[g] for g in gidx.tolist()], waves),
                        real_basis(models[0].levels)[0])
    return real


def play_propagators(
    devices: Sequence[SimulatedDevice], requests: list[tuple[int, bytes]], open_system: bool
) -> list[ComplexArray]:
    """Propagator of waveform ``key`` on device ``d`` for each request (d, key), from the
    device's cache or from one batched physics call for the misses, which are remembered.
    Open systems: the real Hermitian-basis form (``play_physics``).

    The caller must have called ``_model()`` on every device first: that is what clears a
    cache whose model has drifted away."""
    mats: list[ComplexArray | None] = [None] * len(requests)
    todo: dict[tuple[int, bytes], list[int]] = {}
    for r, (d, key) in enumerate(requests):
        hit = devices[d].play_cache.get(("play", key))
        if hit is not None:
            mats[r] = hit
        else:
            todo.setdefault((d, key), []).append(r)
    if todo:
        waves = [
            distort(devices[d]._base.distortion, np.frombuffer(key, dtype=np.complex128), devices[d].dt_s)
            for d, key in todo
        ]
        props = play_physics([devices[d].simulated_model() for d, _ in todo], waves, open_system)
        for ((d, key), rows), m in zip(todo.items(), props, strict=True):
            _remember(devices[d], ("play", key), m)
            for r in rows:
                mats[r] = m
    return mats  # type: ignore[return-value]


def _remember(dev: SimulatedDevice, key: Any, value: ComplexArray) -> None:
    # Valid until the device's simulated model changes (``simulated_model`` clears it).
    if len(dev.play_cache) >= _CACHE_LIMIT:
        dev.play_cache.clear()
    dev.play_cache[key] = value


def populations(devices: Sequence[SimulatedDevice], seqs: list[list[PulseSequence]]) -> list[FloatArray]:
    """Exact P(excited) of every sequence on its device, at each device's current truth."""
    p_exc = populations_flat(devices, seqs)
    ends = np.cumsum([len(s) for s in seqs]).tolist()
    return [p_exc[e - len(s):e] for e, s in zip(ends, seqs, strict=True)]


def populations_flat(devices: Sequence[SimulatedDevice], seqs: list[list[PulseSequence]]) -> FloatArray:
    """``populations`` concatenated over devices: (Σ_b len(seqs[b]),)."""
    if not devices:
        return np.zeros(0)
    open_system = shared_open_system(devices)
    levels = devices[0].simulated_model().levels
    op_lists: list[tuple[Any, ...]] = []
    for dev_seqs in seqs:
        for seq in dev_seqs:
            if not isinstance(seq, PulseSequence):
                raise TypeError(f"sequence is {type(seq).__name__}: allowed PulseSequence")
            op_lists.append(seq.ops)
    sizes = [len(s) for s in seqs]
    p_exc = np.zeros(len(op_lists))
    lens = np.fromiter(map(len, op_lists), dtype=np.int64, count=len(op_lists))
    if lens.sum():
        code, arg, mats, frames = compile_programs(devices, sizes, op_lists, lens, levels, open_system)
        starts = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=starts[1:])
        if open_system:
            _, sym, anti, _ = real_basis(levels)
            run_programs_open(starts, NO_RESUME, code, arg, mats, frames, sym, anti, pair_gaps(levels)[1], p_exc)
        else:
            run_programs_closed(starts, NO_RESUME, code, arg, mats, frames, p_exc)
    return p_exc


def compile_programs(
    devices: Sequence[SimulatedDevice], sizes: list[int], op_lists: list[tuple[Any, ...]],
    lens: NDArray[np.int64], levels: int, open_system: bool,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any], NDArray[Any]]:
    """Integer programs for all sequences: (code, arg) per operation, the propagators and
    the frame changes they index.

    Python touches each distinct (operation object, device) pair once, not each operation:
    sequences repeat a few objects (the X Play, one VirtualZ for the frame ramp) many times,
    and the objects are told apart by identity (they are all alive during the call, so
    their ids are distinct) with one NumPy sort.
    """
    flat = list(chain.from_iterable(op_lists))
    ids = np.fromiter(map(id, flat), dtype=np.uint64, count=len(flat))
    op_dev = np.repeat(np.repeat(np.arange(len(devices), dtype=np.int64), sizes), lens)
    # Distinct (object, device) pairs. Operations are laid out device by device, so a
    # stable sort by id alone leaves each id's devices in order: one sort, no second key.
    order = np.argsort(ids, kind="stable")
    sid, sdev = ids[order], op_dev[order]
    new = np.empty(len(flat), dtype=np.bool_)
    new[0] = True
    np.logical_or(sid[1:] != sid[:-1], sdev[1:] != sdev[:-1], out=new[1:])
    pair = np.empty(len(flat), dtype=np.int64)
    pair[order] = np.cumsum(new) - 1
    # Number the distinct pairs by first use rather than by id (a memory address), so the
    # play propagators are requested in a reproducible order: the physics shares one
    # squaring count per block of pulses, so which pulses share a block shows in the last
    # bits. ``template_populations`` requests them in this order too.
    first_pos = order[new]
    by_use = np.argsort(first_pos, kind="stable")
    rank = np.empty_like(by_use)
    rank[by_use] = np.arange(by_use.size)
    pair = rank[pair]
    first = first_pos[by_use].tolist()
    objs = [flat[i] for i in first]
    devs = sdev[new][by_use].tolist()

    n_pairs = len(objs)
    ucode = np.full(n_pairs, OP_MAT, dtype=np.int64)
    uarg = np.zeros(n_pairs, dtype=np.int64)
    classes = list(map(type, objs))
    # Frame changes are most of the distinct objects (one per frame phase a probe uses):
    # read them in one pass.
    vz = [u for u, c in enumerate(classes) if c is VirtualZ]
    phases = np.array([objs[u].phase for u in vz], dtype=np.float64)
    # Distinct objects only (a handful per call), so refusing multi-qubit operations here
    # costs nothing per env step; the scan that names the sequence runs only on refusal.
    if any(objs[u].frame is not None for u in vz):
        _refuse_multi_qubit(op_lists)
    ucode[vz] = OP_FRAME
    uarg[vz] = np.arange(len(vz))
    play_req: list[tuple[int, bytes]] = []
    play_slot: dict[tuple[int, bytes], int] = {}
    free_req: list[tuple[Transmon, int, bool]] = []
    free_slot: dict[tuple[Transmon, int, bool], int] = {}
    slot_kind: list[int] = []  # per matrix slot: 0 play, 1 delay (in request order)
    for u in (u for u, c in enumerate(classes) if c is not VirtualZ):
        op, cls, d = objs[u], classes[u], devs[u]
        if (cls is not Play and cls is not Delay) or op.channel is not None:
            _refuse_multi_qubit(op_lists)
        if cls is Play:
            uarg[u] = _slot(play_slot, play_req, (d, op.key), 0, slot_kind)
        elif cls is Delay:
            nsamp = round(op.duration_s / devices[d].dt_s)
            if nsamp == 0:
                ucode[u] = OP_SKIP
                continue
            uarg[u] = _slot(free_slot, free_req, (devices[d].simulated_model(), nsamp, open_system), 1, slot_kind)
        else:  # pragma: no cover - _refuse_multi_qubit raised above
            raise TypeError(f"unknown operation {cls.__name__}")

    dim = levels * levels if open_system else levels
    mats = np.zeros((max(len(slot_kind), 1), dim, dim), dtype=np.float64 if open_system else np.complex128)
    kinds = np.array(slot_kind, dtype=np.int64)
    if play_req:
        rows = np.flatnonzero(kinds == 0)
        mats[rows] = np.stack(play_propagators(devices, play_req, open_system))
    if free_req:
        rows = np.flatnonzero(kinds == 1)
        mats[rows] = np.stack(free_channels(free_req, open_system))
    frames = frame_changes(phases, levels, open_system)
    return ucode[pair], uarg[pair], mats, frames


def _slot(slots: dict[_Key, int], requests: list[_Key], key: _Key, kind: int, slot_kind: list[int]) -> int:
    """The matrix slot of ``key``; a key seen first gets the next slot, marked ``kind``, and
    joins ``requests`` (the slots are filled in request order)."""
    s = slots.get(key)
    if s is None:
        s = slots[key] = len(slot_kind)
        slot_kind.append(kind)
        requests.append(key)
    return s


def _refuse_multi_qubit(op_lists: list[tuple[Any, ...]]) -> None:
    """Raise naming the first sequence that addresses channels, frames, Barrier or Measure:
    the single-transmon device has one drive and one qubit, so such a sequence means
    nothing on it (``PulseSequence.is_single_qubit``)."""
    for i, ops in enumerate(op_lists):
        for j, op in enumerate(ops):
            if not PulseSequence((op,)).is_single_qubit:
                raise ValueError(
                    f"sequences[{i}].ops[{j}] = {type(op).__name__} with a channel, frame or qubits: "
                    "SimulatedDevice runs single-qubit sequences only (no channel, frame, Barrier "
                    "or Measure); use envs.multi_qubit_device.SimulatedMultiQubitDevice"
                )
    raise AssertionError("no multi-qubit operation found")  # pragma: no cover
