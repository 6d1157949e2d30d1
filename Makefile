# The two commands at the top of the README: `make serve` and `make test`.
# `serve` installs what serving needs; `test`, `check` and `bench` add the development extras.
VENV ?= .venv
BIN := $(VENV)/bin
HASH := $(shell cksum pyproject.toml | cut -d' ' -f1)
SERVING := $(VENV)/.installed-serve-$(HASH)
DEVELOPING := $(VENV)/.installed-dev-$(HASH)
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: install install-dev serve test check bench bench-compare clean

install: $(SERVING)

install-dev: $(DEVELOPING)

$(SERVING): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) -e .
	rm -f $(VENV)/.installed-serve-*
	touch $@

$(DEVELOPING): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@ $(SERVING)

serve: install
	$(BIN)/taskgate serve

# every core (pytest-xdist), a test file per worker at a time: see tests/conftest.py
PARALLEL := -n auto --dist loadfile

test: install-dev
	$(BIN)/pytest $(PARALLEL)

check: install-dev
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/sleepers.py
	$(BIN)/python bench/openai_api.py

# taskgate beside LiteLLM's proxy and taskiq, in one run (the peers go into bench/.peers)
bench-compare: install-dev
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) data .pytest_cache
