"""nonfinite="propagate" | "skip" | "raise": what update() does with inf or nan in a grad."""

from __future__ import annotations

import inspect
import math

import fastopt
import numpy as np
import pytest
from conftest import BOOK, OPTIM_CASES, case_id, clone, pair
from fastopt import reference

# Every optimizer: the book's six, and every fastopt.optim case (all options).
CASES = [(name, {}, True) for name in BOOK] + [(n, o, False) for n, o in OPTIM_CASES]
CASE_IDS = [("" if book else "optim.") + case_id((n, o)) for n, o, book in CASES]
BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def make(name, options, book, **common):
    module = fastopt if book else fastopt.optim
    return getattr(module, name)(**options, **common)


def make_reference(name, options, book):
    return getattr(reference if book else reference.optim, name)(**options)


def network(rng, dtype):
    """Params of several shapes and layouts, one larger than the check's 2048-element blocks."""
    return {
        "W1": rng.standard_normal((5, 3)).astype(dtype),
        "b1": rng.standard_normal(3).astype(dtype),
        "F": np.asfortranarray(rng.standard_normal((9, 4)).astype(dtype)),
        "big": rng.standard_normal(5000).astype(dtype),
    }


def grads_of(params, rng):
    return {
        k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for k, v in params.items()
    }


def everything(opt, params):
    """Every value an update() may change: params (values and identities), the optimizer's whole
    state_dict (states and counters, step counts included) and its update count."""
    return {
        "ids": {k: id(v) for k, v in params.items()},
        "params": clone(params),
        "state": opt.state_dict(),
        "steps": opt.steps,
        "lr": opt.lr,
    }


