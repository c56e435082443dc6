package receive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/sendstream"
	"golang.org/x/sys/unix"
)

// ErrUnknownSource: the stream's parent or clone source is none of the
// subvolumes the receive may use (Options.Sources, and those received
// earlier from the same stream). Matches fs.ErrNotExist.
var ErrUnknownSource = fmt.Errorf("parent or clone source not found among the allowed subvolumes: %w", fs.ErrNotExist)

// source is a subvolume the stream may snapshot or clone from.
type source struct {
	path         string // for opening and errors
	uuid         sendstream.UUID
	receivedUUID sendstream.UUID
	fd           int // opened on first use; -1 before
}

// sources is the index of allowed subvolumes, built on first use.
type sources struct {
	dirs  []string
	built bool
	list  []*source
}

// build lists the subvolumes at and below each allowed directory: the
// directory itself if it is a subvolume, else each subvolume among its
// entries, with every subvolume nested in them.
func (s *sources) build() error {
	s.built = true
	for _, dir := range s.dirs {
		if ok, err := ioctl.IsSubvolume(dir); err != nil {
			return err
		} else if ok {
			if err := s.addTree(dir); err != nil {
				return err
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil || st.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID {
				continue
			}
			if err := s.addTree(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sources) addTree(top string) error {
	info, err := ioctl.SubvolumeInfo(top)
	if err != nil {
		return err
	}
	s.add(top, info)
	for sub, err := range ioctl.Subvolumes(top) {
		if err != nil {
			return err
		}
		s.add(filepath.Join(top, sub.Path), sub)
	}
	return nil
}

func (s *sources) add(path string, info ioctl.SubvolInfo) {
	s.list = append(s.list, &source{path: path, uuid: sendstream.UUID(info.UUID),
		receivedUUID: sendstream.UUID(info.ReceivedUUID), fd: -1})
}

// find returns the subvolume whose received UUID is u, else the one whose
// UUID is u, as btrfs-progs looks them up (the ctransid is not compared,
// so that chains of receives across several hosts work).
func (s *sources) find(u sendstream.UUID) (*source, error) {
	if !s.built {
		if err := s.build(); err != nil {
			return nil, fmt.Errorf("listing allowed subvolumes: %w", err)
		}
	}
	var zero sendstream.UUID
	if u == zero {
		return nil, fmt.Errorf("%w: zero UUID", ErrUnknownSource)
	}
	for _, src := range s.list {
		if src.receivedUUID == u {
			return s.open(src)
		}
	}
	for _, src := range s.list {
		if src.uuid == u {
			return s.open(src)
		}
	}
	return nil, fmt.Errorf("%w: UUID %v", ErrUnknownSource, u)
}

func (s *sources) open(src *source) (*source, error) {
	if src.fd >= 0 {
		return src, nil
	}
	fd, err := unix.Open(src.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: src.path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: src.path, Err: errors.Join(ioctl.ErrNotSubvolume, err)}
	}
	src.fd = fd
	return src, nil
}

// received adds a subvolume received from this stream, so that a later
// subvolume of the same stream may use it.
func (s *sources) received(path string, uuid sendstream.UUID) {
	s.list = append(s.list, &source{path: path, receivedUUID: uuid, fd: -1})
}

func (s *sources) close() {
	for _, src := range s.list {
		if src.fd >= 0 {
			unix.Close(src.fd)
			src.fd = -1
		}
	}
}
