package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/btrstore/btrstore/store"
)

func ExampleEscape() {
	fmt.Println(store.Escape("apt/archives"))
	fmt.Println(store.Escape("\nb"), store.Escape("\xab"))
	// Output:
	// c-apt%2farchives
	// c-%0ab c-%ab
}

// A build on top of another: the second step starts from a writable
// snapshot of the first's result. (Needs a btrfs at /srv/store and
// CAP_SYS_ADMIN, so it is not run as a test.)
func ExampleStore_Build() {
	ctx := context.Background()
	s, err := store.Open(ctx, "/srv/store", store.Config{})
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
	err = s.Build(ctx, "step2", "step1", func(ctx context.Context, dir string) error {
		return os.WriteFile(filepath.Join(dir, "more"), []byte("world"), 0o644)
	})
	if err != nil {
		panic(err)
	}
	result, _ := s.Result("step2") // read-only: holds greeting and more
	fmt.Println(result)
}

// A cache clone for a build step; Release must always be called.
func ExampleStore_Cache() {
	ctx := context.Background()
	s, err := store.Open(ctx, "/srv/store", store.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	lease, err := s.Cache(ctx, "go-build-cache", store.Owner{UID: 1000, GID: 1000})
	if err != nil {
		panic(err)
	}
	defer lease.Release(ctx)
	fmt.Println("mount", lease.Path(), "into the build step")
}
