"""The package installs: a wheel and an sdist that twine passes, and the wheel, in a fresh venv, runs the README."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from test_readme import example

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# after the README's example (whose `w` a notebook would display): drive it from code and say where lrwidget is
CHECK = """
from importlib.metadata import distribution, version
from packaging.requirements import Requirement
import lrwidget

dist = distribution("lrwidget")
for req in map(Requirement, dist.requires or []):
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        assert req.specifier.contains(version(req.name), prereleases=True), (req, version(req.name))
assert w.find(num_it=30)
w.wait(120)
assert w.fit()
w.wait(120)
print(lrwidget.__file__, dist.locate_file(""), learn.recorder.values[-1][-1])
"""


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout}\n{out.stderr}"
    return out


def test_the_built_wheel_runs_the_readme_example_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    # no isolation: the build uses this venv's setuptools, so it needs no package index
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT])
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist])
    in_wheel, in_sdist = zipfile.ZipFile(wheel).namelist(), tarfile.open(sdist).getnames()
    for names in in_wheel, in_sdist:
        assert any(n.endswith("/digits.npz") for n in names), "the shipped digits data"
        assert any(n.endswith("/LICENSE") for n in names)

    # a fresh venv that sees this venv's packages (torch is 5 GB) after its own, through a .pth file
    env_dir = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", env_dir])
    py = env_dir / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "project_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    # the wheel alone: its dependencies are this venv's (checked by CHECK), and this venv's lrwidget stays as it is
    run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", "--quiet", wheel])

    elsewhere = tmp_path / "elsewhere"  # not the clone: `import lrwidget` cannot find its source there
    elsewhere.mkdir()
    (elsewhere / "example.py").write_text(example() + CHECK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")
    module, installed_at, accuracy = run([py, "example.py"], cwd=elsewhere, env=env).stdout.split()[-3:]
    assert Path(module).is_relative_to(env_dir) and Path(installed_at).is_relative_to(env_dir)
    assert float(accuracy) > 0.8
