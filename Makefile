# Two entry points (see README): `make demo` and `make test`. Each creates or reuses the
# virtual environment .venv in this folder and installs the project into it first.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bcdi-stream needs Python >= 3.11")'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@# compile the phasing kernels once, at install (numba caches them beside their source): otherwise the first
	@# reconstruction after an install compiles them in its own time (15-20 s on 2 cores)
	$(VENV)/bin/python -c 'from streamer.phasing.kernels import preload_numba_kernels; preload_numba_kernels()'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bcdi-stream demo --out demo-out

test: $(STAMP)
	./.ci/install-browser
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
