"""Compact state under attack: the reproducers of the adversarial pass on commit 0759e76 (each
failed there), kept as regression tests."""

from __future__ import annotations

import re

import fastopt
import numpy as np
import pytest


def _int8_adam(n: int = 6000, **options):
    """An int8-state Adam after one update of a float32 param of n elements."""
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(n).astype(np.float32)}
    opt = fastopt.optim.Adam(lr=0.01, state_format="int8", **options)
    opt.update(params, {"w": rng.standard_normal(n).astype(np.float32)})
    return opt, params


def _raw_copy(opt) -> dict:
    return {
        name: {k: np.array(a, copy=True) for k, a in d.items()} for name, d in opt.raw_state.items()
    }


def _assert_state_unchanged(opt, before: dict) -> None:
    for name, arrays in before.items():
        assert opt.raw_state[name].keys() == arrays.keys(), name
        for k, a in arrays.items():
            assert np.array_equal(opt.raw_state[name][k], a, equal_nan=True), (name, k)


# ---- 1. A non-contiguous absmax array is used as if it were contiguous. ----


def test_a_strided_absmax_is_refused_and_nothing_changes():
    """compact_state.cpp checks the absmax with raw_fits(scales, NPY_FLOAT, 1, &count, 0): the
    flags asked for are 0, so contiguity is never required, and the kernels index the data pointer
    as a dense float array. A strided absmax (here every other element of a buffer) is accepted:
    the kernels read the wrong absmaxes (NaN params here) and write absmaxes into the elements
    between the view's, memory the state does not own. docs/reliability.md promises that a raw
    array of another flags raises naming the key before anything changes."""
    opt, params = _int8_adam()
    good = opt.raw_state["exp_avg_absmax"]["w"]
    buffer = np.full(2 * good.size, -7.0, np.float32)
    buffer[::2] = good
    opt.raw_state["exp_avg_absmax"]["w"] = buffer[::2]  # same values, stride 8 bytes
    before_params = params["w"].copy()
    before_buffer = buffer.copy()
    before = _raw_copy(opt)
    with pytest.raises(ValueError, match=r"params\['w'\]"):
        opt.update(params, {"w": np.ones(6000, np.float32)})
    assert np.array_equal(params["w"], before_params)
    assert np.array_equal(buffer, before_buffer)  # nothing written between the view's elements
    _assert_state_unchanged(opt, before)
    assert opt.steps == 1


# ---- 2. An absmax array that overlaps the param is not detected. ----


def test_an_absmax_that_shares_memory_with_the_param_is_refused():
    """Codes that overlap the param raise "shares memory with the param" (compact_state.cpp, the
    overlaps() check), and a float state that overlaps it is copied first; the int8 absmax array
    is never compared with the param's memory. Here the absmaxes of exp_avg are a view of the
    param's first 24 elements: the update writes absmaxes into the param (those 24 elements jump
    by up to ~4, the rest move by ~lr) and raises nothing."""
    opt, params = _int8_adam()
    count = opt.raw_state["exp_avg_absmax"]["w"].size
    params["w"][:count] = opt.raw_state["exp_avg_absmax"]["w"]
    opt.raw_state["exp_avg_absmax"]["w"] = params["w"][:count]
    before_params = params["w"].copy()
    with pytest.raises(ValueError, match=r"params\['w'\].*(share memory|shares memory)"):
        opt.update(params, {"w": np.ones(6000, np.float32)})
    assert np.array_equal(params["w"], before_params)
    assert opt.steps == 1


# ---- 3. An interrupt during the commit of new int8 state leaves codes without absmaxes. ----


class _Key:
    """A key whose __hash__ is Python code (a frozen dataclass's is too), so a signal handler can
    run inside it; here it raises KeyboardInterrupt at one chosen call, as Ctrl-C would."""

    calls = 0
    fail_at: int | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        _Key.calls += 1
        if _Key.fail_at is not None and _Key.calls == _Key.fail_at:
            raise KeyboardInterrupt
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.name == self.name

    def __repr__(self) -> str:
        return f"_Key({self.name!r})"


