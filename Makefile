# The two commands that matter: `make run` (the main job) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CACHE ?= $(HOME)/.cache/dcsp
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := $(CACHE)/bin/kustomize-$(KUSTOMIZE_VERSION)
export KUSTOMIZE

.PHONY: faults bench run demo test test-unit test-e2e lint kafka-start kafka-stop kafka-status clean help \
	podman images containers kustomize compose-up compose-down schemas

help:
	@echo "make run    start Kafka, the four services and a police stand-in; play the demo; Ctrl-C stops"
	@echo "make demo   the same, then exit: 0 only if every expected outcome happened"
	@echo "make test   lint, unit tests and the end-to-end suite on a real Kafka broker"
	@echo "make lint   ruff on all Python code; mypy --strict on services/ and shared/"
	@echo "make kafka-start | kafka-stop | kafka-status   the local single-node broker on 127.0.0.1:9092"
	@echo "make containers install Podman (root), serve its Docker API, build the localhost/dcsp-* images"
	@echo "make compose-up | compose-down   docker-compose.yml under Podman with the local images"
	@echo "make schemas    regenerate shared/schemas (event JSON Schemas, AsyncAPI per service)"
	@echo "make faults     fault injection: 20 kills over 10,000 reports, broker restart, leader kill in a 3-broker cluster, gateway outage; exit 1 on any violation"
	@echo "make bench      end-to-end benchmark against a bare Kafka relay (not part of make test)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m demo.run

demo: $(STAMP)
	$(PY) -m demo.run --exit

# With Podman installed (`make containers`, or .ci/run in CI), the images are (re)built first,
# cached, and the suite runs Kafka and PostgreSQL in containers plus the compose smoke test.
test: $(STAMP) lint $(KUSTOMIZE)
	deploy/kafka/kafka.sh fetch
	@if command -v podman >/dev/null 2>&1; then deploy/podman/setup.sh service && deploy/images/build.sh; \
	else echo "[make] podman not installed: container tests will fail (make containers)"; fi
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

faults: $(STAMP)
	deploy/kafka/kafka.sh fetch
	$(PY) -m faults.run

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	deploy/kafka/kafka.sh fetch
	$(PY) -m bench.run

lint: $(STAMP)
	$(VENV)/bin/ruff check services shared demo tests ops bench faults
	$(VENV)/bin/mypy services shared ops

podman:
	deploy/podman/setup.sh all

images:
	deploy/images/build.sh

containers: podman images

# kustomize from the Go module proxy, built once into the cache.
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "go not found: kustomize is built from the Go module proxy"; exit 1; }
	mkdir -p $(CACHE)/bin/build-$(KUSTOMIZE_VERSION)
	GOBIN=$(CACHE)/bin/build-$(KUSTOMIZE_VERSION) GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(CACHE)/bin/build-$(KUSTOMIZE_VERSION)/kustomize $@

compose-up: $(STAMP) containers
	eval "$$(deploy/images/build.sh env)" && $(VENV)/bin/podman-compose up -d --no-build

compose-down: $(STAMP)
	eval "$$(deploy/images/build.sh env)" && $(VENV)/bin/podman-compose down -v

schemas: $(STAMP)
	$(PY) -m shared.schemas

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
