package receive

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
	"github.com/btrstore/btrstore/sendstream"
	"golang.org/x/sys/unix"
)

// Options tune Apply. The zero value receives below dir, with parents and
// clone sources looked up among the subvolumes at and below dir.
type Options struct {
	// Sources are the directories whose subvolumes (each directory itself
	// if it is a subvolume, else the subvolumes among its entries, with
	// every subvolume nested in those) may serve as the parent of an
	// incremental stream or as a clone source. Empty: dir alone. The
	// subvolumes received earlier from the same stream are always allowed.
	// A stream that names any other subvolume is refused with
	// ErrUnknownSource.
	Sources []string
	// Decompress writes the data of encoded writes (compressed
	// pass-through, `btrfs send --compressed-data`) decompressed, instead
	// of passing it to the kernel with BTRFS_IOC_ENCODED_WRITE. Apply
	// falls back to decompressing on its own whenever the kernel refuses
	// an encoded write.
	Decompress bool
	// Zstd decompresses zstd-compressed extents, for when Apply writes
	// them decompressed (Decompress, or a kernel that refuses the encoded
	// write). zlib and LZO are built in; zstd is not, to keep its
	// dependency out of this module: pass zstd.Decompress from
	// github.com/btrstore/btrstore/receive/zstd. Nil: a zstd extent that
	// must be decompressed fails the receive with ErrNoDecompressor;
	// one the kernel takes as it is needs nothing.
	Zstd Decompressor
}

// A Decompressor decompresses src, the data of one compressed extent (as
// btrfs wrote it, padded with zeros to a sector), into dst from its
// start, and returns how many bytes it wrote: len(dst) when src holds at
// least that many, fewer when src ends first. It stops when dst is full,
// without reading the rest of src. An error after n bytes reports
// corrupt data; Apply uses those n bytes if they are all the file needs.
// Apply calls it from one goroutine per Apply call; a Decompressor given
// to concurrent Apply calls must be safe for concurrent use.
type Decompressor func(dst, src []byte) (n int, err error)

// ErrNoDecompressor: a zstd extent had to be written decompressed and
// Options.Zstd is nil. Matches errors.ErrUnsupported.
var ErrNoDecompressor = fmt.Errorf("no zstd decompressor (receive.Options.Zstd, see github.com/btrstore/btrstore/receive/zstd): %w", errors.ErrUnsupported)

// ErrNeedsPrivilege: the caller lacks CAP_SYS_ADMIN, without which the
// kernel refuses SET_RECEIVED_SUBVOL (a received subvolume could not be
// marked as such, nor a failed one always be deleted). Matches
// fs.ErrPermission. Apply checks it before touching the disk.
var ErrNeedsPrivilege = fmt.Errorf("receiving needs CAP_SYS_ADMIN (BTRFS_IOC_SET_RECEIVED_SUBVOL): %w", fs.ErrPermission)

// tmpPrefix starts the name under which a subvolume is received until it
// is complete, read-only and renamed to its name.
const tmpPrefix = ".btrstore-receive-"

// subvol is a subvolume being received.
type subvol struct {
	name     string // final name in dir
	tmp      string // name while received
	fd       int    // its root directory
	uuid     sendstream.UUID
	ctransid uint64
}

type receiver struct {
	ctx   context.Context
	opts  Options
	dir   string
	dirfd int
	srcs  sources
	dec   decoder

	cur     *subvol
	made    []string // names in dir of subvolumes made (tmp or final)
	done    []string // paths of the subvolumes completed
	cache   dirCache
	wpath   string // path of the open write fd
	wfd     int    // -1: none
	encoded bool   // the kernel takes encoded writes (until it refuses one)
}

