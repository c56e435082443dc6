package store

import (
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// ResultInfo describes a published result, as Results lists it.
type ResultInfo struct {
	ID       string
	Created  time.Time // when the result was published
	LastUsed time.Time // last Result(id) or Build on it as base; survives Close/Open
}

// Results yields every published result, in no particular order, with
// when it was published and last used. A result being deleted or
// published meanwhile may or may not be listed; what is in result/ but is
// not a result (an empty directory a delete in place left, something a
// build step planted) is not. An error (the directory unreadable) is
// yielded once, and ends the listing.
//
// Created is the birth time of the plain directory result/<id> (made
// just before the result was frozen), or, where the kernel reports no
// birth time, the time of its publication. LastUsed is the change time
// (ctime) of that directory: Result(id) and a Build on base id set it to
// the present, with one utimensat that dirties the inode and costs no
// transaction commit and no fsync, so a crash of the machine loses at
// most the last commit interval (30 s by default) of last uses; Close and
// Open lose nothing. As no system call sets a ctime to anything but the
// present, a build step cannot make a result look older than its last
// use, nor used in the future: the most a step that runs as the store's
// user can do is mark a result used now (touching it through the store's
// directory), never get it pruned early.
//
// Cost: one readdir of result/ and two statx per result; nothing is held
// while the caller's loop body runs (it may call the store, Close
// included).
//
// Privilege: none beyond reading the store. Kernel: 4.11 (statx).
// Concurrency: safe.
func (s *Store) Results() iter.Seq2[ResultInfo, error] {
	return func(yield func(ResultInfo, error) bool) {
		infos, err := s.listResults()
		if err != nil {
			yield(ResultInfo{}, err)
			return
		}
		for _, info := range infos {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// listResults lists the published results.
func (s *Store) listResults() ([]ResultInfo, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	names, err := readDirNames(s.resultFd)
	if err != nil {
		return nil, fmt.Errorf("btrstore: results: %w", &fs.PathError{Op: "readdir", Path: resultDir, Err: err})
	}
	slices.Sort(names)
	infos := make([]ResultInfo, 0, len(names))
	for _, id := range names {
		info, err := s.resultInfo(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a result, or deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("btrstore: results: %w", err)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// resultInfo describes result id; fs.ErrNotExist if result/<id> is not a
// result.
func (s *Store) resultInfo(id string) (ResultInfo, error) {
	var dir, snap unix.Statx_t
	if err := unix.Statx(s.resultFd, id, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_BTIME|unix.STATX_CTIME, &dir); err != nil {
		return ResultInfo{}, &fs.PathError{Op: "statx", Path: resultDir + "/" + id, Err: err}
	}
	if dir.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ResultInfo{}, fs.ErrNotExist
	}
	if err := unix.Statx(s.resultFd, id+"/"+snapshotName, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &snap); err != nil {
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return ResultInfo{}, fs.ErrNotExist
		}
		return ResultInfo{}, &fs.PathError{Op: "statx", Path: resultDir + "/" + id + "/" + snapshotName, Err: err}
	}
	if snap.Mode&unix.S_IFMT != unix.S_IFDIR || snap.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID {
		return ResultInfo{}, fs.ErrNotExist
	}
	used := statxTime(dir.Ctime)
	created := used
	if dir.Mask&unix.STATX_BTIME != 0 {
		created = statxTime(dir.Btime)
	}
	return ResultInfo{ID: id, Created: created, LastUsed: used}, nil
}

func statxTime(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// markUsed records that result id was used now: the ctime of the plain
// directory result/<id>, set by utimensat (its mtime, to the present; the
// kernel sets the ctime with it). No commit, no fsync: the inode is
// written with the next transaction. Best effort: a result another user
// made (EPERM), or one deleted meanwhile, keeps its time; only the former
// is logged, at V(1).
func (s *Store) markUsed(id string) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(s.resultFd, id, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && err != unix.ENOENT {
		s.log.V(1).Info("recording the use of a result failed; Prune may take it for older than it is", "id", id, "err", err.Error())
	}
}
