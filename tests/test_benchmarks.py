"""The benchmark scripts run (tiny sizes) and give sane rows: figures come from benchmarks/, never from timed tests."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the benchmarks' scripts run

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def keep_threads():
    """One torch thread, as the scripts use (two spin badly on a busy 2-core machine); put the count back after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_overhead_benchmark_runs_every_case(capsys):
    rows = load("overhead").main(["--quick", "--no-others"])
    assert [r["case"] for r in rows] == [
        f"{a} {w}"
        for a in ("mlp", "cnn")
        for w in ("fit_one_cycle", "lr_find(20)", "widget fit", "widget fit, runs panel")
    ]
    for r in rows:
        assert r["ours_s"] > 0 and r["hand_s"] > 0 and r["ratio"] > 0 and r["cpu_ratio"] > 0  # no timing limits
        assert r["tool"] == "lrwidget" and r["target"] == 1.05
        if r["work"] != "lr_find(20)":
            assert r["steps"][0] == r["steps"][1] > 0  # the same work on both sides
    assert [r["baseline"] for r in rows].count("headless fit_one_cycle") == 4
    out = capsys.readouterr().out
    assert "median ratio" in out and "load average" in out and "| mlp widget fit | lrwidget |" in out


def _groups(opt: torch.optim.Optimizer) -> list[tuple[set, dict]]:
    """Each non-empty parameter group: which parameters, and its settings apart from the lr."""
    return [
        (
            {id(p) for p in g["params"]},
            {k: v for k, v in g.items() if k not in ("params", "lr", "layer_group", "wd_exempt", "initial_lr")},
        )
        for g in opt.param_groups
        if g["params"]
    ]


def test_the_hand_written_optimizers_are_lrwidgets_default():
    """The same work on both sides: the same AdamW settings, the same parameters out of weight decay."""
    from lrwidget import Learner

    bench, gpu = load("overhead"), load("gpu")
    cpu = torch.device("cpu")
    dls = bench.make_data(256, 64, 64, shape=(1, 28, 28))
    for model, hand_opt in [(m, bench.adamw(m)) for m in (bench.make_model(), bench.make_cnn())] + [
        (m, gpu.hand_adamw(m, cpu)) for m in [gpu.make_model(cpu)]
    ]:
        ours = _groups(Learner(dls, model, device=cpu).opt)
        assert ours == _groups(hand_opt) and len(ours) == 2
        assert {g["weight_decay"] for _, g in ours} == {0.01, 0.0}


def test_hand_written_lr_find_does_the_same_steps_as_ours():
    bench = load("overhead")
    dls = bench.make_data(2048, 64, 256)
    assert bench.hand_lr_find(dls, bench.make_model())() == bench.ours_lr_find(dls, bench.make_model())()
    cnn = bench.make_data(512, 64, 64, shape=(1, 28, 28))
    assert bench.hand_lr_find(cnn, bench.make_cnn(), 20)() == bench.ours_lr_find(cnn, bench.make_cnn(), 20)() == 20


def test_widget_case_runs_the_fit_through_the_widget():
    bench = load("overhead")
    dls = bench.make_data(512, 64, 64)
    steps = bench.widget_fit(dls, bench.make_model(), epochs=2)(), bench.headless_fit(dls, bench.make_model(), 2)()
    assert steps == (16, 16)


