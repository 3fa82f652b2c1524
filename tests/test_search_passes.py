"""_core.Search, the compiled passes of the line-search methods, on their own: every pass against
NumPy at every size, its guards, and its sums' NaN. The methods are in test_search.py."""

from __future__ import annotations

import fastopt
import numpy as np
import pytest

# ---- the passes themselves, at every size (tails, lanes, pieces and keys) ----


def two_loop_reference(g, s, y, rho, h_diag):
    """Nocedal & Wright's Algorithm 7.4 in NumPy: -H g."""
    q, alpha = -g, [0.0] * len(s)
    for i in reversed(range(len(s))):
        alpha[i] = (s[i] @ q) * rho[i]
        q = q - alpha[i] * y[i]
    r = q * h_diag
    for i in range(len(s)):
        r = r + (alpha[i] - (y[i] @ r) * rho[i]) * s[i]
    return r


@pytest.mark.parametrize("sizes", [[n] for n in range(0, 20)] + [[3, 0, 5], [8191, 2], [16385]])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_passes_at_every_size(sizes, dtype):
    """Each pass of _core.Search against NumPy, over keys of these sizes: the written vector,
    and its sums (dot products, square, 1-norm, max). Under the sanitizers (tools/sanitize.sh)
    this also proves no pass reads or writes past a key or a vector."""
    rng = np.random.default_rng(len(sizes) * 100 + sum(sizes))
    total = sum(sizes)
    search = fastopt._core.Search(dtype, sizes)
    tol = 1e-12 if dtype == "float64" else 1e-5

    def vector(slot):
        return np.concatenate([np.ravel(a) for a in search.read(slot)]) if total else np.zeros(0)

    def keys(values):
        return [np.ascontiguousarray(v) for v in np.split(values, np.cumsum(sizes)[:-1])]

    def close(a, b):
        return np.allclose(a, b, rtol=tol, atol=tol * (1 + np.max(np.abs(b), initial=0)))

    vectors = [rng.standard_normal(total).astype(dtype) for _ in range(7)]
    for slot, value in enumerate(vectors):
        sums = search.gather(slot, keys(value), [0] if slot else [])
        want = value.astype(np.float64)
        assert close(sums[2], want @ want) and close(sums[3], np.abs(want).sum())
        assert sums[4] == np.max(np.abs(want), initial=0)
        if slot:
            assert close(sums[0], want @ vectors[0].astype(np.float64))
    g, pg, d = (vectors[k].astype(np.float64) for k in range(3))
    ys, _, yy, _, _ = search.pair(7, 8, 0, 1, 2, 0.5)
    y, s = vector(7), vector(8)
    assert close(y, g - pg) and close(s, 0.5 * d) and close(ys, y @ s) and close(yy, y @ y)
    pairs = [(3, 4), (5, 6), (8, 7)]
    rho = [1 / max(abs(vector(a) @ vector(b)), 1e-3) for a, b in pairs]
    sums = search.two_loop(9, 0, [a for a, _ in pairs], [b for _, b in pairs], rho, 0.7)
    want = two_loop_reference(g, [vector(a) for a, _ in pairs], [vector(b) for _, b in pairs],
                              rho, 0.7)  # fmt: skip
    assert close(vector(9), want) and close(sums[0], g @ want)
    assert close(sums[4], np.max(np.abs(want), initial=0))
    sums = search.direction(10, 0, 0.3, 2, [0])
    assert close(vector(10), -g + 0.3 * d) and close(sums[0], g @ (-g + 0.3 * d))
    params = keys(np.zeros(total, dtype))
    search.place(params, 1, 2.0, 2)
    assert close(np.concatenate(params) if total else np.zeros(0), pg + 2.0 * d)
    search.place(params, -1, -1.0, 2)
    assert close(np.concatenate(params) if total else np.zeros(0), pg + d)


def test_search_refuses_bad_slots_without_crashing():
    """A negative slot where a vector is read (a crash through a null pointer before), a pass
    reading what it writes, place with nothing to place: ValueError, nothing written."""
    search = fastopt._core.Search("float64", [3, 2])
    arrays = [np.arange(3.0), np.arange(2.0)]
    search.gather(0, arrays, [])
    search.gather(1, arrays, [])
    calls = [
        lambda: search.direction(2, -1, 0.0, -1, []),
        lambda: search.gather(2, arrays, [-3]),
        lambda: search.direction(2, 0, 0.5, 1, [-1]),
        lambda: search.pair(2, 3, -1, 1, 1, 1.0),
        lambda: search.pair(2, 3, 0, 1, -1, 1.0),
        lambda: search.two_loop(2, 0, [-1], [1], [1.0], 1.0),
        lambda: search.two_loop(2, -1, [0], [1], [1.0], 1.0),
        lambda: search.two_loop(1, 0, [1], [0], [1.0], 1.0),
        lambda: search.place([a.copy() for a in arrays], -1, 1.0, -1),
        lambda: search.direction(0, 0, 0.0, -1, []),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert np.array_equal(np.concatenate(search.read(1)), np.concatenate(arrays))


def test_nan_sums_are_one_nan():
    """A NaN's sign depends on the instructions that made it; sums show the one quiet NaN, so
    that they have the same bits on every SIMD level."""
    search = fastopt._core.Search("float64", [20])
    search.gather(0, [np.ones(20)], [])
    values = np.arange(20.0)
    values[[3, 11]] = [np.inf, -np.inf]  # one lane: inf * 1 + -inf * 1 is NaN in the dot
    sums = search.gather(1, [values], [0])
    assert np.isnan(sums[0]) and sums[2] == sums[3] == sums[4] == np.inf
    values[5] = -np.nan
    nan_sums = search.gather(2, [values], [0])
    assert np.isnan(nan_sums[4])  # max |.|: NaN only with a NaN present
    for value in (*sums, *nan_sums):
        if np.isnan(value):
            assert np.float64(value).view(np.uint64) == np.float64(np.nan).view(np.uint64)
