"""binder/: what mybinder.org needs to build the project and open the quick start, checked offline.

Binder builds with repo2docker. With a binder/ folder, repo2docker reads only that folder (pyproject.toml at the
root is ignored), runs `pip install -r binder/requirements.txt` from the repository root after copying the whole
repository in, and runs binder/start before the server. These tests check the files against pyproject.toml and the
Makefile, and ask repo2docker itself to render the build (`--no-build`: no Docker, no network).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.slow  # Binder's image, its start and its notebooks

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
QUICKSTART = "notebooks/quickstart.ipynb"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def binder_requirements() -> tuple[list[str], dict[str, Requirement], list[str]]:
    """(options, requirements by canonical name, local paths) of binder/requirements.txt."""
    options, reqs, local = [], {}, []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        if line.startswith(("-e ", "--editable ", "--editable=")):
            local.append(re.split(r"[ =]", line, maxsplit=1)[1].strip())
        elif line.startswith("-"):
            options.append(line)
        elif line.startswith(".") or line.startswith("/"):
            local.append(line)
        else:
            r = Requirement(line)
            assert canonicalize_name(r.name) not in reqs, f"{r.name} listed twice in binder/requirements.txt"
            reqs[canonicalize_name(r.name)] = r
    return options, reqs, local


def pinned(r: Requirement) -> Version:
    """The version of an exact pin `name==version`."""
    specs = list(r.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
        f"binder/requirements.txt must pin {r.name} exactly (name==version), got {r}"
    )
    return Version(specs[0].version)


def test_binder_files_are_there():
    assert (BINDER / "requirements.txt").is_file()
    assert (BINDER / "runtime.txt").is_file()
    assert not (ROOT / ".binder").exists(), "binder/ and .binder/ exclude each other in repo2docker"
    start = BINDER / "start"
    assert start.is_file() and os.access(start, os.X_OK), "binder/start must be executable (git: mode 100755)"
    assert (ROOT / QUICKSTART).is_file()


def test_torch_is_cpu_only_and_pinned_to_a_matching_torchvision():
    options, reqs, _ = binder_requirements()
    assert f"--extra-index-url {CPU_INDEX}" in options, (
        "torch must come from PyTorch's CPU index (Binder has no GPU; the default wheels carry GBs of CUDA)"
    )
    assert not any(o.startswith(("--index-url", "-i ")) for o in options), (
        "--index-url would replace PyPI, where the other packages come from; use --extra-index-url"
    )
    torch, vision = pinned(reqs["torch"]), pinned(reqs["torchvision"])
    assert torch.local == "cpu" and vision.local == "cpu", "pin the +cpu builds, so that pip never picks a CUDA wheel"
    # torchvision 0.(m+15).p goes with torch 2.m.p (since torch 2.1; torchvision requires exactly that torch)
    assert torch.major == 2 and vision.major == 0
    assert (vision.minor, vision.micro) == (torch.minor + 15, torch.micro), (
        f"torchvision {vision} does not go with torch {torch}: want torchvision 0.{torch.minor + 15}.{torch.micro}"
    )


def test_the_project_itself_is_installed():
    _, _, local = binder_requirements()
    assert local in (["."], ["./"]), (
        "binder/requirements.txt must install the project itself ('.', resolved by pip against the repository root, "
        "where repo2docker runs it); with a binder/ folder repo2docker does not install pyproject.toml on its own"
    )


def test_pins_satisfy_pyproject():
    project = pyproject()["project"]
    _, reqs, _ = binder_requirements()
    deps = [Requirement(d) for d in project["dependencies"]]
    deps += [Requirement(d) for d in project["optional-dependencies"]["lab"]]  # Binder opens JupyterLab
    assert "jupyterlab" in reqs, "Binder opens the quick start in JupyterLab: pin jupyterlab"
    for dep in deps:
        if dep.marker is not None and not dep.marker.evaluate({"python_version": "3.11"}):
            continue
        r = reqs.get(canonicalize_name(dep.name))
        if r is None:
            continue  # not pinned: pip resolves it from the project's own requirements
        v = pinned(r)
        assert dep.specifier.contains(v, prereleases=True), f"binder pins {r} but pyproject.toml asks for {dep}"


FRONT_END = ("jupyterlab", "ipywidgets", "bqplot", "ipykernel")


def test_the_tests_run_the_front_end_releases_binder_pins():
    """binder/requirements.txt says these are the versions the notebooks are tested with: `make test` installs them."""
    from importlib.metadata import version

    _, reqs, _ = binder_requirements()
    makefile = (ROOT / "Makefile").read_text()
    assert all(name in makefile for name in FRONT_END) and "binder/requirements.txt" in makefile
    for name in FRONT_END:
        assert Version(version(name)) == pinned(reqs[name]), (
            f"{name} {version(name)} is installed, Binder pins {reqs[name]}: run `make test` (it installs the pins), "
            "or change the pin to the release the notebooks were tested with"
        )


def test_runtime_python_satisfies_requires_python():
    text = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert m, f"binder/runtime.txt must read python-X.Y, got {text!r}"
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert requires.contains(m.group(1)), f"runtime.txt asks for Python {m.group(1)}, pyproject.toml for {requires}"


def test_torch_pins_are_what_the_makefile_tests():
    """Binder runs the torch release that `make test` (CI) runs the notebooks with."""
    m = re.search(r"^TORCH \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile: no `TORCH ?=` line"
    make = {canonicalize_name(r.name): r for r in map(Requirement, m.group(1).split())}
    _, reqs, _ = binder_requirements()
    for name in ("torch", "torchvision"):
        want = pinned(make[name]).public
        assert pinned(reqs[name]).public == want, (
            f"binder pins {reqs[name]}, the Makefile tests {make[name]}: keep them the same release"
        )


def test_start_sets_torch_threads_and_runs_the_command():
    start = str(BINDER / "start")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        ["bash", start, sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 1
    out = subprocess.run(
        ["bash", start, "sh", "-c", "echo $OMP_NUM_THREADS; exit 3"],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "5"},
        timeout=60,
    )
    assert (out.returncode, out.stdout.strip()) == (3, "5"), "start must keep a preset value and exec the command"


def test_readme_links_binder_to_the_quick_start_in_jupyterlab():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/[^\s)\]]+", readme)
    assert links, "README.md: add the Binder badge and link (mybinder.org/v2/gh/OWNER/REPO/HEAD?urlpath=...)"
    assert "https://mybinder.org/badge_logo.svg" in readme, "README.md: add the Binder badge"
    for link in links:
        urlpath = parse_qs(urlparse(link).query).get("urlpath", [""])[0]
        assert urlpath == f"lab/tree/{QUICKSTART}", f"{link}: want urlpath=lab/tree/{QUICKSTART}"
        assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file()


def repo2docker_command() -> list[str]:
    exe = shutil.which("jupyter-repo2docker", path=str(Path(sys.executable).parent))
    if exe is None:
        msg = "jupyter-repo2docker is not installed (pip install jupyter-repo2docker)"
        if os.environ.get("CI"):
            pytest.fail(msg + ": add it to the [test] extra of pyproject.toml")
        pytest.skip(msg)
    return [exe]


def test_repo2docker_accepts_the_repository(tmp_path):
    """`--no-build` renders the Dockerfile repo2docker would build: it needs neither Docker nor the network."""
    cmd = repo2docker_command() + ["--no-build", "--no-run", str(ROOT)]
    dead = "http://127.0.0.1:9"  # any attempt to reach the network or a Docker daemon fails at once
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, f"repo2docker refused the repository:\n{out.stderr}"
    dockerfile, log = out.stdout, out.stderr
    assert "python=3.11" in log, f"repo2docker did not take Python from binder/runtime.txt:\n{log}"
    install = dockerfile.find('pip install --no-cache-dir -r "binder/requirements.txt"')
    copy_repo = dockerfile.find("src/ ${REPO_DIR}/")
    assert install >= 0, f"repo2docker does not install binder/requirements.txt:\n{dockerfile}"
    assert 0 <= copy_repo < install, "the requirements name the project ('.'): they must install after the copy"
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile, "repo2docker does not run binder/start"
