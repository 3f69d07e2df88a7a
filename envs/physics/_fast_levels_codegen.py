"""Source generator for ``_fast_levels.py``: the fast engine's kernels for 2, 4, 5 and 6 levels.

The 3-level kernels (``_fast_n3.py``) are fast because every hot loop is a loop over SIMD
lanes around straight-line code, which LLVM turns into one vector instruction per scalar
operation; loops over matrix indices inside the lane loop it leaves scalar. This module
writes the same kind of code for the other level counts:

- ``closed_kernel_<N>``: the 3-level closed kernel's algorithm (phase trick, cos/sin of a
  real symmetric tridiagonal matrix by Paterson–Stockmeyer, scaling and squaring) with the
  general kernel's Gershgorin shift and unitary squaring (``fast._closed_kernel``), every
  matrix a tuple of its N(N+1)/2 upper-triangle entries, the tridiagonal X multiplied as
  tridiagonal.
- ``mm<M>`` / ``mm<M>_horner``: dense M×M products (M = N²) over all lanes for the open
  kernel (``_fast_levels_open.py``). An unrolled 9×9 product is 700 lines; a 36×36 one
  would be 50,000, so these keep the loops over output tiles and unroll only the sum over
  k for one tile (TR rows × TC columns): TR + TC loads per TR·TC multiply-adds, the
  accumulators in registers.

Regenerate with ``python -m pulsecal.envs.physics._fast_levels_codegen``; a test checks that
the committed file matches.
"""

from __future__ import annotations

from pathlib import Path

LEVELS = (2, 4, 5, 6)
# Output tile (rows, columns) of the dense products per matrix size M = N²: TR·TC
# accumulators of LANES doubles (two AVX-512 registers each) stay live; both divide M. The
# shapes are the fastest measured here (CPU time, one core).
_TILES = {4: (4, 4), 16: (4, 2), 25: (5, 1), 36: (2, 2)}


def _sym_index(n: int) -> dict[tuple[int, int], int]:
    """Position of entry (i, j), i <= j, in the upper-triangle tuple of an n×n matrix."""
    out: dict[tuple[int, int], int] = {}
    for i in range(n):
        for j in range(i, n):
            out[(i, j)] = len(out)
    return out


def _entry(name: str, idx: dict[tuple[int, int], int], i: int, k: int) -> str:
    return f"{name}[{idx[(min(i, k), max(i, k))]}]"


def _smul_source(n: int) -> str:
    """``_smul<n>(a, b)``: product of two commuting symmetric matrices (upper triangles)."""
    idx = _sym_index(n)
    terms = []
    for (i, j) in idx:
        s = " + ".join(f"{_entry('a', idx, i, k)} * {_entry('b', idx, k, j)}" for k in range(n))
        terms.append(f"        {s},")
    return "\n".join([
        "", "", '@jit(inline="always")', f"def _smul{n}(a, b):  # type: ignore[no-untyped-def]",
        f'    """a·b of commuting symmetric {n}×{n} matrices (a polynomial in one X: symmetric)."""',
        "    return (", *terms, "    )",
    ]) + "\n"


def _xmul_source(n: int) -> str:
    """``_xmul<n>(xd, xe, b)``: tridiagonal X (diagonal xd, off-diagonal xe) times a
    symmetric b that commutes with it, as an upper triangle."""
    idx = _sym_index(n)
    terms = []
    for (i, j) in idx:
        parts = [f"xd[{i}] * {_entry('b', idx, i, j)}"]
        if i > 0:
            parts.insert(0, f"xe[{i - 1}] * {_entry('b', idx, i - 1, j)}")
        if i < n - 1:
            parts.append(f"xe[{i}] * {_entry('b', idx, i + 1, j)}")
        terms.append(f"        {' + '.join(parts)},")
    return "\n".join([
        "", "", '@jit(inline="always")', f"def _xmul{n}(xd, xe, b):  # type: ignore[no-untyped-def]",
        f'    """X·b for tridiagonal symmetric X ({n}×{n}; diagonal xd, off-diagonal xe) and a',
        '    symmetric b commuting with X."""',
        "    return (", *terms, "    )",
    ]) + "\n"