def test_an_interrupt_while_new_int8_state_is_committed_never_leaves_codes_without_absmaxes():
    """execute.cpp: commit_states inserts the pending arrays one PyDict_SetItem at a time: a new
    int8 state is two entries in two dicts (codes in 'exp_avg', absmaxes in 'exp_avg_absmax').
    PyDict_SetItem hashes the key (Python code for such keys), so an interrupt there stops the
    commit half way and update() raises KeyboardInterrupt with codes inserted but not their
    absmaxes. Every later update then raises ValueError for that key (misleadingly: "state
    'exp_avg_absmax' ... is NoneType, but ... keeps it as a writeable uint8 array of codes"),
    and state_dict() -> load_state_dict() refuses the optimizer's own state: the key is broken
    until the user deletes its state by hand. (Float and bfloat16 states are left half inserted
    too, but as fresh arrays that the next update completes.)"""
    n = 5000

    def make():
        key = _Key("a")
        return fastopt.optim.Adam(state_format="int8"), {key: np.ones(n, np.float32)}, key

    _Key.fail_at = None
    opt, params, key = make()
    _Key.calls = 0
    opt.update(params, {key: np.ones(n, np.float32)})
    total = _Key.calls
    broken = []
    for call in range(1, total + 1):
        opt, params, key = make()
        _Key.calls, _Key.fail_at = 0, call
        try:
            opt.update(params, {key: np.ones(n, np.float32)})
        except KeyboardInterrupt:
            pass
        finally:
            _Key.fail_at = None
        try:
            opt.update(params, {key: np.ones(n, np.float32)})
            fastopt.optim.Adam().load_state_dict(opt.state_dict())
        except ValueError as error:
            broken.append((call, str(error)[:120]))
    assert not broken, broken


# ---- 4. compact_min_size >= 2**63 is accepted, then every update fails obscurely. ----


@pytest.mark.parametrize("state_format", [None, "int8"])
def test_a_huge_compact_min_size_is_refused_up_front_or_works(state_format):
    """_checks.count accepts any int >= 0, but _core.Updater takes compact_min_size as int64:
    with 2**63 (or 10**30, a natural "never quantize") the constructor succeeds and every
    update() then raises pybind11's "TypeError: __init__(): incompatible constructor arguments"
    about the internal Updater, even with state_format=None. It should be refused when set,
    naming compact_min_size, or work (no array is that large: all state stays float)."""
    try:
        opt = fastopt.optim.Adam(state_format=state_format, compact_min_size=2**63)
    except (TypeError, ValueError) as error:
        assert "compact_min_size" in str(error)
        return
    params = {"w": np.ones(5000, np.float32)}
    opt.update(params, {"w": np.ones(5000, np.float32)})
    assert opt.raw_state["exp_avg"]["w"].dtype == np.float32


def test_a_checkpoint_with_a_huge_compact_min_size_is_refused_at_load():
    """The same through load_state_dict: the checkpoint loads, and the optimizer can then never
    update again."""
    opt, params = _int8_adam()
    state = opt.state_dict()
    state["hyperparameters"]["compact_min_size"] = 10**30
    state["state"] = {}  # no arrays: any size is consistent with them
    other = fastopt.optim.Adam()
    try:
        other.load_state_dict(state)
    except ValueError as error:
        assert "compact_min_size" in str(error)
        return
    other.update(params, {"w": np.ones(6000, np.float32)})


# ---- 5. int8 codes replaced in the other memory order are silently reinterpreted. ----


def test_int8_codes_in_the_other_memory_order_raise_or_keep_their_values():
    """The raw codes of a C-ordered 2-D param replaced by the same codes in Fortran order (the
    same value at each index) are taken by compact_state.cpp for a param whose order changed and
    "moved" (_compact.relayout): dequantized in their own memory order with absmaxes that belong
    to the C-order blocks. No error; the state's values change by up to ~25% of their scale.
    (bfloat16 bits in the other order are moved without loss, as float states are copied.)
    Expected: ValueError naming the key with nothing changed, or the values kept."""
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((70, 90)).astype(np.float32)}
    opt = fastopt.optim.Adam(lr=0.01, state_format="int8")
    opt.update(params, {"W": rng.standard_normal((70, 90)).astype(np.float32)})
    values = opt.exp_avg["W"].copy()
    opt.raw_state["exp_avg"]["W"] = np.asfortranarray(opt.raw_state["exp_avg"]["W"])
    before_params = params["W"].copy()
    try:
        opt.update(params, {"W": np.zeros((70, 90), np.float32)})  # exp_avg only decays
    except ValueError as error:
        assert "'W'" in str(error)
        assert np.array_equal(params["W"], before_params) and opt.steps == 1
        return
    scale = np.abs(values).max()
    assert np.abs(opt.exp_avg["W"] - 0.9 * values).max() <= 0.02 * scale


# ---- 6. Unclear errors. ----


