package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// When a cache was last released is the creation time of its version,
// unless a later release found the clone unchanged and kept the version
// (see unchanged.go). Such a release records its time in an extended
// attribute of the plain directory cache/, one per cache, named
// user.btrstore.released.<32 hex digits of the SHA-256 of the escaped
// entry> (any entry fits the 255 bytes of an attribute name), its value
// "<Unix time in ns> <escaped entry>" (a hash that two entries share
// names one of them only). One fsetxattr on the store's descriptor of
// cache/: it dirties the directory's inode, with no transaction commit and
// no fsync, so a crash of the machine loses at most the last commit
// interval of releases, and Close and Open lose nothing; and it sets the
// directory's change time, which bounds what Caches believes of any
// attribute (see Caches). The version is read-only and cannot carry it.
//
// A newer version (a changed release, or a cache deleted and made again)
// is newer than any time recorded for the cache before it, so a stale
// attribute is outweighed; DeleteCache removes it all the same, and Open
// removes those of caches that no longer exist (a DeleteCache killed
// between the two). Where the attribute cannot be written (a filesystem
// without xattrs, no space), the time is kept in memory only, as it was
// before, and logged at V(1): a release never fails over it.

// releasedXattrPrefix begins the name of each cache's attribute.
const releasedXattrPrefix = "user.btrstore.released."

// releasedXattr returns the name of the attribute of cache entry.
func releasedXattr(entry string) string {
	h := sha256.Sum256([]byte(entry))
	return releasedXattrPrefix + hex.EncodeToString(h[:16])
}

// releaseTimes holds when this Store released each cache unchanged: the
// fallback where the attribute cannot be written.
type releaseTimes struct {
	mu sync.Mutex           // guards m
	m  map[string]time.Time // by escaped entry
}

// cacheKept records that cache entry was released now and its version
// kept. The caller holds the cache's lock.
func (s *Store) cacheKept(entry string) {
	now := time.Now()
	s.released.mu.Lock()
	if s.released.m == nil {
		s.released.m = map[string]time.Time{}
	}
	s.released.m[entry] = now
	s.released.mu.Unlock()
	val := strconv.AppendInt(make([]byte, 0, 21+len(entry)), now.UnixNano(), 10)
	val = append(append(val, ' '), entry...)
	if err := unix.Fsetxattr(s.cacheFd, releasedXattr(entry), val, 0); err != nil {
		s.log.V(1).Info("recording a cache's release on disk failed; after Close and Open, Caches reports it as older", "entry", entry, "err", err.Error())
	}
}

// lastReleased returns when cache entry was last released unchanged, as
// recorded in memory or in its attribute (taken as no later than
// ceiling); zero if it was not. buf holds the attribute's value.
func (s *Store) lastReleased(entry string, ceiling time.Time, buf []byte) time.Time {
	s.released.mu.Lock()
	last := s.released.m[entry]
	s.released.mu.Unlock()
	n, err := unix.Fgetxattr(s.cacheFd, releasedXattr(entry), buf)
	if err != nil {
		return last
	}
	ns, e, _ := strings.Cut(string(buf[:n]), " ")
	v, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || e != entry {
		return last
	}
	if t := time.Unix(0, v); t.Before(ceiling) {
		ceiling = t
	}
	if ceiling.After(last) {
		return ceiling
	}
	return last
}

// forgetReleased removes what was recorded of cache entry's releases. The
// caller holds the cache's lock and has deleted it.
func (s *Store) forgetReleased(entry string) {
	s.released.mu.Lock()
	delete(s.released.m, entry)
	s.released.mu.Unlock()
	err := unix.Fremovexattr(s.cacheFd, releasedXattr(entry))
	if err != nil && err != unix.ENODATA && err != unix.EOPNOTSUPP {
		s.log.V(1).Info("removing a deleted cache's release time failed; Open retries", "entry", entry, "err", err.Error())
	}
}

// dropStaleReleases removes the release attributes of cache/ other than
// those of the caches entries, for Open.
func (s *Store) dropStaleReleases(entries []string) {
	keep := make(map[string]bool, len(entries))
	for _, e := range entries {
		keep[releasedXattr(e)] = true
	}
	names, err := listXattrs(s.cacheFd)
	if err != nil {
		if err != unix.EOPNOTSUPP {
			s.log.V(1).Info("cannot list the release times of caches; those of deleted caches stay", "err", err.Error())
		}
		return
	}
	for _, name := range names {
		if !strings.HasPrefix(name, releasedXattrPrefix) || keep[name] {
			continue
		}
		if err := unix.Fremovexattr(s.cacheFd, name); err != nil && err != unix.ENODATA {
			s.log.V(1).Info("cannot remove the release time of a deleted cache", "xattr", name, "err", err.Error())
			continue
		}
		s.log.V(1).Info("removed the release time of a deleted cache", "xattr", name)
	}
}

// listXattrs returns the names of fd's extended attributes.
func listXattrs(fd int) ([]string, error) {
	for range 3 {
		size, err := unix.Flistxattr(fd, nil)
		if err != nil || size == 0 {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Flistxattr(fd, buf)
		if err == unix.ERANGE {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00"), nil
	}
	return nil, unix.ERANGE
}
