# make lab: set up and open the quick-start notebook in JupyterLab.   make test: set up and run every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# torch and torchvision as pip finds them (a CPU-only machine may add: --index-url https://download.pytorch.org/whl/cpu)
TORCH ?= torch==2.14.1 torchvision==0.29.1
# the Chromium the browser tests drive (tests/jupyter_browser.py reads LRWIDGET_CHROMIUM)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# one stamp per TORCH value: asking for another torch build installs it
TORCH_STAMP := $(VENV)/.torch-$(shell printf '%s' '$(TORCH)' | md5sum | cut -c1-12)

.PHONY: setup lab test bench chromium docs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(TORCH_STAMP): | $(PY)
	$(PY) -m pip install -q $(TORCH)
	rm -f $(VENV)/.torch-*
	touch $@

# lab: the package and JupyterLab only; test: also pytest, Playwright, fastai, torch-lr-finder, repo2docker
$(VENV)/.lab: pyproject.toml $(TORCH_STAMP)
	$(PY) -m pip install -q -e '.[lab]'
	touch $@

# the tests run the notebooks with the front-end releases Binder pins (binder/requirements.txt)
FRONT_END_PINS = $(shell grep -E '^(jupyterlab|ipywidgets|bqplot|ipykernel)==' binder/requirements.txt)

$(VENV)/.test: pyproject.toml binder/requirements.txt $(TORCH_STAMP)
	$(PY) -m pip install -q -e '.[test]' $(FRONT_END_PINS)
	touch $@

setup: $(VENV)/.test

chromium:
	@[ -x "$(CHROMIUM)" ] || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

lab: $(VENV)/.lab
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/quickstart.ipynb

# lint, format, the import contracts and the docs build are checked first: CI fails on any of them
test: $(VENV)/.test chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mkdocs build --strict
	LRWIDGET_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

$(VENV)/.docs: pyproject.toml $(TORCH_STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

# the manual as a site in site/; --strict: a broken link or API reference fails
docs: $(VENV)/.docs
	$(PY) -m mkdocs build --strict

bench: $(TORCH_STAMP)
	$(PY) -m pip install -q -e '.[lab]'
	-$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py
