"""Keys that share memory through their state arrays and through converted grads (issue 12, items
4-6): the book's sequential semantics for every thread count.

The oracle is the reference fed the same aliased arrays, with each key's grad read as the book reads
it: as it is when its key's turn comes (after the keys before it were updated), and as it was before
its own key's update (a grad that overlaps its own param or state is copied first, as the README
says).
"""

from __future__ import annotations

from typing import Any

import fastopt
import numpy as np
import pytest
from conftest import STATE_NAMES
from fastopt import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

THREADS = (1, 2, 3)
# Large enough that 2 and 3 threads run (>= 40 us of work even for SGD).
LARGE = 1 << 20


class AtItsTurn(dict):
    """grads as the book reads them: each key's grad copied when the reference reaches its key."""

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(super().__getitem__(key), copy=True)


# Key a fills whole chunks (of 2^16 * 6 elements on 2 threads, 2^16 * 4 on 3), so key b starts a
# chunk of its own, which another thread may run while a's last chunk is still being written.
CHUNKED = 24 * 65_536
SIZES = {"a": CHUNKED, "b": 65_536, "c": CHUNKED - 65_536}


def test_a_view_of_another_keys_state_as_grad():
    """Item 4: key b's grad is the tail of key a's state m (b after a: it reads a's new m)."""
    results = []
    for threads in THREADS:
        for module in (fastopt, reference):
            rng = np.random.default_rng(4)
            params = {k: rng.standard_normal(n) for k, n in SIZES.items()}
            opt = module.Adam()
            opt.update(params, {k: rng.standard_normal(v.size) for k, v in params.items()})
            with fastopt.num_threads(threads):
                for _ in range(3):
                    grads = {k: rng.standard_normal(v.size) for k, v in params.items()}
                    grads["b"] = opt.m["a"][-SIZES["b"] :]
                    opt.update(params, grads if module is fastopt else AtItsTurn(grads))
            results.append((params, opt.m, opt.v))
    expected = results[1]
    for actual in results[0::2]:
        for got, want in zip(actual, expected):
            for key in SIZES:
                assert np.array_equal(got[key], want[key]), key


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("where", ["the state itself", "8 elements behind the state"])
def test_a_keys_own_state_as_its_grad(where, threads):
    """Item 5: the grad overlaps the key's own state; it is read as it was before the update."""
    results = []
    for module in (fastopt, reference):
        rng = np.random.default_rng(5)
        buffer = np.abs(rng.standard_normal(LARGE + 8))
        params = {"w": rng.standard_normal(LARGE)}
        opt = module.AdaGrad()
        opt.h["w"] = buffer[8:]
        with fastopt.num_threads(threads):
            for _ in range(3):
                grad = opt.h["w"] if where == "the state itself" else buffer[:LARGE]
                opt.update(params, {"w": grad} if module is fastopt else AtItsTurn(w=grad))
        results.append((params["w"], buffer))
    (param, buffer), (param_ref, buffer_ref) = results
    assert np.array_equal(buffer, buffer_ref)
    assert np.array_equal(param, param_ref)


@pytest.mark.parametrize("threads", THREADS)
def test_a_converted_grad_reads_an_earlier_keys_param_after_its_update(threads):
    """Item 6: a strided view of key b's param, converted, is key a's grad; b is updated first."""
    with fastopt.num_threads(threads):
        B, A = np.arange(8.0), np.ones(4)
        fastopt.SGD(lr=1).update({"b": B, "a": A}, {"b": np.ones(8), "a": B[::2]})
    assert np.array_equal(B, np.arange(8.0) - 1)
    assert np.array_equal(A, [2.0, 0.0, -2.0, -4.0])  # 1 - (B - 1)[::2]: b's new values


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("view", ["reversed param", "strided state", "float32 copy of a param"])
def test_a_converted_grad_of_an_earlier_key_on_large_arrays(view, threads):
    """Item 6 at sizes where several threads run: the conversion waits for the keys before it."""
    results = []
    for module in (fastopt, reference):
        rng = np.random.default_rng(6)
        params = {"b": rng.standard_normal(2 * LARGE), "a": rng.standard_normal(LARGE)}
        opt = module.Momentum()
        opt.update(params, {k: rng.standard_normal(v.shape) for k, v in params.items()})
        with fastopt.num_threads(threads):
            for _ in range(2):
                if view == "reversed param":
                    grad_a = params["b"][-1 : -LARGE - 1 : -1]
                elif view == "strided state":
                    grad_a = opt.v["b"][::2]
                else:  # a converted dtype, from a view of b's memory
                    grad_a = params["b"][:LARGE].astype(np.float32)
                grads = {"b": rng.standard_normal(2 * LARGE), "a": grad_a}
                opt.update(params, grads if module is fastopt else AtItsTurn(grads))
        results.append((params, opt.v))
    for got, want in zip(*results):
        for key in ("a", "b"):
            assert np.array_equal(got[key], want[key]), key


