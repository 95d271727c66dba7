"""Every benchmark in one command: overhead, lr_find memory, DDP, suggestion quality, and the GPU script.

    python benchmarks/run_all.py             # full runs (about 10 minutes on 2 CPU cores); gpu.py runs in full
                                             # only where CUDA is, else its tiny CPU check
    python benchmarks/run_all.py --quick     # a smoke run of each script
    python benchmarks/run_all.py --dry-run   # print the commands only

Each script runs in its own process (its own thread settings and memory high-water mark), printing as it goes.
fastai and torch-lr-finder are timed beside lrwidget where installed: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("overhead", "memory", "ddp", "suggestions", "gpu")


def commands(quick: bool, only: list[str] | None = None) -> list[list[str]]:
    """The command line of each benchmark script, in order."""
    return [
        [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
        for name in SCRIPTS
        if not only or name in only
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that every script runs")
    p.add_argument("--only", action="append", choices=SCRIPTS, help="run only this script (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    a = p.parse_args(argv)
    done = []
    for cmd in commands(a.quick, a.only):
        line = " ".join([Path(cmd[0]).name, str(Path(cmd[1]).relative_to(HERE.parent)), *cmd[2:]])
        print(f"\n==== {line}", flush=True)
        if a.dry_run:
            continue
        t = time.perf_counter()
        rc = subprocess.call(cmd)
        done.append((line, rc, time.perf_counter() - t))
    if done:
        print("\n==== summary")
        for line, rc, s in done:
            print(f"{'ok    ' if rc == 0 else f'FAILED (exit {rc})'} {s:6.0f}s  {line}")
    return max((rc for _, rc, _ in done), default=0)


if __name__ == "__main__":
    sys.exit(main())