def assert_same_tree(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tree(a[key], b[key])
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        assert np.array_equal(a, b, equal_nan=True)
    else:
        assert a == b or (a != a and b != b)


def assert_nothing_changed(before, opt, params):
    assert_same_tree(everything(opt, params), before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name, options, book", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("bad", BAD)
def test_skip_changes_nothing_and_counts(name, options, book, dtype, bad):
    rng = np.random.default_rng(1)
    opt = make(name, options, book, nonfinite="skip")
    twin = make(name, options, book)  # never sees the bad step
    params = network(rng, dtype)
    params_twin = clone(params)
    for step in range(4):
        grads = grads_of(params, rng)
        if step in (1, 2):  # a step whose grads hold one inf or nan: skipped
            key = ("b1", "big")[step - 1]
            grads[key].flat[-1 if step == 1 else 4097] = BAD[bad]
            before = everything(opt, params)
            opt.update(params, grads)
            assert_nothing_changed(before, opt, params)
            assert opt.skipped_updates == step
            continue
        opt.update(params, grads)
        twin.update(params_twin, grads)
    assert opt.skipped_updates == 2
    # The skipped steps left no trace: the same bits as an optimizer that never saw them.
    assert_same_tree(params, params_twin)
    assert_same_tree(opt.state_dict(), twin.state_dict())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name, options, book", CASES, ids=CASE_IDS)
def test_raise_names_the_key_and_changes_nothing(name, options, book, dtype):
    rng = np.random.default_rng(2)
    opt = make(name, options, book, nonfinite="raise")
    params = network(rng, dtype)
    opt.update(params, grads_of(params, rng))
    grads = grads_of(params, rng)
    grads["F"][2, 1] = np.nan
    grads["big"][0] = np.inf  # two bad keys: the first in params' order is named
    before = everything(opt, params)
    with pytest.raises(FloatingPointError, match=r"grads\['F'\] is not finite \(1 nan and 0 inf"):
        opt.update(params, grads)
    assert_nothing_changed(before, opt, params)
    assert opt.skipped_updates == 0


@pytest.mark.parametrize("name, options, book", CASES, ids=CASE_IDS)
def test_propagate_is_the_default_and_the_books_behaviour(name, options, book):
    # float64 with inf and nan grads: the same bits (nan where nan) as the NumPy reference.
    rng = np.random.default_rng(3)
    fast = make(name, options, book)
    explicit = make(name, options, book, nonfinite="propagate")
    ref = make_reference(name, options, book)
    assert fast.nonfinite == "propagate"
    params = network(rng, np.float64)
    params_explicit, params_ref = clone(params), clone(params)
    for step in range(3):
        grads = grads_of(params, rng)
        if step == 1:
            grads["W1"][1, 1], grads["big"][7] = np.nan, -np.inf
        fast.update(params, grads)
        explicit.update(params_explicit, grads)
        with np.errstate(invalid="ignore", over="ignore"):  # NumPy warns of the nan it makes
            ref.update(params_ref, grads)
    # The nan reaches the param; or, where the rule makes no param step yet (AdaBelief without
    # degenerated_to_sgd in its first steps), the moment.
    assert np.isnan(params["W1"][1, 1]) or np.isnan(fast.exp_avg["W1"][1, 1])
    for key in params:
        assert np.array_equal(params[key], params_ref[key], equal_nan=True), key
        assert np.array_equal(params[key], params_explicit[key], equal_nan=True), key
    assert fast.skipped_updates == 0


# The book's six and torch-style Adam.
CLIP_CASES = [*CASES[:6], ("Adam", {}, False)]


@pytest.mark.parametrize("mode", ["skip", "raise"])
@pytest.mark.parametrize(
    "name, options, book", CLIP_CASES, ids=[case_id(c[:2]) for c in CLIP_CASES]
)
def test_with_clipping_the_norm_pass_is_the_check(name, options, book, mode):
    rng = np.random.default_rng(4)
    opt = make(name, options, book, nonfinite=mode, max_grad_norm=0.5)
    plain = make(name, options, book, max_grad_norm=0.5)
    params = network(rng, np.float32)
    params_plain = clone(params)
    for _ in range(3):  # all finite: exactly clipping's results
        grads = grads_of(params, rng)
        opt.update(params, grads)
        plain.update(params_plain, grads)
    assert_same_tree(params, params_plain)
    assert opt.skipped_updates == 0
    grads = grads_of(params, rng)
    grads["big"][4999] = np.nan
    before = everything(opt, params)
    if mode == "raise":
        with pytest.raises(FloatingPointError, match=r"grads\['big'\]"):
            opt.update(params, grads)
    else:
        opt.update(params, grads)
        assert opt.skipped_updates == 1
        assert math.isnan(opt.last_grad_norm)  # the report of the skipped step
    assert_nothing_changed(before, opt, params)


@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("big", [1e39, 1e300])
def test_a_grad_that_overflows_when_converted_is_caught(clip, big):
    # Finite as given (float64) but inf once converted to the float32 param's dtype: the check is
    # on what the kernel would read. With clipping, 1e39's norm is finite, so the core is told the
    # grads are finite and must still check the one it converted; 1e300's norm is inf.
    # (NumPy warns of the overflow as it converts.)
    opt = fastopt.Adam(nonfinite="skip", max_grad_norm=clip)
    params = {"a": np.ones(2, np.float32), "w": np.ones(3, np.float32)}
    grads = {"a": np.ones(2, np.float32), "w": np.array([0.5, big, 0.5])}
    with pytest.warns(RuntimeWarning, match="overflow"):
        opt.update(params, grads)
    assert opt.skipped_updates == 1 and opt.m == {} and opt.iter == 0
    assert np.array_equal(params["w"], np.ones(3, np.float32))
    with (
        pytest.warns(RuntimeWarning, match="overflow"),
        pytest.raises(FloatingPointError, match=r"grads\['w'\] is not finite \(0 nan and 1 inf"),
    ):
        fastopt.SGD(nonfinite="raise", max_grad_norm=clip).update(params, grads)


@pytest.mark.parametrize("mode", ["skip", "raise"])
def test_a_skipped_update_leaves_the_schedule_lr_and_state_alone(mode):
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1 / (1 + step)

    opt = fastopt.optim.Adam(lr=schedule, nonfinite=mode)
    params = {"a": np.ones(4), "s": 2.0}
    for _ in range(2):
        try:
            opt.update(params, {"a": np.ones(4), "s": float("nan")})
        except FloatingPointError:
            assert mode == "raise"
    assert (opt.steps, opt.exp_avg, params["s"]) == (0, {}, 2.0)
    assert isinstance(params["s"], float)  # a scalar param is not even rewritten
    assert opt.skipped_updates == (2 if mode == "skip" else 0)
    opt.update(params, {"a": np.ones(4), "s": 1.0})
    assert opt.steps == 1 and set(opt.exp_avg) == {"a", "s"}
    assert seen[-1] == 0 and opt.lr == 0.1  # the update made used the schedule's step 0
    for _ in range(2):
        try:
            opt.update(params, {"a": np.full(4, np.inf), "s": 1.0})
        except FloatingPointError:
            pass
    assert opt.lr == 0.1  # still the rate of the last update made, not the next one's


def test_every_size_and_position_is_found():
    # Sizes around every vector width and the 2048-element blocks, the bad value at each of many
    # positions (first, last, block edges): the check must see every element, and only those.
    for dtype in (np.float32, np.float64):
        for size in (*range(1, 70), 2047, 2048, 2049, 4096, 4097, 6001):
            positions = sorted({0, size - 1, size // 2, *(p for p in (2047, 2048) if p < size)})
            for position in positions:
                params = {"x": np.ones(size, dtype)}
                grads = {"x": np.ones(size, dtype)}
                grads["x"][position] = np.nan
                opt = fastopt.SGD(nonfinite="skip")
                opt.update(params, grads)
                assert opt.skipped_updates == 1, (dtype, size, position)
                assert np.array_equal(params["x"], np.ones(size, dtype))
            # The largest finite values and subnormals are finite.
            info = np.finfo(dtype)
            grads = {"x": np.full(size, info.max, dtype)}
            grads["x"][::2] = -info.smallest_subnormal
            opt = fastopt.SGD(lr=1e-30, nonfinite="raise")
            opt.update({"x": np.zeros(size, dtype)}, grads)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_key_found_is_the_same_for_every_thread_count(threads):
    rng = np.random.default_rng(6)
    params = {k: rng.standard_normal(1 << 18) for k in "abcd"}
    grads = {k: rng.standard_normal(1 << 18) for k in "abcd"}
    grads["c"][12345] = np.inf
    grads["d"][(1 << 18) - 1] = np.nan
    with fastopt.num_threads(threads):
        before = clone(params)
        with pytest.raises(FloatingPointError, match=r"grads\['c'\]"):
            fastopt.RMSprop(nonfinite="raise").update(params, grads)
        assert_same_tree(params, before)


def test_per_key_settings_are_checked_in_the_same_pass():
    opt = fastopt.optim.SGD(lr=0.1, nonfinite="skip", per_key={"b": {"lr": 0.0}})
    params = {"a": np.ones(3), "b": np.ones(3)}
    opt.update(params, {"a": np.ones(3), "b": np.array([1.0, np.inf, 1.0])})
    assert opt.skipped_updates == 1 and np.array_equal(params["a"], np.ones(3))


def test_bad_input_is_reported_before_a_nonfinite_grad():
    opt = fastopt.Adam(nonfinite="raise")
    params = {"a": np.ones(3), "b": np.ones(3)}
    with pytest.raises(ValueError, match="shape"):
        opt.update(params, {"a": np.array([np.nan, 1, 1]), "b": np.ones(4)})


@pytest.mark.parametrize("value", ["Skip", "ignore", None, 1, True, ["skip"]])
def test_bad_mode_is_rejected(value):
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        fastopt.SGD(nonfinite=value)
    opt = fastopt.optim.Adam()
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        opt.nonfinite = value
    assert opt.nonfinite == "propagate"


def test_mode_can_be_changed_between_updates():
    opt = fastopt.SGD(lr=1.0)
    params = {"a": np.ones(2)}
    grads = {"a": np.array([np.nan, 1.0])}
    opt.nonfinite = "skip"
    opt.update(params, grads)
    assert np.array_equal(params["a"], [1.0, 1.0])
    opt.nonfinite = "propagate"
    opt.update(params, grads)
    assert np.isnan(params["a"][0]) and params["a"][1] == 0.0


@pytest.mark.parametrize("name, options, book", CASES, ids=CASE_IDS)
def test_every_optimizer_takes_the_option_keyword_only(name, options, book):
    cls = getattr(fastopt if book else fastopt.optim, name)
    parameter = inspect.signature(cls).parameters["nonfinite"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default == "propagate"
    assert make(name, options, book, nonfinite="raise").nonfinite == "raise"


def test_integer_grads_are_always_finite():
    opt = fastopt.SGD(lr=0.5, nonfinite="raise")
    params = {"a": np.ones(3)}
    opt.update(params, {"a": np.array([1, 2, 3])})
    assert np.array_equal(params["a"], [0.5, 0.0, -0.5])


def test_skip_mode_gives_the_books_bits_when_all_is_finite():
    # skip mode changes nothing about an all-finite update: the book's bits.
    rng = np.random.default_rng(8)
    for name in BOOK:
        fast, ref = pair(name)
        fast.nonfinite = "skip"
        params = network(rng, np.float64)
        params_ref = clone(params)
        for _ in range(3):
            grads = grads_of(params, rng)
            fast.update(params, grads)
            ref.update(params_ref, grads)
        assert_same_tree(params, params_ref)
