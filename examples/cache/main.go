// Command cache shows the store's cache semantics on a btrfs directory:
// two builds clone the same cache, both write to it, and the first to
// release wins; a deletion discards clones in flight.
//
// Usage: cache DIR   (DIR on btrfs; needs root or CAP_SYS_ADMIN)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/btrstore/btrstore/store"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cache DIR (a directory on btrfs)")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "cache:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	s, err := store.Open(ctx, dir, store.Config{})
	if err != nil {
		return err
	}
	defer s.Close()
	me := store.Owner{UID: os.Getuid(), GID: os.Getgid()}
	read := func(l *store.CacheLease) string {
		b, err := os.ReadFile(filepath.Join(l.Path(), "version"))
		if err != nil {
			return "(empty)"
		}
		return string(b)
	}
	write := func(l *store.CacheLease, v string) error {
		return os.WriteFile(filepath.Join(l.Path(), "version"), []byte(v), 0o644)
	}

	a, err := s.Cache(ctx, "deps", me)
	if err != nil {
		return err
	}
	b, err := s.Cache(ctx, "deps", me)
	if err != nil {
		return err
	}
	fmt.Printf("clone a sees %s, clone b sees %s\n", read(a), read(b))
	write(a, "written by a")
	write(b, "written by b")
	if err := b.Release(ctx); err != nil { // b releases first: b wins
		return err
	}
	if err := a.Release(ctx); err != nil { // same generation: discarded
		return err
	}
	c, err := s.Cache(ctx, "deps", me)
	if err != nil {
		return err
	}
	fmt.Printf("after b then a released, a new clone sees %q\n", read(c))
	if err := s.DeleteCache(ctx, "deps"); err != nil {
		return err
	}
	write(c, "written after the delete")
	if err := c.Release(ctx); err != nil {
		return err
	}
	d, err := s.Cache(ctx, "deps", me)
	if err != nil {
		return err
	}
	fmt.Printf("after DeleteCache, the in-flight clone was discarded; a new clone sees %s\n", read(d))
	if err := d.Release(ctx); err != nil {
		return err
	}
	return s.DeleteCache(ctx, "deps")
}
