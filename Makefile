# The two commands of the README: `make run` and `make test`. Both build .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/town

.PHONY: run test install bench clean lint

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The local CPU wheel; a GPU user installs a CUDA torch first (README) and this line is a no-op.
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q "torch>=2.4"
	$(BIN)/python -m pip install -q -e ".[test]"
	# Compile the numba kernels once at install time, never on a user's first call.
	$(BIN)/python -m jwmsim.precompile
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/jwmsim run-main out=$(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
