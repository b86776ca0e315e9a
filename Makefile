# Skiff build, run and test entry points. See README.md.
GO        ?= go
BIN       := bin/skiff
RUN_DIR   ?= /var/lib/skiff
RUN_ADDR  ?= 127.0.0.1
PKGS_UNIT := ./fsm/... ./server/... ./client/... ./cmd/...
# The node runtime: real containers (root; they skip otherwise).
PKGS_NODE := ./runtime/... ./nettools/...
# libcontainer needs cgo, and libseccomp (Debian libseccomp-dev) for seccomp.
GO_BUILD_ENV := CGO_ENABLED=1
GO_TAGS      := seccomp
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: all build run test test-unit test-node test-e2e bench bench-node chaos vet clean

all: build

build:
	$(GO_BUILD_ENV) $(GO) build -tags $(GO_TAGS) -trimpath -o $(BIN) ./cmd/skiff

vet:
	$(GO) vet ./...

# A one-master cluster on $(RUN_ADDR) with the demo workload applied.
# kubectl --kubeconfig $(RUN_DIR)/kubeconfig.yaml get all -A
run: build
	@RUN_DIR=$(RUN_DIR) RUN_ADDR=$(RUN_ADDR) BIN=$(BIN) bash -c '\
	  set -euo pipefail; \
	  ./$$BIN server --data-dir "$$RUN_DIR" --bind-address "$$RUN_ADDR" --node-name "$$(hostname)" & pid=$$!; \
	  trap "kill $$pid 2>/dev/null; wait $$pid" INT TERM EXIT; \
	  for i in $$(seq 1 300); do \
	    if kubectl --kubeconfig "$$RUN_DIR/kubeconfig.yaml" get --raw /readyz >/dev/null 2>&1; then break; fi; sleep 0.1; \
	  done; \
	  kubectl --kubeconfig "$$RUN_DIR/kubeconfig.yaml" apply -f docs/demo/; \
	  echo; echo "Skiff is running. Try: kubectl --kubeconfig $$RUN_DIR/kubeconfig.yaml get configmaps -n demo"; \
	  echo "Press Ctrl-C to stop."; \
	  wait $$pid'

test: build test-unit test-node test-e2e

test-unit:
	$(GO) test -race -timeout 20m $(PKGS_UNIT)

test-node:
	$(GO_BUILD_ENV) $(GO) test -race -tags $(GO_TAGS) -timeout 20m $(PKGS_NODE)

test-e2e:
	SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -timeout 25m ./e2e/...

bench: build
	SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./e2e/bench/ ./fsm/

bench-node:
	$(GO_BUILD_ENV) $(GO) test -tags $(GO_TAGS) -run '^$$' -bench ContainerStart -benchtime 100x -timeout 20m ./runtime/libcontainer/

chaos: build
	SKIFF_BIN=$(CURDIR)/$(BIN) SKIFF_CHAOS=full $(GO) test -count=1 -run Chaos -timeout 15m -v ./e2e/chaos/

clean:
	rm -rf bin
