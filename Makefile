# Skiff build, run and test entry points. See README.md.
GO        ?= go
BIN       := bin/skiff
RUN_DIR   ?= /var/lib/skiff
RUN_ADDR  ?= 127.0.0.1
PKGS_UNIT := ./fsm/... ./server/... ./client/... ./cmd/... ./agent/... ./gossip/...
# The node runtime: real containers (root; they skip otherwise).
PKGS_NODE := ./runtime/... ./nettools/...
# libcontainer needs cgo, and libseccomp (Debian libseccomp-dev) for seccomp.
GO_BUILD_ENV := CGO_ENABLED=1
GO_TAGS      := seccomp
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all deps build release run ui ui-check test test-unit test-node test-e2e bench bench-node chaos conformance fuzz vet clean

all: build

# What the build needs from the OS (gcc, libseccomp-dev, ...): installed
# as root on Debian when missing, else named. .ci/run calls the same script.
deps:
	@.ci/deps

# The small shim/container-init binary (cmd/skiff-shim) is built first, for
# the same OS and architecture, and embedded in skiff (runtime/shimbin,
# tag shimembed); skiff unpacks it into the data dir at start.
SHIM_EMBED := runtime/shimbin/skiff-shim
SHIM_BUILD  = $(GO) build -tags $(GO_TAGS) -trimpath -ldflags "-s -w" -o $(SHIM_EMBED) ./cmd/skiff-shim

build: deps
	$(GO_BUILD_ENV) $(SHIM_BUILD)
	$(GO_BUILD_ENV) $(GO) build -tags $(GO_TAGS),shimembed -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/skiff

# Release binaries for linux/amd64 and linux/arm64 (cgo with libseccomp:
# the arm64 one with Debian's cross toolchain and libseccomp-dev:arm64),
# with SHA256SUMS; the arm64 binary's `skiff version` is run under
# qemu-user as a check. Output in dist/.
release:
	@.ci/deps release
	@mkdir -p dist
	$(GO_BUILD_ENV) GOOS=linux GOARCH=amd64 $(SHIM_BUILD)
	$(GO_BUILD_ENV) GOOS=linux GOARCH=amd64 $(GO) build -tags $(GO_TAGS),shimembed -trimpath -ldflags "$(LDFLAGS)" -o dist/skiff-linux-amd64 ./cmd/skiff
	$(GO_BUILD_ENV) GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc \
	  PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	  $(SHIM_BUILD)
	$(GO_BUILD_ENV) GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc \
	  PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	  $(GO) build -tags $(GO_TAGS),shimembed -trimpath -ldflags "$(LDFLAGS)" -o dist/skiff-linux-arm64 ./cmd/skiff
	cd dist && sha256sum skiff-linux-amd64 skiff-linux-arm64 > SHA256SUMS && cat SHA256SUMS
	@# The arm64 glibc and libseccomp come from Debian multiarch (libc6:arm64,
	@# libseccomp2:arm64), where the binary's loader looks: no QEMU_LD_PREFIX
	@# (mixing in the cross toolchain's libc hung the program).
	@qemu=$$(command -v qemu-aarch64-static || command -v qemu-aarch64); \
	  echo "$$qemu dist/skiff-linux-arm64 version"; \
	  timeout 300 $$qemu dist/skiff-linux-arm64 version

vet:
	$(GO) vet ./...

# A one-node cluster on $(RUN_ADDR): a master with its embedded agent
# (containers on libcontainer, root), the demo image built from
# docs/demo/hello and dropped in the node's image directory (imported at
# start, no registry), and the demo workload applied.
run: build
	@RUN_DIR=$(RUN_DIR) RUN_ADDR=$(RUN_ADDR) BIN=$(BIN) GO="$(GO)" bash -c '\
	  set -euo pipefail; \
	  CGO_ENABLED=0 $$GO build -trimpath -o bin/hello ./docs/demo/hello; \
	  mkdir -p "$$RUN_DIR/agent/images"; \
	  ./$$BIN demo-image --binary bin/hello --ref skiff.local/demo:1 --out "$$RUN_DIR/agent/images/skiff-demo.tar"; \
	  node="$$(hostname | tr A-Z a-z)"; \
	  ./$$BIN server --data-dir "$$RUN_DIR" --bind-address "$$RUN_ADDR" --node-name "$$node" & pid=$$!; \
	  trap "kill $$pid 2>/dev/null; wait $$pid" INT TERM EXIT; \
	  k="kubectl --kubeconfig $$RUN_DIR/kubeconfig.yaml"; \
	  alive() { kill -0 $$pid 2>/dev/null && return 0; rc=0; wait $$pid || rc=$$?; echo "make run: skiff server exited with status $$rc (its error is above); Skiff is not running" >&2; exit 1; }; \
	  for i in $$(seq 1 300); do \
	    alive; if $$k get --raw /readyz >/dev/null 2>&1; then break; fi; sleep 0.1; \
	  done; \
	  for i in $$(seq 1 300); do \
	    alive; if $$k get node "$$node" >/dev/null 2>&1; then break; fi; sleep 0.1; \
	  done; \
	  $$k wait --for=condition=Ready node/"$$node" --timeout=60s; alive; \
	  $$k apply -f docs/demo/; \
	  $$k rollout status -n demo deploy/hello --timeout=120s || true; alive; \
	  echo; echo "Skiff is running: one node, the demo Deployment and Service in namespace demo."; \
	  echo "  export KUBECONFIG=$$RUN_DIR/kubeconfig.yaml"; \
	  echo "  kubectl get nodes,pods -A -o wide"; \
	  echo "  kubectl logs -n demo deploy/hello"; \
	  echo "  kubectl exec -n demo deploy/hello -- /hello get http://hello.demo.svc.cluster.local:8080/"; \
	  echo "  kubectl port-forward -n demo svc/hello 8080:8080 &"; \
	  echo "  until curl -fsS localhost:8080; do sleep 0.2; done"; \
	  echo "Press Ctrl-C to stop (the containers keep running; the next start adopts them)."; \
	  wait $$pid'