def _poly_source(n: int) -> str:
    """``_poly<n>(c0, c1, c2, p1, p2, add)``: c0·I + c1·p1 + c2·p2 + add."""
    idx = _sym_index(n)
    terms = []
    for (i, j), e in idx.items():
        lead = "c0 + " if i == j else ""
        terms.append(f"        {lead}c1 * p1[{e}] + c2 * p2[{e}] + add[{e}],")
    return "\n".join([
        "", "", '@jit(inline="always")',
        f"def _poly{n}(c0, c1, c2, p1, p2, add):  # type: ignore[no-untyped-def]",
        '    """c0·I + c1·p1 + c2·p2 + add (upper triangles)."""',
        "    return (", *terms, "    )",
    ]) + "\n"


def _closed_source(n: int) -> str:
    """``closed_kernel_<n>``: same arguments and result as ``fast._closed_kernel``."""
    idx = _sym_index(n)
    t = len(idx)
    nn = n * n
    L: list[str] = []
    a = L.append
    a("")
    a("")
    a("@jit")
    a(f"def closed_kernel_{n}(diag: FloatArray, coup: FloatArray, mu: FloatArray, wr: FloatArray,")
    a("                     wi: FloatArray, out: ComplexArray) -> None:")
    a(f'    """{n}-level unitaries; same arguments as ``fast._closed_kernel``. Generated: do not edit."""')
    a("    nb_total, n_s = wr.shape")
    a(f"    par = np.zeros({2 * n - 1} * LANES)  # drift d_0..d_{n - 1}, then couplings, per lane")
    a("    amp = np.zeros(LANES)")
    a("    sig = np.zeros(LANES)  # diagonal shift of the current sample, rad")
    a("    gph = np.zeros(LANES)  # Σ of the shifts: a global phase e^{−i·gph}")
    a("    ph_r = np.ones(LANES)")
    a("    ph_i = np.zeros(LANES)")
    a(f"    cs = np.zeros({2 * t} * LANES)  # cos X then sin X, upper triangles")
    a(f"    acc = np.zeros({2 * nn} * LANES)  # Re then Im of the accumulated unitary, row-major")
    a("    for start in range(0, nb_total, LANES):")
    a("        nl = min(LANES, nb_total - start)")
    a("        for lane in range(nl):")
    a("            gph[lane] = 0.0")
    for j in range(n):
        a(f"            par[{j} * LANES + lane] = diag[start + lane, {j}]")
    for j in range(n - 1):
        a(f"            par[{n + j} * LANES + lane] = coup[start + lane, {j}]")
    a(f"        for e in range({2 * nn}):")
    a("            for lane in range(nl):")
    a(f"                acc[e * LANES + lane] = 1.0 if (e < {nn} and e % {n + 1} == 0) else 0.0")
    a("        for k in range(n_s):")
    a("            theta = 0.0")
    a("            for lane in range(nl):")
    a("                ur = wr[start + lane, k]")
    a("                ui = wi[start + lane, k]")
    a("                m = math.hypot(ur, ui)")
    a("                amp[lane] = m")
    a("                ph_r[lane] = ur / m if m > 0.0 else 1.0")
    a("                ph_i[lane] = ui / m if m > 0.0 else 0.0")
    # Gershgorin interval of T = diag + |u|·coupling; shifting by its midpoint makes the
    # 2-norm bound of the shifted matrix the half-width (see fast._closed_kernel).
    for j in range(n - 1):
        a(f"                e{j} = abs(par[{n + j} * LANES + lane] * m)")
    los, his = [], []
    for j in range(n):
        rad = " + ".join([f"e{j - 1}"] * (j > 0) + [f"e{j}"] * (j < n - 1))
        d = f"par[{j} * LANES + lane]"
        los.append(f"{d} - ({rad})")
        his.append(f"{d} + ({rad})")
    a(f"                lo = min({', '.join(los)})")
    a(f"                hi = max({', '.join(his)})")
    a("                sig[lane] = 0.5 * (lo + hi)")
    a("                gph[lane] += sig[lane]")
    a("                theta = max(theta, 0.5 * (hi - lo))")
    a("            n_sq = 0")
    a("            while theta > THETA_MAX:")
    a("                theta *= 0.5")
    a("                n_sq += 1")
    a("            sc = 0.5**n_sq")
    a("            for lane in range(nl):")
    a("                m = amp[lane] * sc")
    a("                sg = sig[lane]")
    xd = ", ".join(f"(par[{j} * LANES + lane] - sg) * sc" for j in range(n))
    xe = ", ".join(f"par[{n + j} * LANES + lane] * m" for j in range(n - 1))
    a(f"                xd = ({xd},)")
    a(f"                xe = ({xe},)")
    # X² from the tridiagonal X directly (pentadiagonal), as an upper triangle.
    x2 = []
    for (i, j) in idx:
        if j == i:
            parts = [f"xd[{i}] * xd[{i}]"]
            if i > 0:
                parts.insert(0, f"xe[{i - 1}] * xe[{i - 1}]")
            if i < n - 1:
                parts.append(f"xe[{i}] * xe[{i}]")
            x2.append(" + ".join(parts))
        elif j == i + 1:
            x2.append(f"xd[{i}] * xe[{i}] + xe[{i}] * xd[{j}]")
        elif j == i + 2:
            x2.append(f"xe[{i}] * xe[{i + 1}]")
        else:
            x2.append("0.0")
    a("                b1 = (")
    for s in x2:
        a(f"                    {s},")
    a("                )")
    a(f"                b2 = _smul{n}(b1, b1)")
    a(f"                b3 = _smul{n}(b2, b1)")
    a("                # Paterson–Stockmeyer in B = X²: cos X = Σ_{k<=8} C_k B^k, sin X = X·Σ_{k<=7} S_k B^k.")
    a(f"                q = _poly{n}(C6, C7, C8, b1, b2, _ZERO{n})")
    a(f"                q = _poly{n}(C3, C4, C5, b1, b2, _smul{n}(b3, q))")
    a(f"                c = _poly{n}(C0, C1, C2, b1, b2, _smul{n}(b3, q))")
    a(f"                q = _poly{n}(S6, S7, 0.0, b1, b2, _ZERO{n})")
    a(f"                q = _poly{n}(S3, S4, S5, b1, b2, _smul{n}(b3, q))")
    a(f"                q = _poly{n}(S0, S1, S2, b1, b2, _smul{n}(b3, q))")
    a(f"                s = _xmul{n}(xd, xe, q)")
    for e in range(t):
        a(f"                cs[{e} * LANES + lane] = c[{e}]")
        a(f"                cs[{t + e} * LANES + lane] = s[{e}]")
    a("            for _ in range(n_sq):")
    a("                # (C − iS)²: cos 2X = C² − S², sin 2X = 2·S·C, the form that keeps an")
    a("                # error in unitarity growing 2× per squaring (fast._closed_kernel).")
    a("                for lane in range(nl):")
    a(f"                    c = ({', '.join(f'cs[{e} * LANES + lane]' for e in range(t))},)")
    a(f"                    s = ({', '.join(f'cs[{t + e} * LANES + lane]' for e in range(t))},)")
    a(f"                    c2 = _smul{n}(c, c)")
    a(f"                    s2 = _smul{n}(s, s)")
    a(f"                    sc2 = _smul{n}(s, c)")
    for e in range(t):
        a(f"                    cs[{e} * LANES + lane] = c2[{e}] - s2[{e}]")
        a(f"                    cs[{t + e} * LANES + lane] = 2.0 * sc2[{e}]")
    a("            for lane in range(nl):")
    a("                # acc ← P·(C − iS)·P†·acc with P = diag(p^j), p = u/|u|.")
    a("                p1 = complex(ph_r[lane], ph_i[lane])")
    for j in range(2, n):
        a(f"                p{j} = p{j - 1} * p1")
    for (i, j), e in idx.items():
        a(f"                e{i}{j} = complex(cs[{e} * LANES + lane], -cs[{t + e} * LANES + lane])")
    a(f"                for j in range({n}):")
    for i in range(n):
        y = f"complex(acc[({i * n} + j) * LANES + lane], acc[({nn + i * n} + j) * LANES + lane])"
        a(f"                    y{i} = {y}" if i == 0 else f"                    y{i} = p{i}.conjugate() * {y}")
    for i in range(n):
        s = " + ".join(f"e{min(i, k)}{max(i, k)} * y{k}" for k in range(n))
        a(f"                    z{i} = {s}" if i == 0 else f"                    z{i} = p{i} * ({s})")
    for i in range(n):
        a(f"                    acc[({i * n} + j) * LANES + lane] = z{i}.real")
        a(f"                    acc[({nn + i * n} + j) * LANES + lane] = z{i}.imag")
    a("        for lane in range(nl):")
    a("            g = -mu[start + lane] * n_s - gph[lane]")
    a("            gp = complex(math.cos(g), math.sin(g))")
    a(f"            for i in range({n}):")
    a(f"                for j in range({n}):")
    a(f"                    e = i * {n} + j")
    a("                    out[start + lane, i, j] = gp * complex(acc[e * LANES + lane],")
    a(f"                                                           acc[({nn} + e) * LANES + lane])")
    return "\n".join(L) + "\n"