def test_fastai_and_torch_lr_finder_side_by_side_where_installed():
    have = load("overhead").others_installed()
    assert all(have.values()), f"the test extra installs fastai and torch-lr-finder; missing: {have}"
    # a separate process: fastai patches torch classes on import
    p = subprocess.run(
        [sys.executable, str(BENCH / "overhead.py"), "--quick", "--arch", "mlp"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    for case in ("mlp fit_one_cycle [fastai]", "mlp lr_find(20) [fastai]", "mlp lr_find(20) [torch-lr-finder]"):
        assert case in p.stdout


def test_lr_find_saves_at_most_one_copy_of_the_state_on_the_host():
    mem = load("memory")
    r = mem.saved_ratio("cpu", hidden=256, steps=8)
    rng_allowance = 64 * 1024  # torch, numpy and loader generator states
    assert r["state_bytes"] > 1_000_000
    assert r["extra_bytes"] <= r["state_bytes"] + rng_allowance, r
    assert r["ratio"] > 0.99  # it does save the weights and the optimizer state
    assert r["saved_on_device"] == 0


def test_the_widgets_start_is_one_host_copy_of_the_state():
    r = load("memory").start_ratio("cpu", hidden=256, steps=8)
    assert r["state_bytes"] > 1_000_000 and 0.99 < r["ratio"] <= 1.0 + 64 * 1024 / r["state_bytes"], r
    assert r["saved_on_device"] == 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak RSS")
def test_lr_find_host_peak_stays_within_one_copy_of_the_state(capsys):
    rows = load("memory").main(["--quick", "--device", "cpu"])
    measures = ["saved (exact)", "saved (disk)", "start (exact)", "host peak", "host peak (disk)", *["copy time"] * 2]
    assert [r["measure"] for r in rows] == measures
    peak, disk = rows[3], rows[4]
    assert peak["lr_find_rise"] > peak["fit_rise"] > 0
    assert peak["ratio"] < 1.25, peak  # one copy, plus allocator slack
    assert rows[1]["ratio"] < 0.05 and disk["ratio"] < disk["budget"] + 0.05, (rows[1], disk)  # the copy on disk
    assert all(r["take_s"] > 0 and r["restore_s"] > 0 for r in rows[5:]) and rows[6]["snapshot"] == "disk"
    assert "host peak (disk)" in capsys.readouterr().out


def test_suggestion_quality_benchmark_runs(capsys):
    sug = load("suggestions")
    rows = sug.main(["--quick"])
    columns = ["lr_min", "lr_steep", "valley", "slide", "widget", "repeats=3", "lr_search"]
    assert len(sug.TASKS) >= 7 and len(rows) == len(sug.TASKS) * len(columns)
    assert [r["suggestion"] for r in rows[: len(columns)]] == columns
    for r in rows:
        assert 0 <= r["grid_best"] <= 1 and r["seeds"] == 1
        assert (math.isnan(r["mean_gap"]) and r["missing"] == 1) or -1 <= r["mean_gap"] <= r["worst_gap"] <= 1
        assert (r["cost"] is None) == (r["suggestion"] != "lr_search") and (r["cost"] is None or r["cost"] <= 1.5)
    out = capsys.readouterr().out
    assert "| **all tasks** |" in out and "smallest mean gap" in out


def test_gpu_script_runs_tiny_on_cpu(capsys):
    res = load("gpu").main(["--quick", "--device", "cpu"])
    assert res["lrwidget_ips"] > 0 and res["hand_ips"] > 0 and res["ratio"] > 0
    out = capsys.readouterr().out
    assert out.startswith("device: CPU") and "img/s" in out and "median ratio" in out


def gpu_image_env(tmp_path: Path) -> dict:
    """This venv as the GPU machine's image has it: torch and pytest, but no ipywidgets, bqplot or IPython."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("ipywidgets", "bqplot", "IPython", "traitlets"):
        (shims / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on the GPU image')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(shims), str(BENCH.parent)]), PYTHONUNBUFFERED="1")


def test_the_gpu_check_is_ready_for_a_machine_with_only_torch(tmp_path):
    """benchmarks/gpu_check.sh gets one short try on a GPU: its script parses, its tests import, its benchmark runs."""
    env, root = gpu_image_env(tmp_path), BENCH.parent
    subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], check=True)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "tests/test_gpu.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected = [line for line in r.stdout.splitlines() if line.startswith("tests/test_gpu.py::")]
    assert r.returncode == 0 and len(collected) >= 8, r.stdout + r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import lrwidget, sys; assert 'ipywidgets' not in sys.modules; from lrwidget import LRWidget",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    missing = re.search(r"(ipywidgets|bqplot|traitlets|IPython) is not installed", r.stderr)
    assert r.returncode != 0 and missing, "only LRWidget needs the widget packages"
    out = tmp_path / "gpu.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--quick", "--json", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["device"] == "CPU" and res["lrwidget_ips"] > 0 and res["hand_ips"] > 0


def test_the_gpu_tests_fail_rather_than_skip_without_a_gpu(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
            "tests/test_gpu.py",
            "-k",
            "default",
        ],
        cwd=BENCH.parent,
        env=gpu_image_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if torch.cuda.is_available():
        assert r.returncode == 0, r.stdout
    else:
        assert r.returncode != 0 and "need a CUDA GPU" in r.stdout and "skipped" not in r.stdout, r.stdout


def test_run_all_names_every_script(capsys):
    assert load("run_all").main(["--dry-run", "--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("overhead", "memory", "ddp", "suggestions", "gpu"):
        assert f"benchmarks/{name}.py --quick" in out


def test_ddp_benchmark_runs_both_sides():
    r = subprocess.run(
        [sys.executable, str(BENCH / "ddp.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BENCH.parent,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "per epoch: lrwidget" in r.stdout and "hand-written DDP" in r.stdout and "start-up" in r.stdout, r.stdout


def test_the_start_methods_benchmark_starts_and_joins_two_workers_each_way(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # a spawned worker imports the script's module by its own name
    import start_methods as bench

    for method in ("fork", "spawn", "lrwidget"):
        assert 0 < bench.start_up(method) < 120  # both workers joined the group and all-reduced
