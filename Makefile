# lastcall — the two entry points a new user needs are `make demo` and `make test`; everything else is a step of those.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

VERSION ?= v0.1.0-dev
LDFLAGS := -s -w -X github.com/lastcall-dev/lastcall/internal/version.Version=$(VERSION)
CACHE := $(shell . hack/lib.sh && echo $$LASTCALL_CACHE)
export KUBEBUILDER_ASSETS := $(CACHE)/bin
# make test runs real processes and a real apiserver: a missing dependency must fail the run, not skip tests.
export LASTCALL_REQUIRE_REAL ?= 1

.PHONY: build
build: ## static binaries into bin/
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

.PHONY: deps
deps: ## Debian packages and source-built Kubernetes binaries (cached by stamps)
	hack/install-deps.sh
	hack/build-k8s.sh all

.PHONY: generate
generate: ## deepcopy, CRD and RBAC from markers
	hack/generate.sh

.PHONY: verify-generate
verify-generate: generate
	@git diff --exit-code -- api config charts || { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }

.PHONY: lint
lint: ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out" >&2; exit 1; }
	go vet ./...

.PHONY: test-unit
test-unit: ## unit, golden, real-process and envtest suites
	go test -count=1 ./...

.PHONY: fuzz
fuzz: ## a short fuzz run of every target
	hack/fuzz.sh 10s

.PHONY: bench
bench: ## engine and admission benchmarks against the DESIGN.md bars
	go test -run '^$$' -bench . -benchmem ./pkg/... | tee bench.out

.PHONY: test
test: deps lint test-unit fuzz ## everything CI runs

.PHONY: demo
demo:
	@echo "make demo: not yet (issue 7)"; exit 1