def _tile_body(m: int, tr: int, tc: int, horner: bool) -> list[str]:
    lines = [f"    for i0 in range(0, {m}, {tr}):",
             f"        for j0 in range(0, {m}, {tc}):",
             f"            ra = i0 * {m} * LANES",
             "            cb = j0 * LANES",
             "            for lane in range(LANES):"]
    ind = "                "
    for k in range(m):
        for r in range(tr):
            lines.append(f"{ind}a{r} = a[ra + {(r * m + k)} * LANES + lane]")
        for c in range(tc):
            lines.append(f"{ind}b{c} = b[cb + {k * m + c} * LANES + lane]")
        for r in range(tr):
            for c in range(tc):
                op = "=" if k == 0 else "+="
                lines.append(f"{ind}s{r}_{c} {op} a{r} * b{c}")
    for r in range(tr):
        for c in range(tc):
            e = f"ra + cb + {r * m + c} * LANES + lane"
            val = f"add[{e}] + cf * s{r}_{c}" if horner else f"s{r}_{c}"
            lines.append(f"{ind}out[{e}] = {val}")
    if horner:
        lines += [f"    for d in range({m}):",
                  "        for lane in range(LANES):",
                  f"            out[d * {m + 1} * LANES + lane] += c0"]
    return lines


def _mm_source(m: int) -> str:
    tr, tc = _TILES[m]
    head = ["", "", "@jit", f"def mm{m}(a: FloatArray, b: FloatArray, out: FloatArray) -> None:",
            f'    """out = a @ b on {m}×{m} matrices; entry (i, j) of lane l at (i·{m} + j)·LANES + l.',
            "", f"    Tiles of {tr}×{tc} outputs. out must not alias a or b. Generated: do not edit.",
            '    """']
    body = _tile_body(m, tr, tc, False)
    head2 = ["", "", "@jit",
             f"def mm{m}_horner(a: FloatArray, b: FloatArray, out: FloatArray, cf: float,",
             f"             {' ' * len(str(m))}add: FloatArray, c0: float) -> None:",
             f'    """out = add + cf·(a @ b) + c0·I, layout of ``mm{m}``. Generated: do not edit."""']
    body2 = _tile_body(m, tr, tc, True)
    return "\n".join(head + body + head2 + body2) + "\n"


