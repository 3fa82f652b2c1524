"""fastopt.init: every initializer's variance matches its formula, statistically."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastopt import init

# name -> variance as a function of (fan_in, fan_out, fan by mode). A uniform on [-a, a] has
# variance a^2/3.
VARIANCE = {
    "xavier_uniform": lambda i, o, f: (math.sqrt(6 / (i + o))) ** 2 / 3,
    "xavier_normal": lambda i, o, f: 2 / (i + o),
    "he_uniform": lambda i, o, f: (math.sqrt(6 / f)) ** 2 / 3,
    "he_normal": lambda i, o, f: 2 / f,
    "lecun_uniform": lambda i, o, f: (math.sqrt(3 / f)) ** 2 / 3,
    "lecun_normal": lambda i, o, f: 1 / f,
}
SHAPES = [(400, 300), (64, 3, 5, 5), (2000,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", VARIANCE)
def test_variance_matches_the_formula(name, shape):
    mode_options = [{}] if name.startswith("xavier") else [{"mode": "fan_in"}, {"mode": "fan_out"}]
    for options in mode_options:
        w = getattr(init, name)(shape, rng=np.random.default_rng(1), **options)
        assert w.shape == shape and w.dtype == np.float64
        fan_in, fan_out = init.fans(shape)
        fan = fan_out if options.get("mode") == "fan_out" else fan_in
        expected = VARIANCE[name](fan_in, fan_out, fan)
        n = w.size
        # The sample variance of n draws has relative standard error sqrt(2/n) for a normal and
        # sqrt(0.8/n) for a uniform; 5 standard errors makes a false failure ~1e-6 likely.
        assert abs(w.var() / expected - 1) < 5 * math.sqrt(2 / n), (options, w.var(), expected)
        assert abs(w.mean()) < 5 * math.sqrt(expected / n)
        if name.endswith("uniform"):
            limit = math.sqrt(3 * expected)
            assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_fans_follow_the_books_layouts():
    assert init.fans((784, 50)) == (784, 50)  # x @ W: W is (in, out)
    assert init.fans((30, 1, 5, 5)) == (25, 750)  # filters (FN, C, FH, FW)
    assert init.fans((10,)) == (10, 10)


def test_dtype_and_reproducibility():
    a = init.he_normal((50, 20), dtype=np.float32, rng=np.random.default_rng(7))
    b = init.he_normal((50, 20), dtype=np.float32, rng=np.random.default_rng(7))
    assert a.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: init.he_normal((3, 4), mode="fan_avg"), ValueError),
        (lambda: init.xavier_uniform(()), ValueError),
        (lambda: init.lecun_normal((3, 0)), ValueError),
        (lambda: init.he_uniform((3, 4), dtype=np.int32), TypeError),
        (lambda: init.he_uniform((3, 4), rng=np.random.RandomState(0)), TypeError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
