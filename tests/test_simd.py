"""Every SIMD level gives bit-identical results; FASTOPT_SIMD forces one or fails clearly.

Each level runs in its own subprocess, because the level is chosen once, at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastopt
import numpy as np
import pytest

# A workload with every optimizer, both dtypes and sizes around every vector width, whose result
# (params and all state) is written to an .npz file.
WORKLOAD = r"""
import sys
import numpy as np
import fastopt
sys.path.insert(0, TESTS)
from conftest import OPTIM_CASES

rng = np.random.default_rng(7)
out = {"level": np.array(fastopt.simd_level())}
for name, state_names in [("SGD", ()), ("Momentum", ("v",)), ("Nesterov", ("v",)),
                          ("AdaGrad", ("h",)), ("RMSprop", ("h",)), ("Adam", ("m", "v"))]:
    for dtype in (np.float32, np.float64):
        opt = getattr(fastopt, name)()
        params = {n: rng.standard_normal(n).astype(dtype) for n in (1, 3, 7, 8, 9, 15, 16, 17,
                  31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4099)}
        params["F"] = np.asfortranarray(rng.standard_normal((13, 7)).astype(dtype))
        for _ in range(10):
            opt.update(params, {k: rng.standard_normal(v.shape).astype(dtype)
                                for k, v in params.items()})
        tag = f"{name}-{dtype.__name__}"
        for key, value in params.items():
            out[f"{tag}-p-{key}"] = value
            for state in state_names:
                out[f"{tag}-{state}-{key}"] = getattr(opt, state)[key]
for case, (name, options) in enumerate(OPTIM_CASES):
    for dtype in (np.float32, np.float64):
        opt = getattr(fastopt.optim, name)(**options)
        params = {n: rng.standard_normal(n).astype(dtype) for n in (1, 7, 9, 17, 33, 65, 129, 1000)}
        for _ in range(6):
            opt.update(params, {k: rng.standard_normal(v.shape).astype(dtype)
                                for k, v in params.items()})
        for key, value in params.items():
            out[f"optim{case}-{dtype.__name__}-p-{key}"] = value
            for state in [s for s in opt._state_names if getattr(opt, s)]:  # the option's states
                out[f"optim{case}-{dtype.__name__}-{state}-{key}"] = getattr(opt, state)[key]
