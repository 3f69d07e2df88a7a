"""Source generator for ``_lanes.py``: the coupled engine's small-block kernels over SIMD lanes.

numba vectorises a lane loop whose body is straight-line code, not a triple loop over a
tiny matrix (``envs/physics/_fast_codegen.py`` found the same for the single transmon).
So each block size n gets its complex n×n product written out, and a chain kernel, the
same algorithm as ``fast._chain_kernel`` (mean-diagonal shift, 1-norm scaling to 0.8,
degree-16 Paterson–Stockmeyer Taylor, squarings), with every matrix entry a vector over
``LANES`` pulses. Regenerate with ``python -m pulsecal.envs.physics.coupled._codegen``; a test
checks that the committed file matches.
"""

from __future__ import annotations

from pathlib import Path

SIZES = (2, 3)


def _product(n: int) -> list[str]:
    lines = [
        "",
        "",
        "@jit(inline=\"always\")",
        f"def mm{n}(ar, ai, br, bi, outr, outi):  # type: ignore[no-untyped-def]",
        f"    \"\"\"out = a @ b, {n}×{n} complex (split re/im), entry (i, j) of lane l at (i·{n} + j)·LANES + l.\"\"\"",
        "    for lane in range(LANES):",
    ]
    for e in range(n * n):
        lines.append(f"        ar{e} = ar[{e} * LANES + lane]")
        lines.append(f"        ai{e} = ai[{e} * LANES + lane]")
        lines.append(f"        br{e} = br[{e} * LANES + lane]")
        lines.append(f"        bi{e} = bi[{e} * LANES + lane]")
    for i in range(n):
        for j in range(n):
            re = " + ".join(f"ar{i * n + k} * br{k * n + j} - ai{i * n + k} * bi{k * n + j}" for k in range(n))
            im = " + ".join(f"ar{i * n + k} * bi{k * n + j} + ai{i * n + k} * br{k * n + j}" for k in range(n))
            lines.append(f"        outr[{i * n + j} * LANES + lane] = {re}")
            lines.append(f"        outi[{i * n + j} * LANES + lane] = {im}")
    return lines


_CHAIN = '''

@jit
def chain{n}(a_re, a_im, coef, taylor, out):  # type: ignore[no-untyped-def]
    """``fast._chain_kernel`` for {n}×{n} blocks over SIMD lanes.

    a_re, a_im: (R, J, {nn}) flattened A_j (R = 1 shared, R = B per row); coef: (B, T, J);
    taylor: (17,) 1/k!; out: (B, {n}, {n}) complex, written.
    """
    n_rows = a_re.shape[0]
    n_terms = a_re.shape[1]
    nb_total = coef.shape[0]
    n_t = coef.shape[1]
    size = {nn} * LANES
    xr = np.empty(size)
    xi = np.empty(size)
    x2r = np.empty(size)
    x2i = np.empty(size)
    x3r = np.empty(size)
    x3i = np.empty(size)
    x4r = np.empty(size)
    x4i = np.empty(size)
    pr = np.empty(size)
    pi = np.empty(size)
    tr = np.empty(size)
    ti = np.empty(size)
    accr = np.empty(size)
    acci = np.empty(size)
    cl = np.zeros((n_terms, LANES))
    mur = np.zeros(LANES)
    mui = np.zeros(LANES)
    for start in range(0, nb_total, LANES):
        nb = min(LANES, nb_total - start)
        for q in range(size):
            accr[q] = 0.0
            acci[q] = 0.0
        for lane in range(LANES):
{init_identity}
        for t in range(n_t):
            for jj in range(n_terms):
                for lane in range(LANES):
                    cl[jj, lane] = coef[start + lane, t, jj] if lane < nb else 0.0
            for q in range(size):
                xr[q] = 0.0
                xi[q] = 0.0
            for jj in range(n_terms):
                for e in range({nn}):
                    if n_rows == 1:
                        vr = a_re[0, jj, e]
                        vi = a_im[0, jj, e]
                        if vr == 0.0 and vi == 0.0:
                            continue
                        for lane in range(LANES):
                            xr[e * LANES + lane] += vr * cl[jj, lane]
                            xi[e * LANES + lane] += vi * cl[jj, lane]
                    else:
                        for lane in range(LANES):
                            r = start + lane if lane < nb else start
                            xr[e * LANES + lane] += a_re[r, jj, e] * cl[jj, lane]
                            xi[e * LANES + lane] += a_im[r, jj, e] * cl[jj, lane]
            theta = 0.0
            for lane in range(LANES):
{shift_and_norm}
            s = 0
            while theta > THETA_MAX:
                theta *= 0.5
                s += 1
            scale = 0.5**s
            for q in range(size):
                xr[q] *= scale
                xi[q] *= scale
            mm{n}(xr, xi, xr, xi, x2r, x2i)
            mm{n}(x2r, x2i, xr, xi, x3r, x3i)
            mm{n}(x2r, x2i, x2r, x2i, x4r, x4i)
            c0, c1, c2, c3 = taylor[12], taylor[13], taylor[14], taylor[15]
            for q in range(size):
                pr[q] = taylor[16] * x4r[q] + c1 * xr[q] + c2 * x2r[q] + c3 * x3r[q]
                pi[q] = taylor[16] * x4i[q] + c1 * xi[q] + c2 * x2i[q] + c3 * x3i[q]
            for lane in range(LANES):
{add_c0_p}
            for base in (8, 4, 0):
                mm{n}(x4r, x4i, pr, pi, tr, ti)
                c0, c1, c2, c3 = taylor[base], taylor[base + 1], taylor[base + 2], taylor[base + 3]
                for q in range(size):
                    pr[q] = tr[q] + c1 * xr[q] + c2 * x2r[q] + c3 * x3r[q]
                    pi[q] = ti[q] + c1 * xi[q] + c2 * x2i[q] + c3 * x3i[q]
                for lane in range(LANES):
{add_c0_p_inner}
            for _ in range(s):
                mm{n}(pr, pi, pr, pi, tr, ti)
                for q in range(size):
                    pr[q] = tr[q]
                    pi[q] = ti[q]
            for lane in range(LANES):
                m = math.exp(mur[lane])
                mui_l = mui[lane]
                mur[lane] = m * math.cos(mui_l)
                mui[lane] = m * math.sin(mui_l)
            for e in range({nn}):
                for lane in range(LANES):
                    q = e * LANES + lane
                    vr = pr[q]
                    vi = pi[q]
                    pr[q] = vr * mur[lane] - vi * mui[lane]
                    pi[q] = vr * mui[lane] + vi * mur[lane]
            mm{n}(pr, pi, accr, acci, tr, ti)
            for q in range(size):
                accr[q] = tr[q]
                acci[q] = ti[q]
        for lane in range(nb):
            for i in range({n}):
                for j in range({n}):
                    q = (i * {n} + j) * LANES + lane
                    out[start + lane, i, j] = accr[q] + 1j * acci[q]
'''


