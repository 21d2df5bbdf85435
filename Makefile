# Loom's developer commands. `make test` is the test command; `make check`
# is everything else CI verifies (generated code, vendored protos, lint).

SHELL := /usr/bin/env bash
export GOTOOLCHAIN := local

BUF := go tool -modfile=tools/go.mod buf
# The Go modules of this repository (see docs/development.md, "Module layout").
MODULES := . gen migratorsdk pullrequest
# Where third_party/protovalidate comes from.
PROTOVALIDATE_VERSION := v1.2.2

.PHONY: all deps test check generate check-generated check-vendored lint fmt breaking bench bench-replicas bench-rollout bench-scale faults cluster-faults \
	console console-deps check-console test-console image check-image check-chart

all: check test

## test: every test of every module, with the race detector, then the console's
## (the fault scenarios keep Redis down for 3 minutes: hence the timeout)
test: deps
	@for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test -race -count=1 -timeout 30m ./...) || exit 1; done
	$(MAKE) test-console

## deps: install what the tests need and the machine lacks (redis-server, git, Chromium; see scripts/deps)
deps:
	@scripts/deps

## generate: regenerate gen/ and docs/api.md from proto/
generate:
	rm -rf gen/loom
	$(BUF) generate

## check-generated: fail when gen/ or docs/api.md differs from what proto/ generates
check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen docs/api.md)" ]; then \
		git status --porcelain -- gen docs/api.md; git diff --stat -- gen docs/api.md; \
		echo "gen/ or docs/api.md is stale: run 'make generate' and commit the result"; exit 1; fi

## check-vendored: fail when third_party/protovalidate differs from its pinned release
check-vendored:
	@dir=$$(cd tools && go mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	diff -u $$dir/proto/protovalidate/buf/validate/validate.proto third_party/protovalidate/buf/validate/validate.proto && \
	echo "third_party/protovalidate matches github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION)"

## lint: buf lint, gofmt and go vet
lint:
	$(BUF) lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done

## fmt: format the Go code
fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^gen/')

## breaking: compare the API with main's (run before changing a released .proto)
breaking:
	$(BUF) breaking --against '.git#branch=main'

## console-deps: the console's pinned npm packages (package-lock.json)
console-deps:
	cd console && npm ci --no-audit --no-fund --loglevel=error

## console: regenerate the console's TypeScript clients and rebuild the assets the server embeds
console: console-deps
	cd console && npm run generate && npm run build

## check-console: fail when console/src/gen or the embedded console is stale
check-console: console
	@if [ -n "$$(git status --porcelain -- console/src/gen server/internal/console/dist)" ]; then \
		git status --porcelain -- console/src/gen server/internal/console/dist; \
		echo "the console is stale: run 'make console' and commit the result"; exit 1; fi

## test-console: the console's unit tests (vitest) and its end-to-end tests in Chromium
test-console: console-deps
	cd console && npm test && npm run e2e

## check: everything CI verifies besides the tests
check: check-generated check-vendored lint check-console check-image check-chart

# The image's timestamps: the commit's, so that a commit gives one image.
IMAGE_EPOCH = $(shell git log -1 --format=%ct)
IMAGE_REVISION = $(shell git rev-parse HEAD)
# The production binary as the image carries it: static (the image has no
# C library), no paths of this machine, no symbol tables.
LOOM_STATIC = CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w -buildid='

## image: the container image of loom, out/loom-image.tar (docker load, crane push): static, non-root, console embedded, built with no Docker daemon and no base image (see docs/production.md)
image:
	@mkdir -p out
	$(LOOM_STATIC) -o out/loom ./cmd/loom
	cd tools && go run ./image -binary ../out/loom -console ../server/internal/console/dist \
		-epoch $(IMAGE_EPOCH) -revision $(IMAGE_REVISION) -o ../out/loom-image.tar

## check-image: build the binary and the image twice, fail unless both give the same digest
check-image:
	@mkdir -p out/a out/b
	@set -o pipefail; for d in a b; do \
		$(LOOM_STATIC) -o out/$$d/loom ./cmd/loom && \
		(cd tools && go run ./image -binary ../out/$$d/loom -console ../server/internal/console/dist \
			-epoch $(IMAGE_EPOCH) -revision $(IMAGE_REVISION) -o ../out/$$d/loom-image.tar) | cut -d' ' -f1 > out/$$d/digest || exit 1; \
	done; \
	if [ -s out/a/digest ] && cmp -s out/a/digest out/b/digest && cmp -s out/a/loom-image.tar out/b/loom-image.tar; then echo "image reproducible: $$(cat out/a/digest)"; \
	else echo "two builds of the image differ: $$(cat out/a/digest) $$(cat out/b/digest)"; exit 1; fi
	cd tools && go test -count=1 ./image

## check-chart: helm lint and helm template of deploy/helm/loom, the rendered manifests decoded strictly into the Kubernetes API's types (tools/chart)
check-chart:
	cd tools/chart && go test -count=1 ./...

## faults: the failure scenarios, with their figures (see docs/operators.md, "When things fail")
faults:
	go run ./cmd/loom-faults

## cluster-faults: the cluster's fault scenarios alone (a replica SIGKILLed, a Redis master failed over and killed; make test runs them too; docs/production.md, "Several replicas")
cluster-faults:
	go test -count=1 -run 'TestReplicaKilledAndRedisFailedOver|TestRedisMasterKilled' -v ./internal/clusterenv/

## bench: the storage benchmarks, then Loom against bare Temporal side by side (see docs/development.md, "Performance")
bench:
	go test -run '^$$' -bench . -benchtime 200x ./server/internal/store/
	go run ./cmd/loom-bench

## bench-replicas: the same Runs through one Loom replica, then through three, on the cluster test's topology (PostgreSQL, Temporal, Redis Cluster): Runs/s and the CPU of each part (see docs/production.md, "Several replicas")
bench-replicas:
	go test -run '^$$' -bench BenchmarkReplicas -benchtime 1x -timeout 40m -v ./internal/clusterenv/

## bench-rollout: one rollout against the same Runs started with StartRun, the rollout's own state, its pause latency, 1,000 Candidates in one rollout (see docs/development.md, "Performance")
bench-rollout:
	go run ./cmd/loom-bench -rollout

## bench-scale: the store at fleet scale: Migrations of 100 and 100,000 Candidates discovered, listed by every filter and pair, run and deleted; Redis bytes per Candidate and where they go (see docs/development.md, "Store at scale"; 1,000,000 by hand: -sizes 100,1000000)
bench-scale:
	go run ./cmd/loom-bench -scale
