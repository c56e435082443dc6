package store

import (
	"context"
	"os"
	"strings"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// repair brings the directories to the store's invariants after a crash:
// result-tmp and cache-tmp are emptied (builds in progress, clones,
// results being deleted); a result/<id> that is not a directory holding a
// read-only subvolume "snapshot" is removed; in cache/, entries other
// than escaped cache names (versions being swapped in or out) are removed,
// and a cache that is not a read-only subvolume is removed. Each repair is
// logged. Everything else is left alone.
func (s *Store) repair(ctx context.Context) error {
	for _, d := range []struct {
		fd   int
		name string
	}{{s.resultTmpFd, resultTmpDir}, {s.cacheTmpFd, cacheTmpDir}} {
		names, err := readDirNames(d.fd)
		if err != nil {
			return err
		}
		for _, n := range names {
			s.log.Info("removing left-over entry", "dir", d.name, "entry", n)
			if err := removeEntry(d.fd, n); err != nil {
				return err
			}
		}
	}
	results, err := readDirNames(s.resultFd)
	if err != nil {
		return err
	}
	for _, id := range results {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.completeResult(id) {
			continue
		}
		s.log.Info("removing incomplete result", "id", id)
		trash := s.tmpName("d")
		if err := moveNoReplace(s.resultFd, id, s.resultTmpFd, trash); err != nil {
			return err
		}
		if err := removeEntry(s.resultTmpFd, trash); err != nil {
			return err
		}
	}
	caches, err := readDirNames(s.cacheFd)
	if err != nil {
		return err
	}
	for _, n := range caches {
		if strings.HasPrefix(n, "c-") && isReadOnlySubvolume(s.cacheFd, n) {
			continue
		}
		s.log.Info("removing left-over cache entry", "entry", n)
		if err := removeEntry(s.cacheFd, n); err != nil {
			return err
		}
	}
	return nil
}

// completeResult reports whether result/<id> is a plain directory holding
// exactly the read-only subvolume "snapshot".
func (s *Store) completeResult(id string) bool {
	fd, err := openDirAt(s.resultFd, id)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	names, err := readDirNames(fd)
	if err != nil || len(names) != 1 || names[0] != snapshotName {
		return false
	}
	return isReadOnlySubvolume(fd, snapshotName)
}

func isReadOnlySubvolume(dirFd int, name string) bool {
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	info, err := ioctl.SubvolumeInfoFd(fd)
	return err == nil && info.ReadOnly
}

// readDirNames lists a directory open as fd without consuming fd.
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}
