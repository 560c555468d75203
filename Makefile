# lastcall — a new user needs two commands: `make demo` (see it work) and `make test` (prove it).
# Everything else is a step of those. Expensive steps are cached by stamps in $(CACHE) (outside the clone).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

VERSION ?= v0.1.0-dev
LDFLAGS := -s -w -X github.com/lastcall-dev/lastcall/pkg/version.Version=$(VERSION)
CACHE := $(shell . hack/lib.sh && echo $$LASTCALL_CACHE)
export VERSION
export KUBEBUILDER_ASSETS := $(CACHE)/bin
# make test runs real processes and a real apiserver: a missing dependency must fail the run, not skip tests.
export LASTCALL_REQUIRE_REAL ?= 1

.PHONY: build
build: ## static binaries into bin/: lastcall-webhook (cmd/webhook), lastcall-shim, lastcall
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/lastcall-webhook ./cmd/webhook
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/lastcall-shim ./cmd/lastcall

.PHONY: deps
deps: ## Debian packages, source-built Kubernetes binaries, cert-manager and Traefik (cached by stamps)
	hack/install-deps.sh
	hack/build-k8s.sh all
	hack/build-cert-manager.sh
	hack/build-traefik.sh

.PHONY: generate
generate: ## deepcopy, CRD and RBAC from markers (controller-gen), copied into the chart
	hack/generate.sh

.PHONY: verify-generate
verify-generate: generate ## fail when generated files differ from what is committed
	@git diff --exit-code -- api config charts && test -z "$$(git status --porcelain -- api config charts)" \
	  || { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (hack/staticcheck.sh installs a pinned version)
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out" >&2; exit 1; }
	go vet ./...
	go vet -tags e2e ./test/e2e/...
	cd hack/tools && go vet ./...
	hack/staticcheck.sh

.PHONY: test-unit
test-unit: ## unit, golden, real-process (nginx, php-fpm), envtest and chart suites
	go test -count=1 ./...

.PHONY: fuzz
fuzz: ## a short run of every fuzz target
	hack/fuzz.sh $(or $(FUZZTIME),10s)

.PHONY: bench
bench: ## engine, admission and memory benchmarks (bars: docs/design.md#bars)
	go test -run '^$$' -bench . -benchmem -count $(or $(COUNT),5) ./pkg/mutate ./pkg/webhook ./cmd/lastcall-shim | tee bench.out
	LASTCALL_BENCH=1 go test -count=1 -v -run TestWebhookRSSWithLargeCache ./test/memory | tee -a bench.out

.PHONY: images
images: build ## OCI image tarballs (no Docker): base test images, Traefik and lastcall-webhook/lastcall-shim
	hack/images.sh all

.PHONY: cluster-up
cluster-up: deps images ## the local single-node cluster (root; see docs/cluster.md)
	hack/cluster/local.sh up

.PHONY: cluster-down
cluster-down: ## stop the local cluster and clean the machine
	hack/cluster/local.sh down

.PHONY: e2e
e2e: deps images ## end-to-end suite on a real cluster (local by default; KIND=1 or E2E_KUBECONFIG=...)
	go test -count=1 -tags e2e -timeout 50m -v ./test/e2e/...

.PHONY: test
test: deps lint verify-generate test-unit fuzz e2e ## everything CI runs

.PHONY: demo
demo: deps images ## rollout and scale-down of nginx + php-fpm behind Traefik under load, without and with lastcall: table + pictures (cluster left running)
	go run -tags e2e ./test/e2e/demo $(DEMO_ARGS)

.PHONY: demo-down
demo-down: ## remove everything make demo created (local cluster: hack/cluster/local.sh down)
	go run -tags e2e ./test/e2e/demo -down

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'
