# Thin wrapper over hack/ scripts and go commands.
SHELL := /bin/bash
BIN   ?= bin/ephemera

.PHONY: build demo test unit e2e bench generate verify-generate lint clean

build: ## build bin/ephemera
	go build -o $(BIN) ./cmd/ephemera

demo: ## install what is missing, then create a cluster, use it and delete it
	hack/demo.sh

test: ## install what is missing, then run every test against real binaries
	hack/test.sh

unit: ## only the tests that need no Kubernetes binaries
	go test ./internal/... ./api/...

e2e: build ## only the end-to-end tests (binaries must be installed)
	go test -count=1 -timeout 30m ./test/e2e/...

bench: build ## ephemera next to kwokctl and envtest (QUICK=1: a short run); rewrites docs/benchmarks.md
	QUICK=$(QUICK) hack/bench.sh

generate: ## regenerate deepcopy and CRDs
	go tool controller-gen object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=config/crd/bases

verify-generate: generate ## fail when generated code is stale
	git diff --exit-code -- api config

lint: ## gofmt, go vet and golangci-lint (.golangci.yml; built once into ~/.cache/ephemera/tools)
	hack/lint.sh

clean:
	rm -rf bin
