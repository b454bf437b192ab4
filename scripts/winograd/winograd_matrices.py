#!/usr/bin/env python3
"""Derives the Winograd matrices of src/kernels/conv2d/winograd-matrices.ts and measures their float32 error.

Toom-Cook construction of F(m, r) (m outputs, r taps, alpha = m + r - 1) on the points p_0..p_{alpha-2} and
infinity: AT[i][j] = p_j^i (the last column selects infinity), G[j][k] = p_j^k / prod_{l != j} (p_j - p_l) (last row
selects infinity), and BT solved exactly (rational arithmetic) from the identity
    y_i = sum_k d_{i+k} g_k = sum_j AT[i][j] (G g)_j (BT d)_j   for all d, g.
Then the 2-D error in float32 against float64 (64 input channels summed, as in a convolution).

Usage: python3 scripts/winograd/winograd_matrices.py [--search]   (numpy; no torch needed)
"""
from fractions import Fraction as F
import itertools
import sys

import numpy as np


def solve(rows_in, rhs):
    """Exact Gauss-Jordan elimination of a consistent system; free variables are set to 0."""
    n = len(rows_in[0])
    rows = [list(r) + [b] for r, b in zip(rows_in, rhs)]
    pivots, r = [], 0
    for c in range(n):
        p = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        pv = rows[r][c]
        rows[r] = [v / pv for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(c)
        r += 1
    if any(row[-1] != 0 for row in rows[r:]):
        raise ValueError('inconsistent system: these points give no Winograd algorithm')
    x = [F(0)] * n
    for i, c in enumerate(pivots):
        x[c] = rows[i][-1]
    return x


def matrices(m, r, points):
    a = m + r - 1
    assert len(points) == a - 1
    AT = [[p ** i for p in points] + [F(1) if i == m - 1 else F(0)] for i in range(m)]
    G = []
    for j, p in enumerate(points):
        f = F(1)
        for l, q in enumerate(points):
            if l != j:
                f *= p - q
        G.append([p ** k / f for k in range(r)])
    G.append([F(1) if k == r - 1 else F(0) for k in range(r)])
    eqs, rhs = [], []
    for i in range(m):
        for k in range(r):
            for l in range(a):
                row = [F(0)] * (a * a)
                for j in range(a):
                    row[j * a + l] = AT[i][j] * G[j][k]
                eqs.append(row)
                rhs.append(F(1) if l == i + k else F(0))
    x = solve(eqs, rhs)
    BT = [[x[j * a + l] for l in range(a)] for j in range(a)]
    return AT, G, BT


def check_identity(AT, G, BT, m, r):
    a = m + r - 1
    at, g_, bt = (np.array(X, dtype=np.float64) for X in (AT, G, BT))
    rng = np.random.default_rng(0)
    for _ in range(10):
        d, g = rng.standard_normal(a), rng.standard_normal(r)
        y = at @ ((g_ @ g) * (bt @ d))
        ref = np.array([sum(d[i + k] * g[k] for k in range(r)) for i in range(m)])
        assert np.allclose(y, ref, atol=1e-12), (y, ref)


def error_2d(AT, G, BT, m, r, channels=64, trials=200):
    """max |y32 - y64| / max |y64| over `trials` tiles, each summing `channels` channels."""
    at, g_, bt = (np.array(X, dtype=np.float64).astype(np.float32) for X in (AT, G, BT))
    a = m + r - 1
    rng = np.random.default_rng(1)
    worst = scale = 0.0
    for _ in range(trials):
        d = rng.standard_normal((channels, a, a))
        g = rng.standard_normal((channels, r, r)) * 0.1
        U = np.einsum('ij,cjk,lk->cil', g_, g.astype(np.float32), g_)
        V = np.einsum('ij,cjk,lk->cil', bt, d.astype(np.float32), bt)
        Y = at @ (U * V).sum(0, dtype=np.float32) @ at.T
        ref = np.array([[(d[:, i:i + r, j:j + r] * g).sum() for j in range(m)] for i in range(m)])
        worst = max(worst, np.abs(Y - ref).max())
        scale = max(scale, np.abs(ref).max())
    return worst / scale


def fmt(X):
    return '[' + ', '.join('[' + ', '.join(str(v) for v in row) + ']' for row in X) + ']'


POINTS = [F(0), F(1), F(-1), F(2), F(-1, 2)]

if __name__ == '__main__':
    for m, r in [(4, 3), (3, 4), (2, 3), (3, 2)]:
        pts = POINTS[: m + r - 2]
        AT, G, BT = matrices(m, r, pts)
        check_identity(AT, G, BT, m, r)
        print(f'F({m},{r}) points {[str(p) for p in pts]}: float32 error {error_2d(AT, G, BT, m, r):.2e}')
        print('  AT', fmt(AT))
        print('  G ', fmt(G))
        print('  BT', fmt(BT))
    if '--search' in sys.argv:
        cands = [F(1), F(-1), F(2), F(-2), F(1, 2), F(-1, 2), F(3, 2), F(-3, 2), F(2, 3), F(-2, 3)]
        for m, r in [(4, 3), (3, 4)]:
            res = []
            for combo in itertools.combinations(cands, 4):
                pts = [F(0), *combo]
                try:
                    AT, G, BT = matrices(m, r, pts)
                except ValueError:
                    continue
                res.append((error_2d(AT, G, BT, m, r, trials=30), [str(p) for p in pts]))
            res.sort()
            print(f'F({m},{r}) lowest float32 error:')
            for e, p in res[:6]:
                print(f'  {e:.2e} {p}')
