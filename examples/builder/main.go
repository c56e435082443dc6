// Command builder is a small layered builder on the btrstore build store,
// the project's main job. It reads a spec of steps (JSON: shell commands
// and the caches they mount), names each step's result by a hash of its
// parent and the step, reuses results that exist ("cached"), builds the
// others, and prints progress and timings per step. A failing step is
// reported with the end of its log.
//
// Without -root it needs root: it keeps its btrfs in an image file under
// its state directory, loop-mounted for the run and unmounted at exit
// (unless -keep). Without -spec it runs an embedded default build; run it
// twice to see every step cached.
//
// With -prune-below PERCENT, when less than PERCENT of the filesystem is
// free before the build, it prunes least recently used results until
// PERCENT is free, and prints what it pruned.
//
//	builder [-state DIR] [-root DIR] [-spec FILE] [-keep] [-prune-below PERCENT] [-v]
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/btrstore/btrstore/internal/loopfs"
	"github.com/btrstore/btrstore/store"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
)

//go:embed default.json
var defaultSpec []byte

func main() {
	state := flag.String("state", defaultState(), "state directory holding the btrfs image")
	root := flag.String("root", "", "use this directory on an existing btrfs instead of the image")
	specFile := flag.String("spec", "", "build spec (JSON); default: the embedded example")
	keep := flag.Bool("keep", false, "leave the image mounted at STATE/mnt when done")
	size := flag.Int64("size", 2<<30, "size of a new image in bytes")
	verbose := flag.Bool("v", false, "log the store's life cycle")
	pruneAt := flag.Float64("prune-below", 0, "before building, if less than `PERCENT` of the filesystem is free, prune least recently used results until it is (0: never)")
	flag.Parse()
	if *pruneAt < 0 || *pruneAt > 100 {
		fmt.Fprintln(os.Stderr, "builder: -prune-below takes a percentage from 0 to 100")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	if err := mainErr(ctx, *state, *root, *specFile, *keep, *size, *verbose, *pruneAt); err != nil {
		fmt.Fprintln(os.Stderr, "builder:", err)
		os.Exit(1)
	}
}

func defaultState() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "btrstore-builder")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local/state/btrstore-builder")
}

func mainErr(ctx context.Context, state, root, specFile string, keep bool, size int64, verbose bool, pruneAt float64) error {
	specBytes := defaultSpec
	if specFile != "" {
		var err error
		if specBytes, err = os.ReadFile(specFile); err != nil {
			return err
		}
	}
	spec, err := parseSpec(specBytes)
	if err != nil {
		return err
	}
	if root == "" {
		if os.Geteuid() != 0 {
			return errors.New("needs root to loop-mount its btrfs image (or -root DIR on a btrfs you may use).\n" +
				"Without root, run it inside a VM: make demo-vm")
		}
		mnt, cleanup, err := mountImage(state, size, keep)
		if err != nil {
			return err
		}
		defer cleanup()
		root = mnt
	}
	logger := logr.Discard()
	if verbose {
		logger = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
	}
	s, err := store.Open(ctx, root, store.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("store %s\n", s.Root())
	if err := pruneBelow(ctx, s, pruneAt); err != nil {
		return err
	}
	return run(ctx, s, spec)
}

// mountImage loop-mounts STATE/store.img at STATE/mnt, creating and
// formatting the image on first use. cleanup unmounts and detaches it,
// unless keep is set.
func mountImage(state string, size int64, keep bool) (mnt string, cleanup func(), err error) {
	image, mnt := filepath.Join(state, "store.img"), filepath.Join(state, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", nil, err
	}
	if _, err := os.Stat(image); errors.Is(err, os.ErrNotExist) {
		fmt.Printf("creating %s (%d MiB, sparse)\n", image, size>>20)
		if err := loopfs.Format(image, size); err != nil {
			os.Remove(image)
			return "", nil, err
		}
	}
	if already, _ := isMountPoint(mnt); already {
		fmt.Printf("using %s, already mounted\n", mnt)
		return mnt, func() {}, nil
	}
	dev, fd, err := loopfs.Attach(image)
	if err != nil {
		return "", nil, err
	}
	if err := unix.Mount(dev, mnt, "btrfs", 0, ""); err != nil {
		loopfs.Detach(fd, dev, image)
		return "", nil, fmt.Errorf("mount %s on %s: %w", dev, mnt, err)
	}
	if keep {
		// The device has autoclear set: it goes with the unmount.
		unix.Close(fd)
		return mnt, func() { fmt.Printf("left mounted: %s (umount %s)\n", mnt, mnt) }, nil
	}
	return mnt, func() {
		if _, err := loopfs.Unmount(mnt); err != nil {
			fmt.Fprintln(os.Stderr, "builder: unmount:", err)
		}
		if err := loopfs.Detach(fd, dev, image); err != nil {
			fmt.Fprintln(os.Stderr, "builder:", err)
		}
	}, nil
}

// isMountPoint reports whether dir is a mount point (its device differs
// from its parent's).
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}
