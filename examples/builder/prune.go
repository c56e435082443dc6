package main

import (
	"context"
	"fmt"

	"github.com/btrstore/btrstore/store"
)

// pruneBelow makes room before a build, as OCluster's workers do: when
// less than percent of the filesystem is free, it deletes least recently
// used results until percent is free again (or none is left), and prints
// what it pruned. percent 0 does nothing.
func pruneBelow(ctx context.Context, s *store.Store, percent float64) error {
	if percent <= 0 {
		return nil
	}
	before, err := s.FreeSpace(ctx)
	if err != nil {
		return err
	}
	if before >= percent {
		fmt.Printf("prune: %.1f%% free, not below %.1f%%: nothing to prune\n", before, percent)
		return nil
	}
	used := map[string]store.ResultInfo{}
	for r, err := range s.Results() {
		if err != nil {
			return err
		}
		used[r.ID] = r
	}
	pruned, err := s.Prune(ctx, store.PruneOptions{MinFreeSpace: percent})
	if err != nil {
		return fmt.Errorf("prune (after deleting %d results): %w", len(pruned), err)
	}
	after, err := s.FreeSpace(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("prune: %.1f%% free, below %.1f%%: pruned %d of %d results, least recently used first; now %.1f%% free\n",
		before, percent, len(pruned), len(used), after)
	for _, id := range pruned {
		short := id
		if len(short) > 12 {
			short = short[:12]
		}
		fmt.Printf("  pruned %s  last used %s\n", short, used[id].LastUsed.Format("2006-01-02 15:04:05"))
	}
	if after < percent {
		fmt.Println("prune: no result left to prune, and still below the target: the rest of the space is not the store's results")
	}
	return nil
}
