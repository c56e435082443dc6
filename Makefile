# btrstore: see README.md. Every target installs what it needs (as root) or
# says which command would.
GO      ?= go
SHELL   := /bin/bash
APT_PKGS := btrfs-progs gcc linux-libc-dev
ROOT    := $(shell id -u)

.PHONY: deps deps-s3 deps-cross deps-lint test lint vmtest vmtest-cross vmtest-consumer demo demo-fleet demo-vm example-snapshot fuzz bench soak

# MODULES are the directories of the repository's modules: the library (.),
# whose go.mod requires golang.org/x/sys and go-logr/logr only, and the
# nested modules that keep other dependencies out of its graph: remote/s3
# (minio-go), receive/zstd (klauspost/compress) and tools (the bench
# report and the dennwc/btrfs comparison). test, lint and fuzz run in each.
MODULES := $(shell find . -name go.mod -not -path './.git/*' -not -path '*/testdata/*' -printf '%h\n' | sort)

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
# (remote/s3/s3test), into $(go env GOPATH)/bin unless that version is there:
# go install builds it from the Go module proxy (1.5 to 7 minutes here).
VERSITYGW_VERSION := v1.8.0
deps-s3:
	@bin=$$($(GO) env GOPATH | cut -d: -f1)/bin/versitygw; \
	if ! $(GO) version -m "$$bin" 2>/dev/null | grep -q "mod[[:space:]]*github.com/versity/versitygw[[:space:]]*$(VERSITYGW_VERSION)[[:space:]]"; then \
		echo "installing versitygw $(VERSITYGW_VERSION) (go install, a few minutes)"; \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

# deps-lint installs staticcheck at STATICCHECK_VERSION into
# $(go env GOPATH)/bin unless that version is there (go install, from the Go
# module proxy).
STATICCHECK_VERSION := v0.8.2
STATICCHECK = $$($(GO) env GOPATH | cut -d: -f1)/bin/staticcheck
deps-lint:
	@bin=$(STATICCHECK); \
	if ! $(GO) version -m "$$bin" 2>/dev/null | grep -q "mod[[:space:]]*honnef.co/go/tools[[:space:]]*$(STATICCHECK_VERSION)[[:space:]]"; then \
		echo "installing staticcheck $(STATICCHECK_VERSION) (go install)"; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

# test runs every package's tests in every module, with the race detector,
# and fails if any module's did (after running them all). Privileged tests
# need root; set BTRFS_TEST_REQUIRE=1 to make them fail rather than skip
# when they cannot run. tools/modgraph checks that a consumer of the
# library gets only x/sys and logr: it needs the Go module proxy.
test: deps lint
	@rc=0; for m in $(MODULES); do \
		echo "(cd $$m && $(GO) test -race -count=1 ./...)"; \
		(cd $$m && $(GO) test -race -count=1 ./...) || rc=1; \
	done; exit $$rc