def sparsity(n: int) -> tuple[tuple[int, int], ...]:
    """Structural non-zeros (row, col) of an n-level generator L0 + u·L1 in the real
    Hermitian basis: those of a transmon with every term present (detuning, drive, T1,
    dephasing). The drift rotates each level pair and damps it, T1 feeds each pair one
    level down, the drive couples neighbouring levels, and the diagonal is full (the
    kernel takes the mean decay rate out of it); fast.py checks every model against
    this pattern before the products may skip the rest."""
    import numpy as np

    from .model import Transmon, lindbladians
    from .real_basis import hermitian_basis

    t = Transmon(levels=n, detuning_hz=3.7e6, t1_s=20e-6, t2_s=15e-6)
    w = hermitian_basis(n)[0]
    gens = lindbladians(t, np.array([0.0, 1.0])) * t.dt_s
    real = [w.conj().T @ g @ w for g in (gens[0], gens[1] - gens[0])]
    scale = max(float(np.abs(r).max()) for r in real)
    nz = (np.abs(real[0]) > 1e-12 * scale) | (np.abs(real[1]) > 1e-12 * scale)
    # The kernel's L0 has the mean of its diagonal taken out (a gain e^μ per sample).
    nz |= np.eye(n * n, dtype=bool)
    return tuple((int(i), int(k)) for i, k in zip(*np.nonzero(nz), strict=True))


