# fsq_repro — `make test` and `make demo` work on a fresh machine with only python3:
# the first call creates $(VENV), installs the exact pins of requirements.txt and the package (editable).
# VENV may live outside the clone (CI keys it by the hash of requirements.txt: see .ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
HERE_HASH := $(shell printf '%s' "$(CURDIR)" | sha256sum | cut -c1-12)
REQ_STAMP := $(VENV)/.req-$(REQ_HASH)
EXTRA_STAMP := $(VENV)/.extra-$(shell sha256sum requirements-extra.txt | cut -c1-16)
PKG_STAMP := $(VENV)/.pkg-$(HERE_HASH)-$(REQ_HASH)
PYTEST_ARGS ?=
# The suite runs on TEST_WORKERS pytest-xdist workers (one torch thread each; tests/conftest.py); 0 = in-process.
TEST_WORKERS ?= 2

.PHONY: install test demo demo-uvim lint format bench gpu-check soak clean

install: $(PKG_STAMP)

# Re-install only when requirements.txt changes.
$(REQ_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.req-* && touch $@

# Pinned additions (requirements-extra.txt), installed on top without changing the venv's key.
$(EXTRA_STAMP): $(REQ_STAMP) requirements-extra.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-extra.txt
	@rm -f $(VENV)/.extra-* && touch $@

# Editable install of this checkout (re-done when the venv is reused by another clone).
$(PKG_STAMP): $(REQ_STAMP) $(EXTRA_STAMP) pyproject.toml
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.pkg-* && touch $@

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py
	$(PY) scripts/demo_pipeline.py

demo-uvim: install
	$(PY) scripts/demo_uvim.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	@for b in scripts/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# On a GPU machine: the checks only a GPU can answer (scripts/gpu_check.py); exits 2 in one line without CUDA.
gpu-check: install
	$(PY) scripts/gpu_check.py

# Kill a shrunk MaskGIT and UViM pipeline at random times and compare every artifact with an uninterrupted run
# (scripts/soak.py; docs/fault-tolerance.md). KILLS=20 per pipeline by default.
soak: install
	$(PY) scripts/soak.py --kills $(or $(KILLS),20)

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info
