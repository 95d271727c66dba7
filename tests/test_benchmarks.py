"""The benchmark scripts run (tiny sizes): figures come from benchmarks/, never from timed tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overhead_benchmark_runs_every_case(capsys):
    import torch
    threads = torch.get_num_threads()
    try:
        rows = load("overhead").main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert [r["case"] for r in rows] == ["fit_one_cycle", "lr_find(100)"]
    for r in rows:
        assert r["ours_s"] > 0 and r["hand_s"] > 0 and 0.2 < r["ratio"] < 5
    assert "median ratio" in capsys.readouterr().out


def test_hand_written_lr_find_does_the_same_steps_as_ours():
    bench = load("overhead")
    dls = bench.make_data(2048, 64, 256)
    assert bench.hand_lr_find(dls, bench.make_model()) == bench.ours_lr_find(dls, bench.make_model())