def _sparse_left_body(m: int, pattern: tuple[tuple[int, int], ...]) -> list[str]:
    """out = X @ b reading X only at ``pattern``: rows in pairs (unrolled, each pair with
    its own non-zeros), column tiles of ``_TILES[m][1]`` in a loop."""
    tc = _TILES[m][1]
    nz = set(pattern)
    lines: list[str] = []
    for i0 in range(0, m, 2):
        rows = list(range(i0, min(m, i0 + 2)))
        ks = sorted({k for (i, k) in nz if i in rows})
        lines += [f"    for j0 in range(0, {m}, {tc}):", "        cb = j0 * LANES",
                  "        for lane in range(LANES):"]
        ind = "            "
        started: set[int] = set()
        for k in ks:
            for r, i in enumerate(rows):
                if (i, k) in nz:
                    lines.append(f"{ind}a{r} = a[{i * m + k} * LANES + lane]")
            for c in range(tc):
                lines.append(f"{ind}b{c} = b[cb + {k * m + c} * LANES + lane]")
            for r, i in enumerate(rows):
                if (i, k) in nz:
                    for c in range(tc):
                        op = "+=" if i in started else "="
                        lines.append(f"{ind}s{r}_{c} {op} a{r} * b{c}")
                    started.add(i)
        for r, i in enumerate(rows):
            for c in range(tc):
                val = f"s{r}_{c}" if i in started else "0.0"
                lines.append(f"{ind}out[cb + {i * m + c} * LANES + lane] = {val}")
    return lines


def _sparse_mm_source(n: int) -> str:
    m = n * n
    pattern = sparsity(n)
    head = ["", "", f"SPARSITY_{n} = {pattern!r}", "", "", "@jit",
            f"def mm{m}_xs(a: FloatArray, b: FloatArray, out: FloatArray) -> None:",
            f'    """out = a @ b like ``mm{m}``, reading a only at SPARSITY_{n}. Generated: do not edit."""']
    return "\n".join(head + _sparse_left_body(m, pattern)) + "\n"


def module_source() -> str:
    header = '''"""The fast engine's kernels for 2, 4, 5 and 6 levels: closed-system kernels and dense
products for the open kernel. Generated by _fast_levels_codegen.py: do not edit."""

from __future__ import annotations

import math

import numpy as np

from ._fast_n3 import C0, C1, C2, C3, C4, C5, C6, C7, C8, S0, S1, S2, S3, S4, S5, S6, S7, THETA_MAX
from .jit import LANES, jit
from .model import ComplexArray, FloatArray
'''
    parts = [header]
    for n in LEVELS:
        t = len(_sym_index(n))
        parts.append(f"\n_ZERO{n} = {tuple([0.0] * t)!r}\n")
        parts.append(_smul_source(n) + _xmul_source(n) + _poly_source(n) + _closed_source(n))
    for n in LEVELS:
        parts.append(_mm_source(n * n))
        parts.append(_sparse_mm_source(n))
    closed = ", ".join(f"{n}: closed_kernel_{n}" for n in LEVELS)
    parts.append(f"\n\n# Level count -> closed kernel.\nCLOSED_KERNELS = {{{closed}}}\n")
    return "".join(parts)


def main() -> None:
    path = Path(__file__).with_name("_fast_levels.py")
    path.write_text(module_source())
    # numba's on-disk cache of a function is keyed on its own file's time stamp, and the
    # open kernel's cached machine code contains the products it calls: touch its file so
    # it is compiled again against the new ones.
    Path(__file__).with_name("_fast_open_levels.py").touch()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
