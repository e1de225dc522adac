# Fresh machine: `make demo` sets up .venv and runs the bundled demo; `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo report test lint pytest bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --report results/demo/report.html
	@echo "Outputs in results/demo/, report in results/demo/report.html"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile config/config.yaml

pytest: setup
	$(BIN)/pytest -q

test: lint pytest

bench: setup
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python bench/run_benchmarks.py

clean:
	rm -rf results logs .snakemake
