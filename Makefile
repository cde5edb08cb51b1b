# The two commands a newcomer needs:
#   make demo   - run the main job (builds .venv on first use)
#   make test   - run the test suite (builds .venv on first use)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest worker processes for make test (pytest-xdist; whole test files per worker, as module fixtures expect)
TEST_WORKERS ?= 2

.PHONY: env demo test test-lavadl bench clean

env:
	@./scripts/setup_env.sh

demo: env
	$(VENV)/bin/ilif-lava pipeline

test: env
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# lava-dl's own netx test suite alone, with stock netx and with ILIFNetwork in its place (also part of make test)
test-lavadl: env
	$(PY) -m pytest -q tests/test_lavadl_netx_suite.py

bench: env
	$(PY) -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
