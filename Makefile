# The two commands a newcomer needs are `make run` and `make test`; both install what
# they need on first use.
.DEFAULT_GOAL := help
VENV := .venv/bin

.PHONY: help run test test-unit lint format bootstrap services-stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

bootstrap: ## make .venv and install wangge with its dev tools
	@./scripts/bootstrap.sh

run: bootstrap ## start PostGIS, the broker, load Baoji's grids and serve (wangge up)
	$(VENV)/wangge up

test: bootstrap ## lint, type-check (tests included) and run the whole suite against real services
	@./scripts/test-tools.sh
	$(VENV)/wangge services start
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	./scripts/test-suite.sh

# The fast lane runs each property test on 10 examples instead of its hundreds, and
# collects tests/unit alone: importing the integration modules costs seconds by itself.
test-unit: bootstrap ## the fast lane: no PostGIS, no broker, 10 examples per property test
	$(VENV)/pytest -m "not integration" --max-examples 10 -q tests/unit

lint: bootstrap ## ruff and mypy (the packages and the tests)
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

format: bootstrap ## apply ruff's fixes and formatting
	$(VENV)/ruff check --fix .
	$(VENV)/ruff format .

services-stop: bootstrap ## stop the local broker that wangge started
	$(VENV)/wangge services stop

clean: ## remove the virtual environment and caches
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
