# kogata — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kogata-installed
THREADS ?= 2
DEMO_OUT ?= demo-out

.PHONY: demo test test-slow test-unit lint setup clean-venv browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "› installing kogata and its dependencies into $(VENV) (torch 2.13.0 CPU; llama-cpp-python builds once, ~5 min)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/kogata models pull smollm2-135m
	$(BIN)/kogata optimize examples/support-desk-en.yaml --out $(DEMO_OUT)

lint: $(STAMP)  # ruff (ruff.toml) and the one-way layer contract (.importlinter)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# Debian's chromium for the web UI's browser tests (tests/ui; Playwright drives it, `playwright install` is never used),
# with Japanese fonts for the screenshots. Installed once, as root; otherwise the browser tests fail and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-ipafont-gothic >/dev/null; } || \
	  echo "warning: chromium is not installed (needs root: apt-get install chromium chromium-driver fonts-ipafont-gothic)"

test: lint browser
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -m "not slow"

test-slow: $(STAMP)  # also the Gemma-3-270M integration tests (pulls ~250 MB, several minutes)
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
