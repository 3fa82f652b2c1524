"""The compiled module exports its entry point, the two C functions threadpoolctl calls, and
nothing else of its own.

Exported, the rules' static constexpr members are STB_GNU_UNIQUE symbols, which the dynamic linker
merges across every library of the process: a second fastopt build loaded beside this one (an A/B
benchmark does that) then read this build's name tables and crashed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fastopt import _core


def test_no_fastopt_symbol_is_exported():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    listing = subprocess.run(
        [nm, "-D", "--defined-only", "--demangle", _core.__file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    ours = [line for line in listing if "fastopt::" in line or " u " in line]
    assert ours == [], "\n".join(ours[:10])
    assert any(line.endswith("PyInit__core") for line in listing)
    c_api = sorted(line.split()[-1] for line in listing if line.split()[-1].startswith("fastopt"))
    assert c_api == ["fastopt_get_num_threads", "fastopt_set_num_threads"]  # _threadpoolctl.py
