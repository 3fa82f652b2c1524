"""README.md stays true: its Python examples run, and CI runs its set-up commands verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_examples_run(code):
    if "import torch" in code:
        pytest.importorskip("torch")  # the fastopt.torch example; torch is optional
    if "fastopt.distributed" in code:
        pytest.importorskip("mpi4py")  # the mpi extra; one process here, as the example allows
    exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_set_up_commands():
    setup = [line.split("#")[0].strip() for line in blocks("sh")[0].splitlines() if line.strip()]
    assert len(setup) == 2, "the README has exactly two set-up commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup[0].split(" && ")[0] in ci  # the install; CI shortens the main job's timing
    assert setup[1] in ci