// Apply applies a send stream (full or incremental, v1 to v3, compressed or
// not, one or several subvolumes, several concatenated streams) below dir,
// as `btrfs receive dir` does, and returns the paths of the subvolumes it
// received.
//
// Each subvolume is made under a temporary name in dir (".btrstore-
// receive-" and random hex), filled, given its received UUID
// (SET_RECEIVED_SUBVOL), made read-only and only then renamed to its name,
// so a subvolume with its final name is always complete. A name that
// already exists in dir is an error matching fs.ErrExist.
//
// Confinement: every path of the stream is resolved below the subvolume
// being received with openat2 (RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS,
// RESOLVE_NO_XDEV): no "..", no absolute path, no symlink followed (a
// symlink the stream made stays a symlink), no mount crossed. Subvolume
// names are single path components. Parent and clone sources are looked up
// by received UUID, then UUID, as btrfs-progs does, but only among
// Options.Sources (default dir) and the subvolumes received earlier from
// the stream: a stream cannot make Apply read (clone from) any other
// subvolume of the filesystem.
//
// On any error, and when ctx is cancelled (checked between commands; a
// read blocked in r is not interrupted: close r for that), Apply deletes
// every subvolume it made, completed ones included, and returns the error:
// nothing it leaves claims to be received. A process killed mid-receive
// leaves a writable subvolume under a temporary name, without received
// UUID; the window in which a kill leaves one with a received UUID but not
// yet read-only is between two ioctls at the end of each subvolume.
//
// Errors: malformed streams match sendstream.ErrCorrupt and fs.ErrInvalid,
// truncated ones io.ErrUnexpectedEOF, unsafe paths ErrUnsafePath, unknown
// parents and clone sources ErrUnknownSource (fs.ErrNotExist), a zstd
// extent to write decompressed without Options.Zstd ErrNoDecompressor
// (errors.ErrUnsupported).
//
// Privilege: CAP_SYS_ADMIN, for SET_RECEIVED_SUBVOL (without it Apply
// returns ErrNeedsPrivilege before touching the disk), ENCODED_WRITE (else
// decompressed) and the tree search that lists nested sources (else the
// unprivileged listing); creating device nodes also needs CAP_MKNOD, chown
// CAP_CHOWN, as for btrfs receive. Kernel: 5.6 for openat2 (older kernels: a
// component-by-component walk that refuses symlinks but cannot see
// mounts), 5.18 for encoded writes (else decompressed). Concurrency: Apply
// calls may run concurrently on different streams and directories; two
// streams with the same subvolume name in one dir: one fails with
// fs.ErrExist.
func Apply(ctx context.Context, r io.Reader, dir string, opts Options) (received []string, err error) {
	if ok, err := kernel.HasCapability(unix.CAP_SYS_ADMIN); err == nil && !ok {
		return nil, &fs.PathError{Op: "receive", Path: dir, Err: ErrNeedsPrivilege}
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	if err := ioctl.CheckBtrfs(dirfd); err != nil {
		return nil, &fs.PathError{Op: "receive", Path: dir, Err: err}
	}
	rc := &receiver{ctx: ctx, opts: opts, dir: dir, dirfd: dirfd, wfd: -1, encoded: !opts.Decompress}
	rc.dec.zstd = opts.Zstd
	rc.srcs.dirs = opts.Sources
	if len(rc.srcs.dirs) == 0 {
		rc.srcs.dirs = []string{dir}
	}
	defer rc.srcs.close()
	defer func() {
		rc.closeFiles()
		if err != nil {
			rc.removeMade()
			received = nil
		}
	}()

	sr := sendstream.NewReader(bufio.NewReaderSize(r, 1<<20))
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := sr.Next()
		if err == io.EOF {
			return rc.done, nil
		}
		if err != nil {
			return nil, err
		}
		if err := rc.apply(c); err != nil {
			if c.Type == sendstream.CmdSubvol || c.Type == sendstream.CmdSnapshot || c.Type == sendstream.CmdEnd {
				return nil, fmt.Errorf("receive %v %q: %w", c.Type, c.Path, err)
			}
			where := ""
			if rc.cur != nil {
				where = rc.cur.name
			}
			return nil, fmt.Errorf("receive %v %q in %q: %w", c.Type, c.Path, where, err)
		}
	}
}

func (rc *receiver) closeFiles() {
	rc.closeWrite()
	rc.cache.drop()
	if rc.cur != nil {
		unix.Close(rc.cur.fd)
		rc.cur = nil
	}
}

