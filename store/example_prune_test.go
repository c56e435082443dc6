package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/btrstore/btrstore/store"
)

// A builder's housekeeping, as OCluster's workers do it: below 30% free,
// prune least recently used results until 30% is free; and drop caches
// not released for a week. (Needs a btrfs at /srv/store, so it is not run
// as a test.)
func ExampleStore_Prune() {
	ctx := context.Background()
	s, err := store.Open(ctx, "/srv/store", store.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	if free, err := s.FreeSpace(ctx); err == nil && free < 30 {
		pruned, err := s.Prune(ctx, store.PruneOptions{MinFreeSpace: 30})
		fmt.Println("pruned", len(pruned), "results", err)
	}
	weekAgo := time.Now().Add(-7 * 24 * time.Hour)
	for c, err := range s.Caches() {
		if err != nil {
			panic(err)
		}
		if c.LastReleased.Before(weekAgo) {
			if err := s.DeleteCache(ctx, c.Name); err != nil {
				panic(err)
			}
		}
	}
}

// Results lists what the store holds, with when each result was made and
// last used. (Not run as a test: it needs a store.)
func ExampleStore_Results() {
	s, err := store.Open(context.Background(), "/srv/store", store.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	for r, err := range s.Results() {
		if err != nil {
			panic(err)
		}
		fmt.Println(r.ID, r.Created.Format(time.RFC3339), r.LastUsed.Format(time.RFC3339))
	}
}
