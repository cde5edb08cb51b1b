# The two commands a newcomer needs:
#   make demo   - run the main job (builds .venv on first use)
#   make test   - run the test suite (builds .venv on first use)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test test-lavadl bench clean

env:
	@./scripts/setup_env.sh

demo: env
	$(VENV)/bin/ilif-lava pipeline

test: env
	$(PY) -m pytest -q $(PYTEST_ARGS)

# lava-dl's own netx test suite, with stock netx and with ILIFNetwork in its place (about 6 minutes)
test-lavadl: env
	ILIF_LAVA_LAVADL_SUITE=1 ILIF_LAVA_LAVADL_STOCK=1 $(PY) -m pytest -q tests/test_lavadl_netx_suite.py

bench: env
	$(PY) -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
