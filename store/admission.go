package store

import (
	"errors"
	"fmt"

	"github.com/btrstore/btrstore/kernel"
)

// admit checks, for Open, that a store can be kept at root (absolute):
// package kernel finds the facts (kernel.Check) and says what each
// missing one needs; which of them the store needs, and what the store
// then asks of its user, is said here. Every missing requirement is
// returned at once, so that one fix is not followed by the news of the
// next; but on another filesystem than btrfs that one sentence says it
// all.
func admit(root string) (*kernel.Report, error) {
	r := kernel.Check(root)
	if r.Err != nil {
		return nil, r.Err // the check itself failed (no such path...)
	}
	if !r.Btrfs {
		return nil, fmt.Errorf("%w: put the store on a btrfs filesystem", r.CanUseBtrfs())
	}
	// Deleting and waiting: the fastest mechanisms that work (see
	// rootless.go); an error only when none does.
	_, mechErr := mechanismsFor(r)
	if err := errors.Join(r.CanUseBtrfs(), mechErr); err != nil {
		return nil, err
	}
	return r, nil
}

// canGiveCache returns nil if a cache clone can be given to owner; the
// error says what is missing for that (see kernel.Report.CanChown).
func (s *Store) canGiveCache(owner Owner) error {
	if err := s.report.CanChown(owner.UID, owner.GID); err != nil {
		return fmt.Errorf("the clone is given to its owner: %w", err)
	}
	return nil
}