def _chain(n: int) -> list[str]:
    ind = " " * 16
    diag = [i * n + i for i in range(n)]
    init_identity = "\n".join(f"            accr[{d} * LANES + lane] = 1.0" for d in diag)
    sh = [f"{ind}mr = ({' + '.join(f'xr[{d} * LANES + lane]' for d in diag)}) / {n}",
          f"{ind}mi = ({' + '.join(f'xi[{d} * LANES + lane]' for d in diag)}) / {n}",
          f"{ind}mur[lane] = mr",
          f"{ind}mui[lane] = mi"]
    sh += [f"{ind}xr[{d} * LANES + lane] -= mr\n{ind}xi[{d} * LANES + lane] -= mi" for d in diag]
    for j in range(n):
        terms = " + ".join(f"math.sqrt(xr[{i * n + j} * LANES + lane] ** 2 + xi[{i * n + j} * LANES + lane] ** 2)"
                           for i in range(n))
        sh.append(f"{ind}theta = max(theta, {terms})")
    add_c0 = "\n".join(f"{ind}pr[{d} * LANES + lane] += c0" for d in diag)
    add_c0_inner = "\n".join(f"{ind}    pr[{d} * LANES + lane] += c0" for d in diag)
    src = _CHAIN.format(n=n, nn=n * n, init_identity=init_identity, shift_and_norm="\n".join(sh), add_c0_p=add_c0,
                        add_c0_p_inner=add_c0_inner)
    return src.split("\n")


def source() -> str:
    head = [
        '"""Small-block kernels of the coupled engine over SIMD lanes. Generated by _codegen.py: do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "import math",
        "",
        "import numpy as np",
        "",
        "from ..jit import LANES, jit",
        "",
        "# Taylor degree 16: Σ_{k>16} θ^k/k! < 1.2e-16 for θ <= 0.8 (1-norm of the scaled matrix).",
        "THETA_MAX = 0.8",
    ]
    body: list[str] = []
    for n in SIZES:
        body += _product(n)
        body += _chain(n)
    body.append(f"CHAINS = {{{', '.join(f'{n}: chain{n}' for n in SIZES)}}}")
    return "\n".join(head + body).rstrip() + "\n"


TARGET = Path(__file__).with_name("_lanes.py")

if __name__ == "__main__":
    TARGET.write_text(source())
