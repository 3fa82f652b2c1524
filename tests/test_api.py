"""The public surface: the book's names, signatures, defaults and state attributes."""

from __future__ import annotations

import inspect

import fastopt
import numpy as np
import pytest
from conftest import BOOK, STATE_NAMES, random_like
from fastopt import reference
from fastopt._settings import COMMON_OPTIONS

# The book's signatures (common/optimizer.py), plus fastopt's keyword-only eps.
SIGNATURES = {
    "SGD": [("lr", 0.01)],
    "Momentum": [("lr", 0.01), ("momentum", 0.9)],
    "Nesterov": [("lr", 0.01), ("momentum", 0.9)],
    "AdaGrad": [("lr", 0.01), ("eps", 1e-7)],
    "RMSprop": [("lr", 0.01), ("decay_rate", 0.99), ("eps", 1e-7)],
    "Adam": [("lr", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-7)],
}


@pytest.mark.parametrize("module", [fastopt, reference], ids=["fastopt", "reference"])
@pytest.mark.parametrize("name", BOOK)
def test_signature_matches_the_book(module, name):
    parameters = list(inspect.signature(getattr(module, name)).parameters.values())
    if module is fastopt:  # the options every fastopt optimizer adds, keyword-only, at the end
        names = tuple(COMMON_OPTIONS)
        common = [(p.name, p.kind) for p in parameters[-len(names) :]]
        assert common == [(n, inspect.Parameter.KEYWORD_ONLY) for n in names]
        parameters = parameters[: -len(names)]
    assert [(p.name, p.default) for p in parameters] == SIGNATURES[name]
    for p in parameters:
        expected = p.KEYWORD_ONLY if p.name == "eps" else p.POSITIONAL_OR_KEYWORD
        assert p.kind == expected


def test_positional_arguments_in_the_books_order():
    opt = fastopt.Adam(0.01, 0.8, 0.99)
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (0.01, 0.8, 0.99, 1e-7)
    assert fastopt.RMSprop(0.1, 0.5).decay_rate == 0.5
    assert fastopt.Nesterov(0.1, 0.5).momentum == 0.5


@pytest.mark.parametrize("name", BOOK)
def test_state_attributes_have_the_books_names(name):
    opt = getattr(fastopt, name)()
    for state in STATE_NAMES[name]:
        assert getattr(opt, state) == {}
    if name == "Adam":
        assert opt.iter == 0
    assert repr(opt).startswith(f"{name}(lr=")


def test_adam_iter_counts_update_calls_not_keys(rng):
    opt = fastopt.Adam()
    params = {k: rng.standard_normal(3) for k in "abcd"}
    for _ in range(3):
        opt.update(params, {k: random_like(v, rng) for k, v in params.items()})
    assert opt.iter == 3


def test_one_call_into_core_per_update(rng, core_calls):
    calls = core_calls
    params = {k: rng.standard_normal(4) for k in range(22)}
    fastopt.Adam().update(params, {k: random_like(v, rng) for k, v in params.items()})
    assert len(calls) == 1


def test_reassigned_state_dict_is_used(rng):
    """Resetting state the book's way (a new dict) restarts the state."""
    opt = fastopt.Momentum()
    params = {"a": rng.standard_normal(4)}
    opt.update(params, {"a": rng.standard_normal(4)})
    opt.v = {}
    opt.update(params, {"a": np.ones(4)})
    assert np.array_equal(opt.v["a"], -0.01 * np.ones(4))


def test_public_names():
    assert set(fastopt.__all__) >= set(BOOK) | {"simd_level", "available_simd_levels"}
    assert fastopt.simd_level() in fastopt.available_simd_levels()
