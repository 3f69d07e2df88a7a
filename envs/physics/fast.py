"""Our fast engine. For now it delegates to the reference implementation; the
optimised kernels replace these two functions without changing their contract.
"""

from __future__ import annotations

from . import reference
from .model import ComplexArray, Transmon


def unitaries(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) validated waveforms -> (B, N, N) unitaries."""
    return reference.unitaries(t, w)


def superoperators(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) validated waveforms -> (B, N², N²) superoperators."""
    return reference.superoperators(t, w)
