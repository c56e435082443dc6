package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-logr/logr/funcr"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/store"
)

// exampleBtrfs gives an example a fresh loop-mounted btrfs (see
// btrfstest.ForExample; TestMain skips these examples when not root).
func exampleBtrfs() (mnt string, remove func()) {
	return btrfstest.ForExample(btrfstest.Size(256 << 20))
}

// Open with a logger: funcr (part of logr) formats each record as
// key/value pairs for a function of yours. V(1) shows each operation's life
// cycle; V(0), what an operator must see (repairs, failures). Here a hook
// hides the values that differ from run to run (paths, durations, and the
// mechanisms the running kernel offers), so that the output is fixed.
// (The btrfs here is a fresh loop device; yours is where your store lives.)
func ExampleOpen_funcr() {
	mnt, remove := exampleBtrfs()
	defer remove()

	log := funcr.New(func(prefix, args string) {
		fmt.Println(args) // prefix is the logger's name: none here
	}, funcr.Options{Verbosity: 1, RenderArgsHook: hideVolatile})
	root := filepath.Join(mnt, "store")
	if err := os.Mkdir(root, 0o755); err != nil {
		panic(err)
	}
	ctx := context.Background()
	s, err := store.Open(ctx, root, store.Config{Logger: log})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	err = s.Build(ctx, "step1", "", func(ctx context.Context, dir string) error {
		return os.WriteFile(filepath.Join(dir, "greeting"), []byte("hello"), 0o644)
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// "level"=1 "msg"="store mechanisms" "delete"="…" "wait"="…"
	// "level"=1 "msg"="store opened" "root"="…"
	// "level"=1 "msg"="build started" "id"="step1" "base"=""
	// "level"=1 "msg"="build done" "id"="step1" "duration"="…"
}

// hideVolatile replaces the values of the keys that differ between runs.
func hideVolatile(kvs []any) []any {
	out := slices.Clone(kvs)
	for i := 0; i+1 < len(out); i += 2 {
		switch out[i] {
		case "root", "duration", "delete", "wait":
			out[i+1] = "…"
		}
	}
	return out
}

// A build step that keeps a log writes it where LogFile says: in the work
// directory while the step runs, so the log is published with the result
// (read-only, like the rest of it). A step built on a base starts with the
// base's log, as the work directory is a snapshot of the base: truncate it
// (O_TRUNC) to keep only the step's own. (The btrfs here is a fresh loop
// device; yours is where your store lives.)
func ExampleStore_LogFile() {
	mnt, remove := exampleBtrfs()
	defer remove()
	root := filepath.Join(mnt, "store")
	if err := os.Mkdir(root, 0o755); err != nil {
		panic(err)
	}
	ctx := context.Background()
	s, err := store.Open(ctx, root, store.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	step := func(id, base, command string) {
		err := s.Build(ctx, id, base, func(ctx context.Context, dir string) error {
			logPath, err := s.LogFile(id)
			if err != nil {
				return err
			}
			log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			defer log.Close()
			fmt.Fprintf(log, "$ %s\n", command)
			if err := os.WriteFile(filepath.Join(dir, id), []byte(command), 0o644); err != nil {
				fmt.Fprintf(log, "failed: %v\n", err)
				return err
			}
			fmt.Fprintln(log, "done")
			return log.Close()
		})
		if err != nil {
			panic(err)
		}
	}
	step("step1", "", "make base")
	step("step2", "step1", "make more")

	for _, id := range []string{"step1", "step2"} {
		logPath, err := s.LogFile(id)
		if err != nil {
			panic(err)
		}
		data, err := os.ReadFile(logPath)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s:\n%s", id, data)
	}
	// Output:
	// step1:
	// $ make base
	// done
	// step2:
	// $ make more
	// done
}
