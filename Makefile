# The two commands a newcomer needs:
#   make demo   - run the main job (builds .venv on first use)
#   make test   - run the test suite (builds .venv on first use)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test bench clean

env:
	@./scripts/setup_env.sh

demo: env
	$(VENV)/bin/ilif-lava pipeline

test: env
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: env
	$(PY) -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
