"""`wangge bench` dispatch: names are checked before anything runs."""

import importlib

import pytest
from rich.console import Console

from wangge.bench_cli import BENCHMARKS, run_benchmarks


def test_an_unknown_benchmark_is_refused_before_any_runs() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        run_benchmarks(["pipeline", "nosuch"], quick=True, console=Console())


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_module_has_a_main(name: str) -> None:
    module = importlib.import_module(BENCHMARKS[name][0])
    assert callable(module.main)
