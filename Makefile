# btrstore: see README.md. Every target installs what it needs (as root) or
# says which command would.
GO      ?= go
SHELL   := /bin/bash
APT_PKGS := btrfs-progs gcc linux-libc-dev
ROOT    := $(shell id -u)

.PHONY: deps deps-cross test lint vmtest vmtest-cross demo demo-vm example-snapshot fuzz bench soak

# deps installs the packages the tests use (mkfs.btrfs and btrfs for the
# fixture and cross-checks, a C compiler and linux/btrfs.h for the header
# oracle), or prints the command when not root.
deps:
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
# make deps-cross has run. -short reaches all three packages, but no test
# looks at testing.Short yet: until the store's long tests skip themselves,
# VMTEST_CROSS_SKIP names the three that cost the most under TCG (measured
# on arm64: TestCrashRecovery 50 to 124 s, TestReadOnlyRemount 88 s,
# TestHostileWithoutOpenat2 61 s; the rest of the store's tests take 3 to 5
# minutes per guest on this loaded 2-core machine).
VMTEST_CROSS_ARCHES ?= arm64,ppc64le,s390x
VMTEST_CROSS_SKIP ?= ^(TestCrashRecovery|TestReadOnlyRemount|TestHostileWithoutOpenat2)$$
vmtest-cross:
	@for q in qemu-system-aarch64 qemu-system-ppc64 qemu-system-s390x; do \
		command -v $$q >/dev/null || { echo "missing $$q; run: sudo make deps-cross"; exit 1; }; \
	done
	$(GO) run ./test/vm -arch $(VMTEST_CROSS_ARCHES) -short -timeout 15m $(VMTEST_ARGS) ./ioctl ./kernel ./store -- -skip '$(VMTEST_CROSS_SKIP)'

# demo-vm runs the builder's demo (the embedded build, twice) inside the VM:
# the way to see it without root.
demo-vm:
	@command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu; run: sudo apt-get install -y --no-install-recommends qemu-system-x86 btrfs-progs xz-utils"; exit 1; }
	$(GO) run ./test/vm -kernels 6.12 -v -run TestDemo ./examples/builder

# fuzz runs each fuzz target for FUZZTIME on top of its seed corpus
# (testdata/fuzz/<FuzzName>); go test takes one -fuzz target per run.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseMountInfo$$' -fuzztime $(FUZZTIME) ./kernel
	$(GO) test -run '^$$' -fuzz '^FuzzSearchItems$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzParseRootRef$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzParseRootItem$$' -fuzztime $(FUZZTIME) ./ioctl
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzValidID$$' -fuzztime $(FUZZTIME) ./store
	$(GO) test -run '^$$' -fuzz '^FuzzLockModel$$' -fuzztime $(FUZZTIME) ./cache

# bench compares btrstore, interleaved, with the bare ioctl sequence,
# github.com/dennwc/btrfs and the btrfs command forked per operation (with
# and without sudo -n, as obuilder runs it: sudo is installed if missing),
# checks the performance targets, and writes docs/PERFORMANCE.md and
# docs/performance.png. Root (it mounts loop devices), 5 to 8 minutes.
# BENCHFLAGS=-quick: a smoke test of the tooling in under 2 minutes, written
# to a temporary directory; -rounds N for steadier medians; -strict to fail
# on a missed target.
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
