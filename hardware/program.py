"""The pulse program of the IR: instructions over declared frames, validated once, with
its canonical JSON form and content hash (the key of idempotent jobs and of journals).

``pulsecal.hardware.ir`` documents the IR's conventions and is the import path for all of
it; this module holds only the ``Program`` record and its serialisation.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .instructions import (
    INSTRUCTION_TYPES,
    Acquire,
    Frame,
    FrameBarrier,
    FrameDelay,
    FramePlay,
    Instruction,
    SetFrequency,
    SetPhase,
    ShiftFrequency,
    ShiftPhase,
    instruction_from_dict,
)
from .waveforms import Constant, Drag, Gaussian, Sampled, fail_field, set_field

IR_FORMAT = "pulsecal.ir/1"


@dataclass(frozen=True)
class Program:
    """Instructions over declared ``frames``, run ``shots`` times on ``qubits``."""

    instructions: tuple[Instruction, ...]
    frames: tuple[Frame, ...]
    shots: int
    qubits: tuple[int, ...] = (0,)
    name: str = ""
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        instructions = tuple(self.instructions)
        for i, ins in enumerate(instructions):
            if not isinstance(ins, INSTRUCTION_TYPES):
                fail_field("Program", f"instructions[{i}]", type(ins).__name__,
                      "FramePlay, ShiftPhase, SetPhase, ShiftFrequency, SetFrequency, FrameDelay, "
                      "FrameBarrier or Acquire")
        frames = tuple(self.frames)
        names = [f.name for f in frames if isinstance(f, Frame)]
        if len(names) != len(frames):
            fail_field("Program", "frames", frames, "a tuple of Frame")
        if len(set(names)) != len(names):
            fail_field("Program", "frames", names, "unique frame names")
        if isinstance(self.shots, bool) or not isinstance(self.shots, int | np.integer) \
                or self.shots < 1:
            fail_field("Program", "shots", self.shots, "an integer >= 1")
        qubits = tuple(int(q) for q in self.qubits)
        if not qubits or len(set(qubits)) != len(qubits) or min(qubits) < 0:
            fail_field("Program", "qubits", self.qubits, "a non-empty tuple of distinct integers >= 0")
        declared = set(names)
        for i, ins in enumerate(instructions):
            used: tuple[str, ...] = ()
            if isinstance(ins, FramePlay | ShiftPhase | SetPhase | ShiftFrequency | SetFrequency):
                used = (ins.frame,)
            elif isinstance(ins, FrameDelay | FrameBarrier):
                used = ins.frames
            elif isinstance(ins, Acquire) and ins.qubit not in qubits:
                fail_field("Program", f"instructions[{i}].qubit", ins.qubit, f"one of {qubits}")
            for f in used:
                if f not in declared:
                    fail_field("Program", f"instructions[{i}].frame", f, f"a declared frame {sorted(declared)}")
        if not isinstance(self.name, str):
            fail_field("Program", "name", self.name, "a string")
        set_field(self, "instructions", instructions)
        set_field(self, "frames", frames)
        set_field(self, "shots", int(self.shots))
        set_field(self, "qubits", qubits)

    def frame(self, name: str) -> Frame:
        for f in self.frames:
            if f.name == name:
                return f
        raise KeyError(f"frame {name!r} is not declared: declared {[f.name for f in self.frames]}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": IR_FORMAT, "name": self.name, "shots": self.shots,
                "qubits": list(self.qubits), "frames": [f.to_dict() for f in self.frames],
                "instructions": [ins.to_dict() for ins in self.instructions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Program:
        if d.get("format") != IR_FORMAT:
            raise ValueError(f"Program format={d.get('format')!r}: allowed {IR_FORMAT!r}")
        return cls(instructions=tuple(instruction_from_dict(x) for x in d["instructions"]),
                   frames=tuple(Frame.from_dict(x) for x in d["frames"]),
                   shots=int(d["shots"]), qubits=tuple(int(q) for q in d["qubits"]),
                   name=str(d.get("name", "")))

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Program:
        return cls.from_dict(json.loads(text))

    def content_hash(self) -> str:
        """sha256 hex over the canonical JSON: stable across processes and versions of
        Python (floats are written with repr, which round-trips exactly)."""
        if not self._hash:
            set_field(self, "_hash", recompute_hash(self))
        return self._hash

    def with_shots(self, shots: int) -> Program:
        return Program(self.instructions, self.frames, shots, self.qubits, self.name)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def recompute_hash(program: Program) -> str:
    """The content hash of what ``program`` holds now (ignores the value cached on the
    object, which a forged or mutated object could carry).

    The canonical JSON writes every float with repr, which is most of a job's bookkeeping
    on a fast backend (a 200-sample waveform: ~0.1 ms). Hashes are therefore memoised by
    ``content_key``, read off the object each call: equal keys mean equal JSON, so a memo
    hit is the hash the JSON would give, and a program changed in any way has another key.
    A program ``content_key`` cannot read (forged types) is hashed from its JSON every time.
    """
    return hash_for_key(program, content_key(program))


def hash_for_key(program: Program, key: ContentKey | None) -> str:
    """``recompute_hash(program)`` given ``key = content_key(program)`` read just before,
    with no code run in between that could change the program (the guard reads the key
    once per check and passes it on)."""
    if key is not None:
        h = _HASHES.get(key)
        if h is not None:
            _HASHES.move_to_end(key)
            return h
    h = hashlib.sha256(program.to_json().encode()).hexdigest()
    if key is not None:
        _HASHES[key] = h
        if len(_HASHES) > _HASH_MEMO_SIZE:
            _HASHES.popitem(last=False)
    return h


ContentKey = tuple[Any, ...]

# Exactly these classes, whose to_dict writes every field they hold; a subclass could write
# one thing to JSON and render another, so it gets no key.
_KEYED_TYPES = frozenset({Frame, FramePlay, ShiftPhase, SetPhase, ShiftFrequency, SetFrequency, FrameDelay, FrameBarrier,
                          Acquire, Gaussian, Drag, Constant, Sampled})
_HASH_MEMO_SIZE = 4096
_HASHES: OrderedDict[ContentKey, str] = OrderedDict()


class _Unkeyable(Exception):
    pass


def _key_of(v: Any) -> Any:
    t = type(v)
    if t is float:
        return v.hex()  # exact, and tells -0.0 from 0.0 (their JSON differs)
    if t is str or t is int or t is bool or v is None:
        return (t, v)
    if t is tuple:
        return (t, *map(_key_of, v))
    if t is np.ndarray:
        if v.dtype.kind not in "biufc":
            raise _Unkeyable
        # A digest, not the bytes: a key must stay small next to a long waveform, and
        # SHA-256 is what the content hash, job keys and journals already rest on.
        return (t, v.dtype.str, v.shape, hashlib.sha256(np.ascontiguousarray(v).data).digest())
    if t in _KEYED_TYPES:
        # vars(), not the declared fields: an attribute set on the instance (say a to_dict
        # shadowing the class's) makes the key differ from any honest object's, or fails.
        out: list[Any] = [t]
        for k, x in vars(v).items():
            tx = type(x)
            # The two leaf cases of _key_of inline (most fields): the same keys, fewer calls.
            if tx is float:
                out.append((k, x.hex()))
            elif tx is str or tx is int or tx is bool or x is None:
                out.append((k, (tx, x)))
            else:
                out.append((k, _key_of(x)))
        return tuple(out)
    raise _Unkeyable


def content_key(program: Program) -> ContentKey | None:
    """An exact, hashable image of everything ``program`` holds now, or None if it holds
    anything but the IR's own classes and plain values (then nothing may be memoised on it).

    Read off the object field by field (never its cached hash, never its methods): two
    programs with equal keys have the same canonical JSON, the same render and the same
    safety verdict, since all of them are functions of exactly these fields. Floats are
    keyed by their exact bits and arrays by the SHA-256 of their bytes, so the key costs a
    fraction of the JSON (no float repr) and is exact up to a SHA-256 collision.
    """
    if type(program) is not Program:
        return None
    try:
        return tuple([(k, _key_of(x)) for k, x in vars(program).items() if k != "_hash"])
    except (_Unkeyable, RecursionError):
        return None
