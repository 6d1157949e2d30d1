# The two commands at the top of the README: `make serve` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install serve test check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

serve: install
	$(BIN)/taskgate serve

test: install
	$(BIN)/pytest

check: install
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/sleepers.py
	$(BIN)/python bench/openai_api.py

clean:
	rm -rf $(VENV) data .pytest_cache