// removeMade deletes every subvolume this receive made.
func (rc *receiver) removeMade() {
	for _, name := range rc.made {
		// A completed subvolume is read-only: DeleteSubvolumeAt takes it
		// with CAP_SYS_ADMIN, which receiving needed anyway.
		_ = ioctl.DeleteSubvolumeAt(rc.dirfd, name, ioctl.DeleteRecursive)
	}
	rc.made = nil
}

func (rc *receiver) closeWrite() {
	if rc.wfd >= 0 {
		unix.Close(rc.wfd)
		rc.wfd, rc.wpath = -1, ""
	}
}

func tmpName() string {
	var b [8]byte
	rand.Read(b[:])
	return tmpPrefix + hex.EncodeToString(b[:])
}

// checkName accepts a subvolume name: one path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("%w: subvolume name %q", ErrUnsafePath, name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return fmt.Errorf("%w: subvolume name %q", ErrUnsafePath, name)
		}
	}
	return nil
}

// begin starts receiving subvolume c.Path (SUBVOL or SNAPSHOT).
func (rc *receiver) begin(c *sendstream.Command) error {
	if rc.cur != nil {
		if err := rc.finish(); err != nil {
			return err
		}
	}
	if err := checkName(c.Path); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(rc.dirfd, c.Path, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return &fs.PathError{Op: "receive", Path: filepath.Join(rc.dir, c.Path), Err: fs.ErrExist}
	} else if err != unix.ENOENT {
		return &fs.PathError{Op: "stat", Path: filepath.Join(rc.dir, c.Path), Err: err}
	}
	tmp := tmpName()
	if c.Type == sendstream.CmdSnapshot {
		parent, err := rc.srcs.find(c.CloneUUID)
		if err != nil {
			return err
		}
		if err := ioctl.SnapshotAt(parent.fd, rc.dirfd, tmp, 0); err != nil {
			return err
		}
	} else if err := ioctl.CreateSubvolumeAt(rc.dirfd, tmp); err != nil {
		return err
	}
	rc.made = append(rc.made, tmp)
	fd, err := unix.Openat(rc.dirfd, tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Join(rc.dir, tmp), Err: err}
	}
	rc.cur = &subvol{name: c.Path, tmp: tmp, fd: fd, uuid: c.UUID, ctransid: c.Ctransid}
	return nil
}

// finish completes the current subvolume: received UUID, read-only, name.
func (rc *receiver) finish() error {
	s := rc.cur
	rc.closeWrite()
	rc.cache.drop()
	args := ioctl.ReceivedSubvolArgs{Uuid: s.uuid, Stransid: s.ctransid}
	if err := ioctl.SetReceivedSubvol(s.fd, &args); err != nil {
		return &fs.PathError{Op: "BTRFS_IOC_SET_RECEIVED_SUBVOL", Path: s.name, Err: err}
	}
	if err := ioctl.SetReadOnlyFd(s.fd, true); err != nil {
		return err
	}
	unix.Close(s.fd)
	rc.cur = nil
	if err := unix.Renameat2(rc.dirfd, s.tmp, rc.dirfd, s.name, unix.RENAME_NOREPLACE); err != nil {
		return &fs.PathError{Op: "rename", Path: filepath.Join(rc.dir, s.name), Err: err}
	}
	for i, n := range rc.made {
		if n == s.tmp {
			rc.made[i] = s.name
		}
	}
	p := filepath.Join(rc.dir, s.name)
	rc.done = append(rc.done, p)
	rc.srcs.received(p, s.uuid)
	return nil
}

// openWrite returns an fd open for writing on p, reusing the last one.
func (rc *receiver) openWrite(p string) (int, error) {
	if rc.wfd >= 0 && rc.wpath == p {
		return rc.wfd, nil
	}
	rc.closeWrite()
	if err := checkPath(p, false); err != nil {
		return -1, err
	}
	fd, err := openBeneath(rc.cur.fd, p, unix.O_RDWR, 0)
	if err != nil {
		return -1, pathError("open", p, err)
	}
	rc.wfd, rc.wpath = fd, p
	return fd, nil
}

