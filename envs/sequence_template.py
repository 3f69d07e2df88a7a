"""A fixed layout of pulse sequences whose waveforms and frame phases vary per device.

An environment that runs the same probe layout on many devices every step describes it once
as a ``SequenceTemplate``; a device with the batched extension (``protocol.BatchedDevice``)
runs it from arrays, and ``expand`` gives the equivalent ``PulseSequence``s for any other
``Device``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import require
from .protocol import Delay, Play, PulseSequence, VirtualZ

# Token kinds of a ``SequenceTemplate``.
PLAY, FRAME, DELAY = "play", "frame", "delay"


@dataclass(frozen=True)
class SequenceTemplate:
    """K sequences with a fixed layout whose waveforms and frame phases vary per device.

    An environment that runs the same probe layout on many devices every step (only the
    calibrated waveforms and a frame ramp change) describes it once here, and a
    ``BatchedDevice.run_template_operators`` runs it from arrays, without building a ``Play``
    or ``VirtualZ`` object per operation. ``expand`` gives the equivalent ``PulseSequence``s
    (what a device without the batched extension runs).

    Attributes:
        sequences: per sequence, its tokens in order: ``("play", w)`` plays waveform slot
            w, ``("frame", f)`` is ``VirtualZ(phase slot f)`` (left out when that phase is
            exactly 0), ``("delay", n)`` is ``Delay(n·dt_s)`` (n >= 0 samples).
        n_waveforms: W, the waveform slots (every slot in [0, W) need not be played).
        n_phases: F, the phase slots.
        names: optional sequence names (``PulseSequence.name`` in ``expand``).

    Derived from the layout at construction (for the batched path, ``fleet_plan``):
        layout_arrays: (kind code (L,), slot (L,), operations per sequence (K,)) of the
            flattened tokens, kind codes 0 play, 1 frame, 2 delay.
        play_order: the waveform slots in order of first use.
        delay_samples: the distinct non-zero delays in samples, sorted.
        continues: per sequence, the longest earlier non-empty one that starts it (−1: none).
        program_cache, fleet_cache: the programs by number of devices and the plans by
            fleet of models, built on first use.
    """

    sequences: tuple[tuple[tuple[str, int], ...], ...]
    n_waveforms: int
    n_phases: int
    names: tuple[str, ...] = ()
    layout_arrays: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] = field(
        init=False, repr=False, compare=False)
    play_order: tuple[int, ...] = field(init=False, repr=False, compare=False)
    delay_samples: tuple[int, ...] = field(init=False, repr=False, compare=False)
    continues: tuple[int, ...] = field(init=False, repr=False, compare=False)
    program_cache: dict[int, Any] = field(init=False, repr=False, compare=False)
    fleet_cache: dict[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seqs = tuple(tuple((str(k), int(a)) for k, a in seq) for seq in self.sequences)
        object.__setattr__(self, "sequences", seqs)
        require(isinstance(self.n_waveforms, int) and self.n_waveforms >= 0,
                 "SequenceTemplate.n_waveforms", self.n_waveforms, "an int >= 0")
        require(isinstance(self.n_phases, int) and self.n_phases >= 0,
                 "SequenceTemplate.n_phases", self.n_phases, "an int >= 0")
        limit = {PLAY: self.n_waveforms, FRAME: self.n_phases}
        for q, seq in enumerate(seqs):
            for i, (kind, arg) in enumerate(seq):
                require(kind in (PLAY, FRAME, DELAY), f"SequenceTemplate.sequences[{q}][{i}]",
                         kind, "'play', 'frame' or 'delay'")
                hi = limit.get(kind)
                require(arg >= 0 and (hi is None or arg < hi), f"SequenceTemplate.sequences[{q}][{i}]",
                         (kind, arg), f"a slot in [0, {hi})" if hi is not None else "samples >= 0")
        names = tuple(self.names)
        require(not names or len(names) == len(seqs), "SequenceTemplate.names", names,
                 "empty or one name per sequence")
        object.__setattr__(self, "names", names)
        # The layout as arrays, shared by every run: kind code, slot, ops per sequence.
        flat = [tok for seq in seqs for tok in seq]
        kinds = {PLAY: 0, FRAME: 1, DELAY: 2}
        arrays = (
            np.array([kinds[k] for k, _ in flat], dtype=np.int64),
            np.array([a for _, a in flat], dtype=np.int64),
            np.array([len(seq) for seq in seqs], dtype=np.int64),
        )
        for a in arrays:
            a.setflags(write=False)
        object.__setattr__(self, "layout_arrays", arrays)
        # Waveform slots in order of first use: the order the generic path requests them.
        seen: dict[int, None] = {}
        for kind, slot in flat:
            if kind == PLAY:
                seen.setdefault(slot, None)
        object.__setattr__(self, "play_order", tuple(seen))
        object.__setattr__(self, "delay_samples", tuple(sorted({a for k, a in flat if k == DELAY and a > 0})))
        # Per sequence, the longest earlier non-empty one that starts it (-1: none): the
        # probes' short repetition counts start the long ones, whose runs continue them.
        continues = []
        for q, seq in enumerate(seqs):
            starts_it = [r for r in range(q) if 0 < len(seqs[r]) <= len(seq) and seq[:len(seqs[r])] == seqs[r]]
            continues.append(max(starts_it, key=lambda r: len(seqs[r]), default=-1))
        object.__setattr__(self, "continues", tuple(continues))
        object.__setattr__(self, "program_cache", {})
        object.__setattr__(self, "fleet_cache", {})

    @property
    def n_sequences(self) -> int:
        return len(self.sequences)

    def expand(self, waveforms: ArrayLike, phases: ArrayLike, dt_s: float) -> list[PulseSequence]:
        """The sequences for one device: waveforms (W, S), phases (F,)."""
        w = np.asarray(waveforms, dtype=np.complex128)
        ph = np.asarray(phases, dtype=np.float64).reshape(-1)
        plays = [Play(w[i]) for i in range(self.n_waveforms)]
        frames = [VirtualZ(float(x)) for x in ph]
        out = []
        for q, seq in enumerate(self.sequences):
            ops: list[Play | VirtualZ | Delay] = []
            for kind, a in seq:
                if kind == PLAY:
                    ops.append(plays[a])
                elif kind == FRAME:
                    if ph[a] != 0.0:
                        ops.append(frames[a])
                else:
                    ops.append(Delay(a * dt_s))
            out.append(PulseSequence(tuple(ops), name=self.names[q] if self.names else ""))
        return out
