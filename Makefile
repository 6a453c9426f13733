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

# The broker-facing tests again, on Apache Kafka (KRaft, one node per test; the jars are fetched
# by Maven into .cache/kafka/ the first time), and the smoke test of that broker.
KAFKA_TESTS := tests/streams/test_apache_kafka.py tests/agents/test_worker.py \
	tests/agents/test_crash.py tests/agents/test_order.py tests/agents/test_ledger_e2e.py \
	tests/agents/test_commands.py tests/demo/test_demo.py tests/ledger/test_sink.py

test-kafka: $(STAMP)
	$(BIN)/pytest --broker=kafka $(KAFKA_TESTS)

demo: $(STAMP)
	$(BIN)/dunning demo

# Every benchmark runs and prints its figures; the target fails if any misses its goal (the
# fuzz run: 100 000 cases at the edge and the engine, any property broken).
bench: $(STAMP)
	$(BIN)/python -m bench.core; core=$$?; \
	$(BIN)/python -m bench.worker; worker=$$?; \
	$(BIN)/python -m bench.fuzz; fuzz=$$?; \
	exit $$(( core || worker || fuzz ))

lint: $(STAMP)
	$(BIN)/ruff check dunning tests bench

clean:
	rm -rf $(VENV) .dunning .pytest_cache .ruff_cache .hypothesis