grads = {n: rng.standard_normal(n) for n in (1, 7, 8191, 8192, 8193, 30_001)}
out["norm"] = np.array(fastopt.global_norm(grads))
out["norm32"] = np.array(fastopt.global_norm({k: v.astype(np.float32) for k, v in grads.items()}))
found, expected = [], []
for dtype in (np.float32, np.float64):
    for size in (1, 7, 8, 9, 15, 16, 17, 31, 33, 2047, 2048, 2049, 5000):
        for position in sorted({0, size // 2, size - 1}):
            for bad in (np.nan, np.inf, -np.inf, None):
                grad = np.full(size, np.finfo(dtype).max, dtype)
                if bad is not None:
                    grad[position] = bad
                opt = fastopt.SGD(lr=0.0, nonfinite="skip")
                opt.update({"x": np.ones(size, dtype)}, {"x": grad})
                found.append(opt.skipped_updates)
                expected.append(int(bad is not None))
out["nonfinite"], out["nonfinite_expected"] = np.array(found), np.array(expected)
# Half precision: the conversions on many float32 patterns, and every mode through two optimizers.
import ml_dtypes
from fastopt import _core
patterns = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
for fmt, dtype in (("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)):
    out[f"widen-{fmt}"] = _core._widen_half(np.arange(2**16, dtype=np.uint16), fmt).view(np.uint32)
    out[f"nearest-{fmt}"] = _core._round_half(patterns, fmt, False)
    out[f"stochastic-{fmt}"] = _core._round_half(patterns, fmt, True, 1234, 2**32 + 7)
    modes = ({}, {"master_weights": False}, {"rounding": "stochastic"}, {"compensation": True})
    for mode in modes:
        for case, (name, options) in enumerate(OPTIM_CASES):
            opt = getattr(fastopt.optim, name)(**options, **mode)
            params = {n: rng.standard_normal(n).astype(dtype) for n in (1, 7, 9, 17, 513)}
            for _ in range(3):
                opt.update(params, {k: rng.standard_normal(v.shape).astype(dtype)
                                    for k, v in params.items()})
            tag = f"half-{fmt}-{case}-{sorted(mode.items())}"
            for key, value in params.items():
                out[f"{tag}-p-{key}"] = value.view(np.uint16)
# Compact state: the int8 block quantization on many patterns, and every optimizer in each format.
wide = patterns[np.isfinite(patterns)] * np.float32(1e-30)  # many decades, both signs
for signed in (True, False):
    codes, absmax = _core._quantize(patterns[:100_000], signed)
    out[f"quantize-{signed}"], out[f"absmax-{signed}"] = codes, absmax.view(np.uint32)
    codes, absmax = _core._quantize(wide[:100_000], signed)
    out[f"quantize-wide-{signed}"] = codes
    out[f"dequantize-{signed}"] = _core._dequantize(codes, absmax, signed).view(np.uint32)
compact = ({"state_format": "int8", "compact_min_size": 0}, {"state_format": "bfloat16"},
           {"state_format": "bfloat16", "rounding": "stochastic"})
for mode in compact:
    for case, (name, options) in enumerate(OPTIM_CASES):
        for dtype in (np.float32, np.float64):
            opt = getattr(fastopt.optim, name)(**options, **mode)
            params = {n: rng.standard_normal(n).astype(dtype) for n in (1, 7, 9, 255, 257, 700)}
            for _ in range(3):
                opt.update(params, {k: rng.standard_normal(v.shape).astype(dtype)
                                    for k, v in params.items()})
            tag = f"compact-{case}-{dtype.__name__}-{sorted(mode.items())}"
            for key, value in params.items():
                out[f"{tag}-p-{key}"] = value
            for state, arrays in opt.raw_state.items():
                for key, value in arrays.items():
                    out[f"{tag}-{state}-{key}"] = value
np.savez(sys.argv[1], **out)
"""


WORKLOAD = WORKLOAD.replace("TESTS", repr(str(Path(__file__).resolve().parent)))


def run_level(level: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTOPT_SIMD=level)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def baseline_result(tmp_path_factory) -> dict:
    return level_result("baseline", tmp_path_factory.mktemp("simd"))


def level_result(level: str, folder: Path) -> dict:
    out = folder / f"{level}.npz"
    done = run_level(level, "-c", WORKLOAD, str(out))
    assert done.returncode == 0, done.stderr
    result = dict(np.load(out))
    assert str(result.pop("level")) == level
    assert np.array_equal(result["nonfinite"], result["nonfinite_expected"])  # inf/nan found
    return result


@pytest.mark.parametrize("level", fastopt._core.compiled_simd_levels())
def test_level_is_bit_identical_to_baseline(level, baseline_result, tmp_path: Path):
    if level not in fastopt.available_simd_levels():
        pytest.skip(f"{level} is compiled but this CPU cannot run it")
    result = level_result(level, tmp_path)
    assert result.keys() == baseline_result.keys()
    for key, value in baseline_result.items():
        assert np.array_equal(result[key], value), key


def test_compiled_levels():
    compiled = fastopt._core.compiled_simd_levels()
    assert compiled[0] == "baseline"
    if os.uname().machine in ("x86_64", "AMD64"):
        assert compiled == ["baseline", "avx2", "avx512"]


def test_default_is_the_strongest_available_level():
    done = subprocess.run(
        [sys.executable, "-c", "import fastopt; print(fastopt.simd_level())"],
        env={k: v for k, v in os.environ.items() if k != "FASTOPT_SIMD"},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == fastopt.available_simd_levels()[-1]


def test_unknown_level_fails_clearly():
    done = run_level("sse9", "-c", "import fastopt")
    assert done.returncode != 0
    assert "ImportError: FASTOPT_SIMD=sse9 is not a SIMD level" in done.stderr
    assert "baseline" in done.stderr


def test_level_the_cpu_lacks_fails_clearly():
    lacking = [
        level
        for level in fastopt._core.compiled_simd_levels()
        if level not in fastopt.available_simd_levels()
    ]
    if not lacking:
        pytest.skip("this CPU supports every compiled level")
    done = run_level(lacking[0], "-c", "import fastopt")
    assert done.returncode != 0
    assert (
        f"FASTOPT_SIMD={lacking[0]} asks for a SIMD level this CPU does not support" in done.stderr
    )