test: build ui-check test-unit test-node test-e2e

# The dashboard (server/dashboard, docs/dashboard.md): `make ui` installs
# the pinned npm packages and bundles web/src into the committed dist/;
# `make ui-check` type-checks (tsc, strict) and fails if dist/ is not what
# the sources give. `make build` uses the committed bundle: no node.
UI_WEB := server/dashboard/web
ui: deps
	cd $(UI_WEB) && npm ci --no-audit --no-fund
	$(GO) generate ./server/dashboard

ui-check: deps
	cd $(UI_WEB) && npm ci --no-audit --no-fund && npx tsc --noEmit
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd server/dashboard && $(GO) run ./build -web web -out "$$tmp/dist") && \
	  if ! diff -r server/dashboard/dist "$$tmp/dist"; then \
	    echo "make ui-check: server/dashboard/dist is not the bundle of web/src: run make ui and commit dist/" >&2; exit 1; fi

test-unit:
	$(GO) test -race -timeout 20m $(PKGS_UNIT)

test-node: deps
	$(GO_BUILD_ENV) $(GO) test -race -tags $(GO_TAGS) -timeout 20m $(PKGS_NODE)

test-e2e:
	SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -timeout 35m ./e2e/...

# nginx is BenchmarkIngress's peer: installed when missing (as root on
# Debian); without it the benchmark logs why and skips only its figures.
bench: build
	@.ci/deps bench || echo "make bench: nginx could not be installed; BenchmarkIngress skips the nginx figures" >&2
	SKIFF_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./e2e/bench/ ./fsm/ ./server/snapshot/ ./agent/stats/ ./agent/shipper/

# Every decoder of network input under Go's fuzzer (issue 15), each target
# for FUZZTIME; seeds and crashers in <package>/testdata/fuzz/<target>.
# FUZZ_TARGETS lists package:target pairs (docs/security.md).
FUZZTIME     ?= 20s
FUZZ_TARGETS := \
	server/apiserver:FuzzDecodeBody server/apiserver:FuzzJSONPatch server/apiserver:FuzzMergePatch \
	server/apiserver:FuzzStrategicMergePatch server/apiserver:FuzzListOptions server/apiserver:FuzzServeHTTP \
	server/pki:FuzzParseToken server/pki:FuzzCheckNodeCSR server/auth:FuzzAuthenticate \
	server:FuzzJoinRequest server:FuzzBootstrapResponse \
	gossip:FuzzParseKeyring gossip:FuzzParseJoinInfo gossip:FuzzMemberTags \
	fsm:FuzzEntry fsm:FuzzRestore
fuzz:
	@set -e; for pt in $(FUZZ_TARGETS); do \
	  p=$${pt%%:*}; t=$${pt#*:}; \
	  echo "== ./$$p $$t ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./$$p/; \
	done

# Container start latency (RunPodSandbox + Create + Start → running), root.
bench-node:
	$(GO_BUILD_ENV) $(GO) test -tags $(GO_TAGS) -run '^$$' -bench ContainerStart -benchtime 100x -timeout 20m ./runtime/libcontainer/

chaos: build
	SKIFF_BIN=$(CURDIR)/$(BIN) SKIFF_CHAOS=full $(GO) test -count=1 -run Chaos -timeout 15m -v ./e2e/chaos/

# The upstream Kubernetes conformance suite (e2e.test of k8s.io/kubernetes,
# built from the Go module proxy by the nested module e2e/conformance) on a
# cluster of one master and two agents in test network namespaces, as root;
# long, not part of `make test`. Settings and figures: docs/CONFORMANCE.md.
conformance:
	GO="$(GO)" e2e/conformance/run.sh

clean:
	rm -rf bin dist $(SHIM_EMBED)