def test_a_bad_absmax_array_is_described_as_an_absmax_array():
    """A short absmax array raises, but the message says the absmax array should be "a writeable
    uint8 array of codes shaped and ordered like the param" (does_not_fit builds the codes'
    description for it) and never says how many absmaxes it needs (25 here)."""
    opt, params = _int8_adam(6300)
    opt.raw_state["exp_avg_absmax"]["w"] = opt.raw_state["exp_avg_absmax"]["w"][:-1].copy()
    with pytest.raises(ValueError) as caught:
        opt.update(params, {"w": np.ones(6300, np.float32)})
    message = str(caught.value)
    assert "exp_avg_absmax" in message, message
    assert re.search(r"(?<!\d)25(?!\d)", message), message  # the count it needs
    assert "uint8 array of codes" not in message.split(", with")[0], message


def test_assigning_into_a_compact_state_view_explains_itself():
    """With state_format=None, opt.exp_avg[k] = array works (a dict); under a state_format
    opt.exp_avg is a CompactStateView and the same line raises a bare
    "AttributeError: __setitem__", which says nothing of the read-only view or of raw_state."""
    opt, _ = _int8_adam()
    with pytest.raises(TypeError, match="read-only|raw_state"):
        opt.exp_avg["w"] = np.zeros(6000, np.float32)


# ---- The distributed pass (issue 17): bfloat16 states measured as float32 ones. ----


def test_bfloat16_states_of_a_float32_param_are_measured_at_their_own_size():
    """A float32 param whose states are all bfloat16 (rounded to nearest) runs the row's
    bf16_states kernel with no Mixed; the aliasing check sized its states as float32, twice their
    bytes, so memory just past them looked shared: a float16 param with a master there raised
    "share memory" (at random, by where the allocator put things; placed there on purpose here)."""
    n, m = 1024, 512
    block = np.zeros(4 * n + 2 * m, np.uint8)  # a's two bfloat16 states, then b's float16 values
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal(n).astype(np.float32), "b": block[4 * n :].view(np.float16)}
    params["b"][:] = rng.standard_normal(m)
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    options = dict(lr=0.01, state_format="bfloat16", compact_min_size=1)
    opt, alone = fastopt.optim.Adam(**options), fastopt.optim.Adam(**options)
    separate = {"a": params["a"].copy()}
    opt.update(params, grads)
    alone.update(separate, grads)
    for offset, name in ((0, "exp_avg"), (2 * n, "exp_avg_sq")):
        placed = block[offset : offset + 2 * n].view(np.uint16)
        placed[:] = opt.raw_state[name]["a"]
        opt.raw_state[name]["a"] = placed  # b's float16 values begin where exp_avg_sq ends
    opt.update(params, grads)  # raised ValueError: params['a'] and params['b'] share memory
    alone.update(separate, grads)
    assert np.array_equal(params["a"], separate["a"])


# ---- The second pass (owed since issue 15, run with issue 18). ----


def test_a_negative_absmax_is_refused_at_load():
    """Absmaxes are max |value|: a negative one made an unsigned state read negative, and the
    block's params NaN at the next update."""
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(6000).astype(np.float32)}
    opt = fastopt.optim.Adam(lr=0.01, state_format="int8")
    opt.update(params, {"w": rng.standard_normal(6000).astype(np.float32)})
    state = opt.state_dict()
    state["state"]["exp_avg_sq_absmax"]["w"] = state["state"]["exp_avg_sq_absmax"]["w"].copy()
    state["state"]["exp_avg_sq_absmax"]["w"][3] = -1.0
    other = fastopt.optim.Adam(lr=0.01)
    with pytest.raises(ValueError, match=r"'exp_avg_sq_absmax'\['w'\] holds a negative absmax"):
        other.load_state_dict(state)
    assert other.steps == 0 and not other.raw_state["exp_avg"]


def test_views_of_states_kept_in_float_cannot_write_the_state():
    """Under int8, small arrays and running maxima stay in float; their views were views of the
    live arrays, which setflags, .base or torch.from_numpy could write through."""
    opt = fastopt.optim.Adam(lr=0.01, state_format="int8", amsgrad=True)
    params = {"small": np.ones(100, np.float32), "big": np.ones(6000, np.float32)}
    opt.update(params, {k: np.full_like(v, 0.5) for k, v in params.items()})
    before = {
        name: {k: v.copy() for k, v in arrays.items()} for name, arrays in opt.raw_state.items()
    }
    shown = opt.exp_avg["small"]
    shown.setflags(write=True)
    shown[:] = 123.0
    running = opt.max_exp_avg_sq["big"]
    running.setflags(write=True)
    running[:] = -5.0
    for name, arrays in opt.raw_state.items():
        for key, value in arrays.items():
            assert np.array_equal(value, before[name][key]), (name, key)