# ---- The property: random aliasing among params, grads and states. ----

CLASSES = [
    ("book", name, {}) for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
] + [
    ("optim", "Adam", {"amsgrad": True}),
    ("optim", "Adagrad", {}),
    ("optim", "SGD", {"momentum": 0.9, "nesterov": True}),
    ("optim", "RMSprop", {"centered": True, "momentum": 0.5}),
]
GRAD_KINDS = ["fresh", "param", "state", "own state", "strided param", "reversed state"]


def make(module: Any, family: str, name: str, options: dict) -> Any:
    home = module if family == "book" else module.optim
    return getattr(home, name)(**options)


def state_names(opt: Any, family: str) -> tuple[str, ...]:
    return STATE_NAMES[type(opt).__name__] if family == "book" else tuple(opt._state_names)


@st.composite
def scenarios(draw: Any) -> dict:
    large = draw(st.booleans())
    sizes = draw(st.lists(st.integers(1, 40), min_size=2, max_size=4))
    if large:
        sizes = [s * 2_503 for s in sizes]
    keys = len(sizes)
    span = sum(sizes)
    # Each param is a slice of one shared buffer: overlapping (tied) or apart, as drawn.
    offsets = [draw(st.integers(0, span)) for _ in range(keys)]
    grads = []
    for _ in range(keys):
        kind = draw(st.sampled_from(GRAD_KINDS))
        other = draw(st.integers(0, keys - 1))
        grads.append((kind, other, draw(st.integers(0, 3))))
    return {
        "sizes": sizes,
        "offsets": offsets,
        "grads": grads,
        "class": draw(st.sampled_from(CLASSES)),
        "seed": draw(st.integers(0, 2**16)),
    }


def grad_for(kind: str, n: int, other: Any, slot: int, params: dict, opt: Any, family: str, rng):
    """The drawn grad for a key of size n, from the arrays of `other` when they are long enough."""
    states = state_names(opt, family)
    if kind in ("state", "own state", "reversed state") and states:
        source = getattr(opt, states[slot % len(states)])[other]
    else:
        source = params[other]
    if kind == "strided param" and source.size >= 2 * n:
        return source[: 2 * n : 2]
    if kind == "reversed state" and source.size >= n:
        return source[n - 1 :: -1] if n < source.size else source[::-1]
    if kind != "fresh" and source.size >= n:
        return source[:n]
    return rng.standard_normal(n)


def run_scenario(module: Any, scenario: dict, threads: int) -> tuple[np.ndarray, dict, Any]:
    family, name, options = scenario["class"]
    rng = np.random.default_rng(scenario["seed"])
    sizes, offsets = scenario["sizes"], scenario["offsets"]
    buffer = rng.standard_normal(sum(sizes) * 2 + 1)
    params = {k: buffer[o : o + n] for k, (o, n) in enumerate(zip(offsets, sizes))}
    opt = make(module, family, name, options)
    opt.update(params, {k: rng.standard_normal(n) for k, n in enumerate(sizes)})
    with fastopt.num_threads(threads):
        for _ in range(2):
            grads = {}
            for k, (kind, other, slot) in enumerate(scenario["grads"]):
                other = k if kind == "own state" else other
                grads[k] = grad_for(kind, sizes[k], other, slot, params, opt, family, rng)
            opt.update(params, grads if module is fastopt else AtItsTurn(grads))
    states = {s: getattr(opt, s) for s in state_names(opt, family)}
    return buffer, states, params


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_aliasing_gives_the_books_numbers_on_every_thread_count(scenario):
    buffer_ref, states_ref, _ = run_scenario(reference, scenario, 1)
    for threads in THREADS:
        buffer, states, _ = run_scenario(fastopt, scenario, threads)
        assert np.array_equal(buffer, buffer_ref), threads
        for name, by_key in states_ref.items():
            for key, value in by_key.items():
                assert np.array_equal(states[name][key], value), (threads, name, key)
