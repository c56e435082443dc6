package store

import (
	"errors"
	"io/fs"
	"sync"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// Spare work subvolumes (see the package documentation): made ahead for
// a base with two builds since Open, one per base and maxSpares in all;
// taken only if its source is the base's subvolume now (by UUID) and
// nothing in it changed since it was made (ioctl.ChangedSinceFd);
// removed with the base (Delete, Prune) and on Close. Not made where a
// delete costs O(files) (rootless) or before 5.10 (no change check). A
// spare is result-tmp/s<n>/work; the build that takes it renames s<n> to
// a fresh b<n>, so that no path handed out is used twice.

// Why a spare is not used (logged at V(1)).
var (
	errSpareStale   = errors.New("its base was deleted and made again since")
	errSpareChanged = errors.New("something in it changed since it was made")
)

// maxSpares bounds the spares held at once (one per base): a base that
// builds want evicts the spare that was wanted longest ago.
const maxSpares = 4

// maxSpareUses bounds the bases whose builds are counted; past it the
// counts start again.
const maxSpareUses = 4096

// spare is one spare work subvolume, made or being made.
type spare struct {
	base string
	seq  uint64        // when it was wanted: the lowest goes first when room is needed
	done chan struct{} // closed when made, or when making it failed
	// Set before done is closed:
	tmp  string           // its build directory, result-tmp/<tmp>
	fd   int              // open on the build directory; -1 if making it failed
	mark ioctl.ChangeMark // the work subvolume as made
}

// spares is the store's table of spares.
type spares struct {
	mu   sync.Mutex
	on   bool              // spares are made (set by Open; cleared if the change check fails)
	by   map[string]*spare // by base: made or being made; guarded by mu
	uses map[string]int    // builds started on each base; guarded by mu
	seq  uint64            // spares wanted so far; guarded by mu
}

// takeSpare returns the spare for base, made, and has the next one made;
// nil if there is none. Waiting for one being made holds no lock.
func (s *Store) takeSpare(base string) *spare {
	if s.fail != nil {
		return nil // tests that inject failures want every step taken
	}
	t := &s.spares
	t.mu.Lock()
	if !t.on {
		t.mu.Unlock()
		return nil
	}
	sp := t.by[base]
	delete(t.by, base)
	if len(t.uses) >= maxSpareUses {
		clear(t.uses)
	}
	t.uses[base]++
	again := sp != nil || t.uses[base] >= 2
	t.mu.Unlock()
	if again {
		s.makeSpare(base)
	}
	if sp == nil {
		return nil
	}
	<-sp.done // at most the snapshot the build would take itself
	if sp.fd < 0 {
		return nil
	}
	return sp
}

// makeSpare starts making a spare for base, unless there is one, there
// are maxSpares, or the store is closing.
func (s *Store) makeSpare(base string) {
	leave, err := s.enter() // Close waits for it; before t.mu, which Close takes
	if err != nil {
		return
	}
	t := &s.spares
	t.mu.Lock()
	if !t.on || t.by[base] != nil {
		t.mu.Unlock()
		leave()
		return
	}
	var evicted *spare // the least recently wanted, to make room
	if len(t.by) >= maxSpares {
		for _, o := range t.by {
			if evicted == nil || o.seq < evicted.seq {
				evicted = o
			}
		}
		delete(t.by, evicted.base)
	}
	t.seq++
	sp := &spare{base: base, seq: t.seq, done: make(chan struct{}), fd: -1}
	t.by[base] = sp
	t.mu.Unlock()
	go func() {
		defer leave()
		if evicted != nil {
			s.removeSpare(evicted)
		}
		defer close(sp.done)
		s.fillSpare(sp)
	}()
}

// fillSpare makes spare sp: its build directory, and in it the work
// subvolume as a build would (makeWork), marked for the change check.
func (s *Store) fillSpare(sp *spare) {
	tmp, fd, err := s.mkdirOpenTmp(s.resultTmpFd, "s")
	if err != nil {
		s.log.V(1).Info("making a spare work subvolume failed", "base", sp.base, "err", err.Error())
		return
	}
	var mark ioctl.ChangeMark
	err = s.makeWork(fd, sp.base, true)
	if err == nil {
		var workFd int
		if workFd, err = openDirAt(fd, workName); err == nil {
			mark, err = ioctl.MarkChangesFd(workFd)
			unix.Close(workFd)
		}
	}
	if err != nil {
		s.log.V(1).Info("making a spare work subvolume failed", "base", sp.base, "err", err.Error())
		unix.Close(fd)
		s.removeSpareDir(tmp)
		return
	}
	sp.tmp, sp.fd, sp.mark = tmp, fd, mark
}

// useSpare makes spare sp the build's work subvolume w, if it is what a
// snapshot of base taken now would be; else it says why not.
func (s *Store) useSpare(sp *spare, base string, w *workVol) error {
	if err := w.identify(sp.fd, workName); err != nil {
		return err
	}
	unlock := s.lockResult(base, true)
	defer unlock()
	baseFd, err := openDirAt(s.resultFd, base+"/"+snapshotName)
	if err != nil {
		return err
	}
	info, err := ioctl.SubvolumeInfoFd(baseFd)
	unix.Close(baseFd)
	if err != nil {
		return err
	}
	if info.UUID != w.parent {
		return errSpareStale
	}
	changed, err := ioctl.ChangedSinceFd(w.fd, sp.mark)
	if errors.Is(err, ioctl.ErrNotSupported) || errors.Is(err, fs.ErrPermission) {
		// No kernel or privilege for the check: no more spares.
		s.spares.mu.Lock()
		s.spares.on = false
		s.spares.mu.Unlock()
		s.log.V(1).Info("spare work subvolumes off: the change check cannot be made", "err", err.Error())
	}
	if err != nil {
		return err
	}
	if changed {
		return errSpareChanged
	}
	s.markUsed(base)
	return nil
}

// removeSpare removes spare sp, once made: its build directory and its
// work subvolume.
func (s *Store) removeSpare(sp *spare) {
	<-sp.done
	if sp.fd >= 0 {
		unix.Close(sp.fd)
		s.removeSpareDir(sp.tmp)
	}
}

// removeSpareDir removes the build directory result-tmp/<tmp> of a spare.
func (s *Store) removeSpareDir(tmp string) {
	if err := s.removeEntry(s.resultTmpFd, resultTmpDir, tmp); err != nil {
		s.log.Error(err, "removing a spare work subvolume failed; Open retries", "dir", resultTmpDir+"/"+tmp)
	}
}

// dropSpare removes the spare of base, if any: base was deleted.
func (s *Store) dropSpare(base string) {
	t := &s.spares
	t.mu.Lock()
	sp := t.by[base]
	delete(t.by, base)
	t.mu.Unlock()
	if sp != nil {
		s.removeSpare(sp)
	}
}

// dropSpares removes every spare; for Close, once nothing makes them.
func (s *Store) dropSpares() {
	t := &s.spares
	t.mu.Lock()
	all := t.by
	t.by = map[string]*spare{}
	t.on = false
	t.mu.Unlock()
	for _, sp := range all {
		s.removeSpare(sp)
	}
}