func errAt(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

func (rc *receiver) apply(c *sendstream.Command) error {
	switch c.Type {
	case sendstream.CmdSubvol, sendstream.CmdSnapshot:
		return rc.begin(c)
	case sendstream.CmdEnd:
		if rc.cur == nil {
			return nil // an empty stream (header and END)
		}
		return rc.finish()
	}
	if rc.cur == nil {
		return fmt.Errorf("%w: %v before any subvol or snapshot command", sendstream.ErrCorrupt, c.Type)
	}
	root := rc.cur.fd
	rc.cache.trim()
	switch c.Type {
	case sendstream.CmdWrite, sendstream.CmdClone, sendstream.CmdEncodedWrite, sendstream.CmdTruncate,
		sendstream.CmdFallocate, sendstream.CmdUpdateExtent:
	default:
		rc.closeWrite()
	}
	switch c.Type {
	case sendstream.CmdMkfile:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(d, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return errAt("create", c.Path, err)
		}
		return unix.Close(fd)
	case sendstream.CmdMkdir:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		return errAt("mkdir", c.Path, unix.Mkdirat(d, name, 0o700))
	case sendstream.CmdMknod, sendstream.CmdMkfifo, sendstream.CmdMksock:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		mode := uint32(c.Mode)
		switch c.Type {
		case sendstream.CmdMkfifo:
			mode = unix.S_IFIFO | 0o600
		case sendstream.CmdMksock:
			mode = unix.S_IFSOCK | 0o600
		default:
			if t := mode & unix.S_IFMT; t != unix.S_IFCHR && t != unix.S_IFBLK && t != unix.S_IFIFO && t != unix.S_IFSOCK {
				return fmt.Errorf("mknod %q with mode %o: %w", c.Path, mode, fs.ErrInvalid)
			}
		}
		return errAt("mknod", c.Path, unix.Mknodat(d, name, mode, int(uint32(c.Rdev))))
	case sendstream.CmdSymlink:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		return errAt("symlink", c.Path, unix.Symlinkat(c.PathLink, d, name))
	case sendstream.CmdRename:
		return rc.twoPaths(root, c.Path, c.PathTo, func(d1 int, n1 string, d2 int, n2 string) error {
			err := unix.Renameat(d1, n1, d2, n2)
			// What both paths (and paths below them) name has changed.
			rc.cache.invalidate(c.Path)
			rc.cache.invalidate(c.PathTo)
			return errAt("rename", c.Path, err)
		})
	case sendstream.CmdLink:
		return rc.twoPaths(root, c.PathLink, c.Path, func(d1 int, n1 string, d2 int, n2 string) error {
			return errAt("link", c.Path, unix.Linkat(d1, n1, d2, n2, 0))
		})
	case sendstream.CmdUnlink:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		return errAt("unlink", c.Path, unix.Unlinkat(d, name, 0))
	case sendstream.CmdRmdir:
		d, name, err := rc.cache.parentOf(root, c.Path, false)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(d, name, unix.AT_REMOVEDIR)
		rc.cache.invalidate(c.Path)
		return errAt("rmdir", c.Path, err)
	case sendstream.CmdSetXattr, sendstream.CmdRemoveXattr:
		d, name, err := rc.cache.parentOf(root, c.Path, true)
		if err != nil {
			return err
		}
		// Through the directory's fd in /proc and l*xattr: the last
		// component is not followed, and fifos or devices are not opened.
		p := "/proc/self/fd/" + strconv.Itoa(d) + "/" + name
		if c.Type == sendstream.CmdSetXattr {
			return errAt("setxattr", c.Path, unix.Lsetxattr(p, c.XattrName, c.XattrData, 0))
		}
		return errAt("removexattr", c.Path, unix.Lremovexattr(p, c.XattrName))
	case sendstream.CmdWrite:
		fd, err := rc.openWrite(c.Path)
		if err != nil {
			return err
		}
		return rc.pwrite(fd, c.Path, c.Data, c.FileOffset)
	case sendstream.CmdEncodedWrite:
		fd, err := rc.openWrite(c.Path)
		if err != nil {
			return err
		}
		return rc.encodedWrite(fd, c)
	case sendstream.CmdClone:
		return rc.clone(c)
	case sendstream.CmdTruncate:
		fd, err := rc.openWrite(c.Path)
		if err != nil {
			return err
		}
		if c.Size > 1<<62 {
			return fmt.Errorf("truncate %q to %d: %w", c.Path, c.Size, fs.ErrInvalid)
		}
		return errAt("truncate", c.Path, unix.Ftruncate(fd, int64(c.Size)))
	case sendstream.CmdFallocate:
		fd, err := rc.openWrite(c.Path)
		if err != nil {
			return err
		}
		if c.FileOffset > 1<<62 || c.Size > 1<<62 {
			return fmt.Errorf("fallocate %q: %w", c.Path, fs.ErrInvalid)
		}
		return errAt("fallocate", c.Path, unix.Fallocate(fd, c.FallocateMode, int64(c.FileOffset), int64(c.Size)))
	case sendstream.CmdChmod:
		d, name, err := rc.cache.parentOf(root, c.Path, true)
		if err != nil {
			return err
		}
		return errAt("chmod", c.Path, chmodNoFollow(d, name, uint32(c.Mode&0o7777)))
	case sendstream.CmdChown:
		d, name, err := rc.cache.parentOf(root, c.Path, true)
		if err != nil {
			return err
		}
		if c.UID > 1<<32-1 || c.GID > 1<<32-1 {
			return fmt.Errorf("chown %q to %d:%d: %w", c.Path, c.UID, c.GID, fs.ErrInvalid)
		}
		return errAt("chown", c.Path, unix.Fchownat(d, name, int(c.UID), int(c.GID), unix.AT_SYMLINK_NOFOLLOW))
	case sendstream.CmdUtimes:
		d, name, err := rc.cache.parentOf(root, c.Path, true)
		if err != nil {
			return err
		}
		// TimeToTimespec: ERANGE where the time does not fit (32-bit time_t).
		atime, err := unix.TimeToTimespec(time.Unix(c.Atime.Sec, int64(c.Atime.Nsec)))
		if err != nil {
			return errAt("utimes", c.Path, err)
		}
		mtime, err := unix.TimeToTimespec(time.Unix(c.Mtime.Sec, int64(c.Mtime.Nsec)))
		if err != nil {
			return errAt("utimes", c.Path, err)
		}
		ts := []unix.Timespec{atime, mtime}
		return errAt("utimes", c.Path, unix.UtimesNanoAt(d, name, ts, unix.AT_SYMLINK_NOFOLLOW))
	case sendstream.CmdUpdateExtent:
		// Streams made without file data (--no-data) carry these; like
		// btrfs receive, there is nothing to apply.
		return nil
	case sendstream.CmdFileattr:
		// The kernel does not send it yet; btrfs receive ignores it too.
		return nil
	case sendstream.CmdEnableVerity:
		return rc.enableVerity(c)
	}
	return fmt.Errorf("%w: command %v not handled", sendstream.ErrCorrupt, c.Type)
}

// twoPaths resolves the parents of two paths through the cache.
func (rc *receiver) twoPaths(root int, p1, p2 string, fn func(int, string, int, string) error) error {
	d1, n1, err := rc.cache.parentOf(root, p1, false)
	if err != nil {
		return err
	}
	d2, n2, err := rc.cache.parentOf(root, p2, false)
	if err != nil {
		return err
	}
	return fn(d1, n1, d2, n2)
}

// chmodNoFollow changes the mode of name in d, never through a symlink:
// fchmodat2 with AT_SYMLINK_NOFOLLOW (Linux 6.6); before it, a check that
// name is not a symlink and fchmodat. A symlink's mode is left alone (the
// kernel never sends chmod for one).
func chmodNoFollow(d int, name string, mode uint32) error {
	err := unix.Fchmodat(d, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	return unix.Fchmodat(d, name, mode, 0)
}

func (rc *receiver) pwrite(fd int, p string, data []byte, off uint64) error {
	if off > 1<<62 {
		return fmt.Errorf("write %q at %d: %w", p, off, fs.ErrInvalid)
	}
	for len(data) > 0 {
		n, err := unix.Pwrite(fd, data, int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return errAt("write", p, err)
		}
		data, off = data[n:], off+uint64(n)
	}
	return nil
}

// encodedWrite passes compressed data to the kernel as it is
// (BTRFS_IOC_ENCODED_WRITE) or, when that is off or refused, writes it
// decompressed.
func (rc *receiver) encodedWrite(fd int, c *sendstream.Command) error {
	if c.FileOffset > 1<<62 {
		return fmt.Errorf("encoded write %q at %d: %w", c.Path, c.FileOffset, fs.ErrInvalid)
	}
	if rc.encoded && len(c.Data) > 0 {
		iov := unix.Iovec{Base: &c.Data[0]}
		iov.SetLen(len(c.Data))
		args := ioctl.EncodedIOArgs{
			Iov:              uintptr(unsafe.Pointer(&iov)),
			Iovcnt:           1,
			Offset:           int64(c.FileOffset),
			Len:              c.UnencodedFileLen,
			Unencoded_len:    c.UnencodedLen,
			Unencoded_offset: c.UnencodedOffset,
			Compression:      c.Compression,
			Encryption:       c.Encryption,
		}
		_, err := ioctl.EncodedWrite(fd, &args)
		runtime.KeepAlive(&iov)
		runtime.KeepAlive(c.Data)
		if err == nil {
			return nil
		}
		// ENOTTY/EINVAL (old kernel), EPERM (no CAP_SYS_ADMIN),
		// EOPNOTSUPP: decompress from now on. Other errors: this
		// extent only.
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			rc.encoded = false
		}
	}
	data, err := rc.dec.decode(c)
	if err != nil {
		return fmt.Errorf("%q: %w", c.Path, err)
	}
	return rc.pwrite(fd, c.Path, data, c.FileOffset)
}

// clone shares an extent of a file of the current subvolume, or of an
// allowed source subvolume, into c.Path (FICLONERANGE).
func (rc *receiver) clone(c *sendstream.Command) error {
	dst, err := rc.openWrite(c.Path)
	if err != nil {
		return err
	}
	srcRoot := rc.cur.fd
	if c.CloneUUID != rc.cur.uuid {
		src, err := rc.srcs.find(c.CloneUUID)
		if err != nil {
			return err
		}
		srcRoot = src.fd
	}
	if err := checkPath(c.ClonePath, false); err != nil {
		return err
	}
	sfd, err := openBeneath(srcRoot, c.ClonePath, unix.O_RDONLY, 0)
	if err != nil {
		return pathError("open clone source", c.ClonePath, err)
	}
	defer unix.Close(sfd)
	if c.CloneOffset > 1<<62 || c.FileOffset > 1<<62 || c.CloneLen > 1<<62 {
		return fmt.Errorf("clone %q: %w", c.Path, fs.ErrInvalid)
	}
	return errAt("clone", c.Path, unix.IoctlFileCloneRange(dst, &unix.FileCloneRange{
		Src_fd: int64(sfd), Src_offset: c.CloneOffset, Src_length: c.CloneLen, Dest_offset: c.FileOffset,
	}))
}

// enableVerity enables fs-verity on c.Path with the stream's parameters.
func (rc *receiver) enableVerity(c *sendstream.Command) error {
	if err := checkPath(c.Path, false); err != nil {
		return err
	}
	fd, err := openBeneath(rc.cur.fd, c.Path, unix.O_RDONLY, 0)
	if err != nil {
		return pathError("open", c.Path, err)
	}
	defer unix.Close(fd)
	arg := unix.FsverityEnableArg{
		Version:        1,
		Hash_algorithm: uint32(c.VerityAlgorithm),
		Block_size:     c.VerityBlockSize,
		Salt_size:      uint32(len(c.VeritySalt)),
		Sig_size:       uint32(len(c.VeritySig)),
	}
	if len(c.VeritySalt) > 0 {
		arg.Salt_ptr = uint64(uintptr(unsafe.Pointer(&c.VeritySalt[0])))
	}
	if len(c.VeritySig) > 0 {
		arg.Sig_ptr = uint64(uintptr(unsafe.Pointer(&c.VeritySig[0])))
	}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.FS_IOC_ENABLE_VERITY, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(c.VeritySalt)
	runtime.KeepAlive(c.VeritySig)
	if e != 0 {
		return errAt("FS_IOC_ENABLE_VERITY", c.Path, e)
	}
	return nil
}
