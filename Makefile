# The two commands that matter: `make run` (the main job) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test test-unit test-e2e lint kafka-start kafka-stop kafka-status clean help

help:
	@echo "make run    start Kafka, the four services and a police stand-in; play the demo; Ctrl-C stops"
	@echo "make demo   the same, then exit: 0 only if every expected outcome happened"
	@echo "make test   lint, unit tests and the end-to-end suite on a real Kafka broker"
	@echo "make lint   ruff on all Python code; mypy --strict on services/ and shared/"
	@echo "make kafka-start | kafka-stop | kafka-status   the local single-node broker on 127.0.0.1:9092"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m demo.run

demo: $(STAMP)
	$(PY) -m demo.run --exit

test: $(STAMP) lint
	deploy/kafka/kafka.sh fetch
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check services shared demo tests
	$(VENV)/bin/mypy services shared

kafka-start:
	deploy/kafka/kafka.sh start

kafka-stop:
	deploy/kafka/kafka.sh stop

kafka-status:
	deploy/kafka/kafka.sh status

clean:
	-deploy/kafka/kafka.sh stop
	-KAFKA_PORT=19092 deploy/kafka/kafka.sh stop
	rm -rf var .local .pytest_cache .mypy_cache .ruff_cache
