# Two commands for users (make demo, make test); everything bootstraps .venv itself from python3.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAKE ?= ./lake
PIP_VERSION := 26.3
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test bench lint lock clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "pip==$(PIP_VERSION)" 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -m pip install -q -e ".[all,dev]" 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import capacity_forecaster, prophet, statsforecast, s3fs, moto" 
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/capfc run --lake $(LAKE)

# Debian packages the tests use for real: headless Chromium + driver (dashboard), poppler (PDF text).
SYSTEM_TOOLS := /usr/bin/chromium /usr/bin/chromedriver /usr/bin/pdftotext
$(VENV)/.system-tools: | $(STAMP)
	@if ls $(SYSTEM_TOOLS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium chromium-driver poppler-utils (Debian packages for the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver poppler-utils >/dev/null; \
	else echo "warning: $(SYSTEM_TOOLS) missing and apt-get not usable; browser/PDF tests will be skipped"; fi
	touch $@

# Test files are spread over PYTEST_WORKERS processes (pytest-xdist; whole files per worker, so module
# fixtures are built once): ~6 minutes on 2 cores instead of ~11. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP) $(VENV)/.system-tools
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m pytest -m slow -p no:cacheprovider || test $$? -eq 5
	$(BIN)/python -m benchmarks.run

# checkov lives in its own venv: it pins an older boto3 than the project uses.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: constraints-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-checkov.txt $(CHECKOV_VENV)/bin/python -m pip install -q "pip==$(PIP_VERSION)" checkov 2>&1 | { grep -v "is ignored" || true; }
	touch $@

lint: $(STAMP) $(CHECKOV_VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f deploy/cloudformation.yaml --framework cloudformation \
		--quiet --compact --skip-download

lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	PIP_CONSTRAINT= .lockvenv/bin/python -m pip install -q "pip==$(PIP_VERSION)" ".[all,dev]"
	( head -2 constraints.txt; .lockvenv/bin/python -m pip freeze --exclude-editable | grep -v '^aws-capacity-forecaster' ) > constraints.new
	mv constraints.new constraints.txt && rm -rf .lockvenv

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
