# The two set-up commands are `make demo` and `make test`; each builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-kafka demo bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check dunning tests bench
	$(BIN)/pytest

# The broker-facing tests (marked `broker`, tests/conftest.py) again, on Apache Kafka (KRaft,
# one node per test; Maven fetches its jars into .cache/kafka/ the first time), with the smoke
# test of that broker.
test-kafka: $(STAMP)
	$(BIN)/pytest --broker=kafka -m broker

demo: $(STAMP)
	$(BIN)/dunning demo

# Every benchmark runs and prints its figures; the target fails if any misses its goal (the
# fuzz run: 100 000 cases at the edge and the engine, any property broken; the memory run:
# the worker's RSS growing more than 1.25x what its state gains per event).
bench: $(STAMP)
	$(BIN)/python -m bench.core; core=$$?; \
	$(BIN)/python -m bench.worker; worker=$$?; \
	$(BIN)/python -m bench.fuzz; fuzz=$$?; \
	$(BIN)/python -m bench.memory; memory=$$?; \
	exit $$(( core || worker || fuzz || memory ))

lint: $(STAMP)
	$(BIN)/ruff check dunning tests bench

clean:
	rm -rf $(VENV) .dunning .pytest_cache .ruff_cache .hypothesis
