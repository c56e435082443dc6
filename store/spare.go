package store

import (
	"cmp"
	"errors"
	"io/fs"
	"maps"
	"slices"
	"sync"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// Spare work subvolumes (see the package documentation): made ahead for
// a base with two builds since Open, one per base and maxSpares in all;
// taken only if its source is the base's subvolume now (by UUID),
// nothing in it changed since it was made (ioctl.ChangedSinceFd) and
// nothing is mounted on or below it (spareMounted);
// removed with the base (Delete, Prune) and on Close. Not made where a
// delete costs O(files) (rootless) or before 5.10 (no change check). A
// spare is result-tmp/s<n>/work; the build that takes it renames s<n> to
// a fresh b<n>, so that no path handed out is used twice.

// Why a spare is not used (logged at V(1)).
var (
	errSpareStale   = errors.New("its base was deleted and made again since")
	errSpareChanged = errors.New("something in it changed since it was made")
	errSpareMounted = errors.New("something was mounted on it")
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

	mounted bool // a mount was seen on or below it; guarded by spares.mu
}

// spares is the store's table of spares.
type spares struct {
	mu   sync.Mutex
	on   bool              // spares are made (set by Open; cleared if the change check fails)
	by   map[string]*spare // by base: made or being made; guarded by mu
	uses map[string]int    // builds started on each base; guarded by mu
	seq  uint64            // spares wanted so far; guarded by mu
	// evicting holds a channel per evicted spare being removed, closed
	// when it is; guarded by mu.
	evicting map[chan struct{}]struct{}
	// mountsFd is open on /proc/self/mountinfo, polled for changes of
	// the mount table (spareMounted); -1 without spares.
	mountsFd int
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
	var evicting chan struct{} // closed once evicted is removed
	if evicted != nil {
		evicting = make(chan struct{})
		t.evicting[evicting] = struct{}{}
	}
	t.seq++
	sp := &spare{base: base, seq: t.seq, done: make(chan struct{}), fd: -1}
	t.by[base] = sp
	t.mu.Unlock()
	go func() {
		defer leave()
		s.fillSpare(sp)
		close(sp.done)
		if evicted != nil { // after: its removal may wait for its base's lock
			s.removeSpare(evicted)
			t.mu.Lock()
			delete(t.evicting, evicting)
			t.mu.Unlock()
			close(evicting)
		}
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
	if errors.Is(err, ioctl.ErrNotSupported) {
		// No kernel for the check: no more spares (Close removes those
		// there are).
		s.log.V(1).Info("spare work subvolumes off: the change check cannot be made", "err", err.Error())
		s.spares.mu.Lock()
		s.spares.on = false
		s.spares.mu.Unlock()
	}
	if err != nil {
		return err
	}
	if changed {
		return errSpareChanged
	}
	if mounted, err := s.spareMounted(sp); err != nil || mounted {
		return cmp.Or(err, errSpareMounted)
	}
	s.markUsed(base)
	return nil
}

// spareMounted reports whether a mount was made on or below spare sp's
// directory: a step with CAP_SYS_ADMIN could mount something there that a
// later build would run, and a mount changes nothing in the subvolume,
// which is all ioctl.ChangedSinceFd sees. It costs one poll of
// /proc/self/mountinfo, which reports a mount or unmount anywhere in the
// namespace since the last poll; only then is the table read, and every
// spare checked against it (the next poll no longer reports the change).
func (s *Store) spareMounted(sp *spare) (bool, error) {
	t := &s.spares
	t.mu.Lock()
	defer t.mu.Unlock()
	fds := []unix.PollFd{{Fd: int32(t.mountsFd), Events: unix.POLLPRI}}
	if _, err := beneath.Retry2(func() (int, error) { return unix.Poll(fds, 0) }); err != nil {
		return true, &fs.PathError{Op: "poll", Path: "/proc/self/mountinfo", Err: err}
	}
	if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
		mounts, err := mountinfo.Read()
		if err != nil {
			return true, err
		}
		for _, o := range append(slices.Collect(maps.Values(t.by)), sp) {
			select {
			case <-o.done:
			default:
				o.mounted = true // being made: its directory cannot be told yet
				continue
			}
			dir := s.realRoot + "/" + resultTmpDir + "/" + o.tmp
			for _, m := range mounts {
				if m.OnOrBelow(dir) {
					o.mounted = true
				}
			}
		}
	}
	return sp.mounted, nil
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

// dropSpares removes every spare and closes the mount table; for Close,
// once nothing makes them.
func (s *Store) dropSpares() {
	t := &s.spares
	t.mu.Lock()
	all := t.by
	t.by = map[string]*spare{}
	t.on = false
	if t.mountsFd >= 0 {
		unix.Close(t.mountsFd)
		t.mountsFd = -1
	}
	t.mu.Unlock()
	for _, sp := range all {
		s.removeSpare(sp)
	}
}

// openSpares sets spares up for Open: on if deletes are one ioctl, the
// kernel has the change check (5.10) and the mount table can be polled.
func (s *Store) openSpares(on bool) {
	s.spares = spares{by: map[string]*spare{}, uses: map[string]int{}, evicting: map[chan struct{}]struct{}{}, mountsFd: -1}
	if !on || s.realRoot == "" {
		return
	}
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		s.log.V(1).Info("no spare work subvolumes: /proc/self/mountinfo cannot be polled", "err", err.Error())
		return
	}
	// The first poll reports a change: take it now, with no spare yet.
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}, 0)
	s.spares.on, s.spares.mountsFd = true, fd
}
