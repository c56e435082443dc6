# btrstore: see README.md. Every target installs what it needs (as root) or
# says which command would.
GO      ?= go
SHELL   := /bin/bash
APT_PKGS := btrfs-progs gcc linux-libc-dev
ROOT    := $(shell id -u)

.PHONY: deps deps-s3 test lint vmtest demo demo-fleet demo-vm example-snapshot fuzz bench soak

# deps installs the packages the tests use (mkfs.btrfs and btrfs for the
# fixture and cross-checks, a C compiler and linux/btrfs.h for the header
# oracle), or prints the command when not root; and deps-s3.
deps: deps-s3
	@missing=""; \
	command -v mkfs.btrfs >/dev/null || missing="$$missing btrfs-progs"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -f /usr/include/linux/btrfs.h ] || missing="$$missing linux-libc-dev"; \
	if [ -n "$$missing" ]; then \
		if [ "$(ROOT)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing:$$missing; run: sudo apt-get install -y$$missing"; \
		fi; \
	fi

# deps-s3 installs versitygw, the S3 server the remote/s3 tests start
# (internal/s3test), into $(go env GOPATH)/bin unless that version is there:
# go install builds it from the Go module proxy (1.5 to 7 minutes here).
VERSITYGW_VERSION := v1.8.0
deps-s3:
	@bin=$$($(GO) env GOPATH | cut -d: -f1)/bin/versitygw; \
	if ! $(GO) version -m "$$bin" 2>/dev/null | grep -q "mod[[:space:]]*github.com/versity/versitygw[[:space:]]*$(VERSITYGW_VERSION)[[:space:]]"; then \
		echo "installing versitygw $(VERSITYGW_VERSION) (go install, a few minutes)"; \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

# test runs every package's tests, with the race detector. Privileged tests
# need root; set BTRFS_TEST_REQUIRE=1 to make them fail rather than skip
# when they cannot run.
test: deps lint
	$(GO) test -race -count=1 ./...

LINT_ARCHES ?= 386 arm arm64 ppc64le s390x riscv64 mips64le loong64
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags soak ./store/
	@# The ABI differs per architecture (ioctl/ioc_*.go, ioctl/layout_*.go,
	@# statfs and stat field types): vet, which type-checks the tests too,
	@# for each architecture btrfs runs on. Cross builds have no cgo, so the
	@# amd64-only header oracle is left out there.
	@set -e; for arch in $(LINT_ARCHES); do \
		echo "GOARCH=$$arch $(GO) vet ./..."; \
		GOARCH=$$arch CGO_ENABLED=0 $(GO) vet ./...; \
		GOARCH=$$arch CGO_ENABLED=0 $(GO) vet -tags soak ./store/; \
	done

# demo runs the main job, examples/builder, on its embedded default build.
# As root it keeps a btrfs image under ~/.local/state/btrstore-builder,
# mounted only while it runs; run it twice to see every step cached.
demo: deps
	$(GO) run ./examples/builder

# demo-fleet: two stores on two loop-mounted btrfs ("hosts") and a bucket
# on versitygw between them (a directory without it): host A builds the
# builder's default spec and exports it, host B imports the last result
# and builds a step on top, with timings and bytes (examples/fleet/demo.sh).
demo-fleet: deps
	GO=$(GO) ./examples/fleet/demo.sh

# example-snapshot runs examples/snapshot on a throw-away loop-mounted btrfs.
example-snapshot: deps
	@if [ "$(ROOT)" != 0 ]; then echo "needs root (it mounts a loop device)"; exit 1; fi
	@set -e; d=$$(mktemp -d); \
	trap 'umount "$$d/mnt" 2>/dev/null; rm -rf "$$d"' EXIT; \
	truncate -s 1G "$$d/image"; mkfs.btrfs -q "$$d/image" >/dev/null; mkdir "$$d/mnt"; \
	mount -o loop "$$d/image" "$$d/mnt"; \
	$(GO) run ./examples/snapshot "$$d/mnt"

# vmtest runs the privileged tests inside qemu (TCG: no root, no KVM) with a
# btrfs disk, once per kernel of VMTEST_KERNELS (default 6.1,6.12), fetched with
# apt-get download into ~/.cache/btrstore-vmtest.
# Narrow it with e.g. make vmtest VMTEST_ARGS='-v -run TestBuild ./store'.
VMTEST_ARGS ?=
vmtest:
	@command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu; run: sudo apt-get install -y --no-install-recommends qemu-system-x86 btrfs-progs xz-utils"; exit 1; }
	$(GO) run ./test/vm $(VMTEST_ARGS)

# demo-vm runs the builder's demo (the embedded build, twice) inside the VM:
# the way to see it without root.
demo-vm:
	@command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu; run: sudo apt-get install -y --no-install-recommends qemu-system-x86 btrfs-progs xz-utils"; exit 1; }
	$(GO) run ./test/vm -kernels 6.12 -v -run TestDemo ./examples/builder

# fuzz runs each fuzz target for FUZZTIME on top of its seed corpus
# (testdata/fuzz/<FuzzName>); go test takes one -fuzz target per run.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/mountinfo
	$(GO) test -run '^$$' -fuzz '^FuzzSearchItems$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzParseRootRef$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzParseRootItem$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzValidID$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzLockModel$$' -fuzztime $(FUZZTIME) ./cache
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./sendstream
	$(GO) test -run '^$$' -fuzz '^FuzzAttributes$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./sendstream
	$(GO) test -run '^$$' -fuzz '^FuzzDump$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./sendstream
	$(GO) test -run '^$$' -fuzz '^FuzzBtrfsLZO$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./receive

# bench compares btrstore, interleaved, with the bare ioctl sequence,
# github.com/dennwc/btrfs and the btrfs command forked per operation (with
# and without sudo -n, as obuilder runs it: sudo is installed if missing),
# checks the performance targets, and writes docs/PERFORMANCE.md and
# docs/performance.svg. Root (it mounts loop devices), 5 to 8 minutes.
# BENCHFLAGS=-quick: a smoke test of the tooling in under 2 minutes, written
# to a temporary directory; -rounds N for steadier medians; -strict to fail
# on a missed target. To redraw only the chart from the committed numbers
# (no root, runs nothing): go run ./internal/cmd/benchreport -chart-from docs/PERFORMANCE.md
BENCHFLAGS ?=
bench: deps
	@if [ "$(ROOT)" != 0 ]; then echo "needs root (the benchmarks mount loop devices)"; exit 1; fi
	@command -v sudo >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
	GO=$(GO) $(GO) run ./internal/cmd/benchreport $(BENCHFLAGS)

# soak runs TestSoak (store/soak_test.go, build tag soak; not part of test):
# 8 builders, shared caches, deletes and CompleteDeletes in a worker process
# that is SIGKILLed every 1-5 s, with every invariant checked after each
# restart. Needs root (loop-mounted btrfs). SOAK_DURATION=2m make soak
SOAK_DURATION ?= 30m
soak: deps
	$(GO) test -tags soak -run '^TestSoak$$' -timeout 0 -count=1 -v ./store/ -soak.duration=$(SOAK_DURATION)
