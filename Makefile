# kogata — two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kogata-installed
THREADS ?= 2
DEMO_OUT ?= demo-out

.PHONY: demo test test-slow test-unit lint setup clean-venv browser llama-tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "› installing kogata and its dependencies into $(VENV) (torch 2.13.0 CPU; llama-cpp-python builds once, ~5 min)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP) llama-tools
	$(BIN)/kogata models pull smollm2-135m
	$(BIN)/kogata optimize examples/support-desk-en.yaml --out $(DEMO_OUT)

# llama.cpp's own tools — llama-quantize, llama-imatrix, llama-perplexity, llama-server — built with cmake from the
# llama.cpp tree vendored in the pinned llama-cpp-python sdist (the same llama.cpp the llamacpp runtime runs), into
# $(LLAMA_TOOLS_DIR)/bin (found by kogata.methods.gguf.llamacpp_tools; KOGATA_LLAMA_TOOLS overrides). Built once
# (~7 min on 2 cores); the stamp names the version, so a rerun is free and a version bump in pyproject.toml rebuilds.
LLAMA_CPP_PYTHON  := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
LLAMA_TOOLS_DIR   := $(VENV)/llama.cpp-tools
LLAMA_TOOLS       := llama-quantize llama-imatrix llama-perplexity llama-server
LLAMA_TOOLS_STAMP := $(LLAMA_TOOLS_DIR)/.built-$(LLAMA_CPP_PYTHON)
LLAMA_TOOLS_WORK  := $(LLAMA_TOOLS_DIR)/work
LLAMA_SDIST_DIR   := $(LLAMA_TOOLS_WORK)/llama_cpp_python-$(LLAMA_CPP_PYTHON)

$(LLAMA_TOOLS_STAMP): | $(STAMP)
	@echo "› building $(LLAMA_TOOLS) from llama-cpp-python $(LLAMA_CPP_PYTHON)'s vendored llama.cpp (once, ~7 min on 2 cores)"
	@mkdir -p $(LLAMA_TOOLS_WORK) $(LLAMA_TOOLS_DIR)/bin
	@test -f $(LLAMA_TOOLS_WORK)/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz || \
	  $(BIN)/python -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
	    llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(LLAMA_TOOLS_WORK)
	@test -d $(LLAMA_SDIST_DIR) || tar -xzf $(LLAMA_TOOLS_WORK)/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $(LLAMA_TOOLS_WORK)
	@commit=$$(grep -m1 -o 'llama.cpp@[0-9a-f]*' $(LLAMA_SDIST_DIR)/CHANGELOG.md | cut -d@ -f2); \
	cmake -S $(LLAMA_SDIST_DIR)/vendor/llama.cpp -B $(LLAMA_TOOLS_WORK)/build -DCMAKE_BUILD_TYPE=Release \
	  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	  -DLLAMA_BUILD_COMMIT=$${commit:-unknown} >$(LLAMA_TOOLS_WORK)/cmake-configure.log 2>&1 || \
	  { tail -20 $(LLAMA_TOOLS_WORK)/cmake-configure.log; exit 1; }; \
	nice -n 10 cmake --build $(LLAMA_TOOLS_WORK)/build -j$(THREADS) --target $(LLAMA_TOOLS) >$(LLAMA_TOOLS_WORK)/cmake-build.log 2>&1 || \
	  { tail -30 $(LLAMA_TOOLS_WORK)/cmake-build.log; exit 1; }; \
	for t in $(LLAMA_TOOLS); do cp $(LLAMA_TOOLS_WORK)/build/bin/$$t $(LLAMA_TOOLS_DIR)/bin/ || exit 1; done; \
	printf '{"llama_cpp_python": "%s", "llama_cpp_commit": "%s", "sdist_sha256": "%s"}\n' "$(LLAMA_CPP_PYTHON)" "$${commit:-unknown}" \
	  "$$(sha256sum $(LLAMA_TOOLS_WORK)/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz | cut -d' ' -f1)" >$(LLAMA_TOOLS_DIR)/source.json
	@rm -rf $(LLAMA_TOOLS_WORK)
	@touch $@

llama-tools: $(LLAMA_TOOLS_STAMP)

lint: $(STAMP)  # ruff (ruff.toml) and the one-way layer contract (.importlinter)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# Debian's chromium for the web UI's browser tests (tests/ui; Playwright drives it, `playwright install` is never used),
# with Japanese fonts for the screenshots. Installed once, as root; otherwise the browser tests fail and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-ipafont-gothic >/dev/null; } || \
	  echo "warning: chromium is not installed (needs root: apt-get install chromium chromium-driver fonts-ipafont-gothic)"

test: lint browser llama-tools
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -m "not slow"

test-slow: $(STAMP) llama-tools  # also the Gemma-3-270M integration tests (pulls ~250 MB, several minutes)
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

test-unit: $(STAMP) llama-tools
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
