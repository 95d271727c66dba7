# make lab: set up and open the quick-start notebook in JupyterLab.   make test: set up and run every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# torch and torchvision as pip finds them; on the project's machines these releases lie on disk.
TORCH ?= torch==2.14.1 torchvision==0.29.1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup lab test bench chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

lab: setup
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/quickstart.ipynb

test: setup chromium
	$(PY) -m pytest -q

bench: setup
	-$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py