LINT_ARCHES ?= 386 arm arm64 ppc64le s390x riscv64 mips64le loong64
# GO_LANG is the running go's language version (1.26), to tell which
# modules declare an older one.
GO_LANG = $(shell $(GO) env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
lint: deps-lint
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do \
		echo "(cd $$m && $(GO) vet ./...)"; \
		(cd $$m && $(GO) vet ./...); \
	done
	$(GO) vet -tags soak ./store/
	@set -e; for m in $(MODULES); do \
		echo "(cd $$m && staticcheck ./...)"; \
		(cd $$m && $(STATICCHECK) ./...); \
	done
	@# Each module builds with the oldest Go its go directive names (root:
	@# 1.25.0; golang.org/x/sys v0.48+ would need 1.26): vet, with that
	@# toolchain fetched from the Go proxy, where it is older than this go.
	@set -e; for m in $(MODULES); do \
		v=$$(sed -n 's/^go //p' $$m/go.mod); \
		if [ "$$(printf '%s\n' "$$v" "$(GO_LANG)" | sort -V | head -1)" = "$$v" ] && [ "$${v%.*}" != "$(GO_LANG)" ]; then \
			echo "(cd $$m && GOTOOLCHAIN=go$$v $(GO) vet ./...)"; \
			(cd $$m && GOTOOLCHAIN=go$$v $(GO) vet ./...); \
		fi; \
	done
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

# deps-cross (as root, once) lets make vmtest-cross run as any user: it adds
# the guest architectures to dpkg (for apt-get download of their kernels and
# btrfs-progs), updates the package lists, retrying what a mirror in sync
# fails and carrying on past an index the run does not need
# (test/vm/apt.sh), and installs qemu for them.
CROSS_DEB_ARCHES := arm64 ppc64el s390x
CROSS_QEMU_PKGS  := qemu-system-arm qemu-system-ppc qemu-system-misc
CROSS_APT_NEEDS  := linux-image-cloud-arm64:arm64 linux-image-powerpc64le:ppc64el linux-image-s390x:s390x \
	$(foreach a,$(CROSS_DEB_ARCHES),btrfs-progs:$(a) dash:$(a)) $(CROSS_QEMU_PKGS)
deps-cross:
	@if [ "$(ROOT)" != 0 ]; then echo "needs root (dpkg --add-architecture, apt-get install); run: sudo make deps-cross"; exit 1; fi
	@for a in $(CROSS_DEB_ARCHES); do dpkg --add-architecture $$a; done
	test/vm/apt.sh update $(CROSS_APT_NEEDS)
	test/vm/apt.sh install $(CROSS_QEMU_PKGS) btrfs-progs xz-utils

# vmtest-cross runs the ioctl and kernel packages' tests and the store's
# -short tests in TCG guests for arm64, ppc64le and s390x (big-endian), on
# Debian's kernels, with the test binaries cross-compiled and that
# architecture's mkfs.btrfs and btrfs in the guest. Any user, once
# make deps-cross has run. -short skips the store's three tests that cost
# the most under TCG (measured on arm64: TestCrashRecovery 50 to 124 s,
# TestReadOnlyRemount 88 s, TestHostileWithoutOpenat2 61 s; each calls
# testing.Short); the rest of the store's tests take 3 to 5 minutes per
# guest on this loaded 2-core machine.
VMTEST_CROSS_ARCHES ?= arm64,ppc64le,s390x
vmtest-cross:
	@for q in qemu-system-aarch64 qemu-system-ppc64 qemu-system-s390x; do \
		command -v $$q >/dev/null || { echo "missing $$q; run: sudo make deps-cross"; exit 1; }; \
	done
	$(GO) run ./test/vm -arch $(VMTEST_CROSS_ARCHES) -short -timeout 15m $(VMTEST_ARGS) ./ioctl ./kernel ./store

# vmtest-consumer runs the tests of examples/fixture-consumer, a module of
# its own that uses the public fixture (btrfstest), in the VM on 6.12, the
# way another module runs the harness: from that module's directory, with
# test/vm built from its requirement on btrstore (replaced by this checkout).
# The tests must run there (BTRFS_TEST_REQUIRE=1), not skip. 20 s here with
# the kernel cached; make test runs the same tests on the host.
vmtest-consumer:
	@command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu; run: sudo apt-get install -y --no-install-recommends qemu-system-x86 btrfs-progs xz-utils"; exit 1; }
	cd examples/fixture-consumer && BTRFS_TEST_REQUIRE=1 $(GO) run github.com/btrstore/btrstore/test/vm -kernels 6.12 -v ./...

# demo-vm runs the builder's demo (the embedded build, twice) inside the VM:
# the way to see it without root.
demo-vm:
	@command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu; run: sudo apt-get install -y --no-install-recommends qemu-system-x86 btrfs-progs xz-utils"; exit 1; }
	$(GO) run ./test/vm -kernels 6.12 -v -run TestDemo ./examples/builder

# fuzz runs each fuzz target (every func Fuzz* in a committed _test.go, in
# whichever module) for FUZZTIME on top of its seed corpus
# (testdata/fuzz/<FuzzName>); go test takes one -fuzz target per run.
# FUZZTIME is a count of executions, not a duration: a duration -fuzztime
# can fail a clean run with "context deadline exceeded" when the deadline
# races a busy worker (golang/go#75804, fixed in Go 1.27 only). 50000x is
# 1-3 s for most targets here and about 20 s for cache's FuzzLockModel.
FUZZTIME ?= 50000x
fuzz:
	@set -e; for f in $$(git grep -l '^func Fuzz' -- '*_test.go'); do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "(cd $$(dirname $$f) && $(GO) test -run '^\$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .)"; \
			(cd $$(dirname $$f) && $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x .); \
		done; \
	done

# bench compares btrstore, interleaved, with the bare ioctl sequence,
# github.com/dennwc/btrfs and the btrfs command forked per operation (with
# and without sudo -n, as obuilder runs it: sudo is installed if missing),
# checks the performance targets, and writes docs/PERFORMANCE.md and
# docs/performance.svg. Root (it mounts loop devices), 5 to 8 minutes.
# BENCHFLAGS=-quick: a smoke test of the tooling in under 2 minutes, written
# to a temporary directory; -rounds N for steadier medians; -strict to fail
# on a missed target; -out DIR is relative to tools/. benchreport and the
# dennwc/btrfs benchmarks (tools/bench/dennwc) are in the tools module. To
# redraw only the chart from the committed numbers (no root, runs nothing):
# cd tools && go run ./benchreport -chart-from ../docs/PERFORMANCE.md
BENCHFLAGS ?=
bench: deps
	@if [ "$(ROOT)" != 0 ]; then echo "needs root (the benchmarks mount loop devices)"; exit 1; fi
	@command -v sudo >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
	cd tools && GO=$(GO) $(GO) run ./benchreport $(BENCHFLAGS)

# soak runs TestSoak (store/soak_test.go, build tag soak; not part of test):
# 8 builders, shared caches, deletes and CompleteDeletes in a worker process
# that is SIGKILLed every 1-5 s, with every invariant checked after each
# restart. Needs root (loop-mounted btrfs). SOAK_DURATION=2m make soak
SOAK_DURATION ?= 30m
soak: deps
	$(GO) test -tags soak -run '^TestSoak$$' -timeout 0 -count=1 -v ./store/ -soak.duration=$(SOAK_DURATION)
