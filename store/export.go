package store

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/remote"
	"golang.org/x/sys/unix"
)

// ErrUntrusted is matched by the error of an Import whose manifest is
// unsigned, signed by no trusted key, or altered, or whose stream does not
// match its manifest. It is remote.ErrUntrusted.
var ErrUntrusted = remote.ErrUntrusted

// ExportOptions configures Export.
type ExportOptions struct {
	// SigningKey signs the manifest. Required: an Export without a key
	// fails with fs.ErrInvalid before anything is sent.
	SigningKey ed25519.PrivateKey
}

// baseXattr is the extended attribute of the plain directory result/<id>
// that names the result's base: the result Build snapshotted (absent for
// a result built from empty), or the parent of the stream Import
// received. Export sends incrementally against it.
const baseXattr = "user.btrstore.base"

// setBase records base on the result directory open as fd; "" records
// nothing.
func setBase(fd int, base string) error {
	if base == "" {
		return nil
	}
	if err := unix.Fsetxattr(fd, baseXattr, []byte(base), 0); err != nil {
		return &fs.PathError{Op: "fsetxattr", Path: baseXattr, Err: err}
	}
	return nil
}

// baseOf returns the base recorded for result id, "" if none (or if it
// cannot be read: Export then sends a full stream).
func (s *Store) baseOf(id string) string {
	fd, err := openDirAt(s.resultFd, id)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	buf := make([]byte, maxName+1)
	n, err := unix.Fgetxattr(fd, baseXattr, buf)
	if err != nil || n > maxName || validID(string(buf[:n])) != nil {
		return ""
	}
	return string(buf[:n])
}

// identity returns what a receiver knows the subvolume open as fd by: its
// received UUID if set, else its UUID (the UUID a send stream names it
// by).
func identity(info ioctl.SubvolInfo) remote.UUID {
	if info.ReceivedUUID != (ioctl.UUID{}) {
		return remote.UUID(info.ReceivedUUID)
	}
	return remote.UUID(info.UUID)
}

// resultIdentity returns the identity of result id's snapshot.
func (s *Store) resultIdentity(id string) (remote.UUID, error) {
	fd, err := openDirAt(s.resultFd, id+"/"+snapshotName)
	if err != nil {
		return remote.UUID{}, err
	}
	defer unix.Close(fd)
	info, err := ioctl.SubvolumeInfoFd(fd)
	if err != nil {
		return remote.UUID{}, &fs.PathError{Op: "BTRFS_IOC_GET_SUBVOL_INFO", Path: resultDir + "/" + id, Err: err}
	}
	return identity(info), nil
}

// manifestName and blobName are where result id is stored on a remote:
// the manifest under the escaped id, the stream under the escaped id and
// the identity of the subvolume sent, so that two hosts that built the
// same id independently never write the same blob.
func manifestName(id string) string { return remote.EscapeName(id) }

func blobName(id string, u remote.UUID, incremental bool) string {
	kind := ".full"
	if incremental {
		kind = ".incr"
	}
	return remote.EscapeName(id + "@" + u.String() + kind)
}

// Export uploads result id to dst: its send stream as a blob, then a
// manifest signed with opts.SigningKey that names the stream's digest,
// size and parent. The stream is incremental against the result's base
// (recorded by Build, or by Import) when the base is still here and dst
// holds a manifest of it with the same identity (received UUID, else
// UUID), so that a receiver holding that base can apply it; otherwise
// it is a full stream. Compressed extents are passed through as they are
// when the kernel offers stream version 2. The stream goes from the
// kernel to dst as it is made, hashed on the way: nothing is spooled to
// disk. The manifest is created last, create-only: a reader never sees a
// manifest whose blob is incomplete.
//
// Export is idempotent: if dst has a manifest for id, it returns nil and
// uploads nothing (whoever published first wins, even a host that built
// id independently; Import copes with that). A failed Export leaves no
// manifest; a blob it was writing is removed by the remote (PutBlob's
// contract).
//
// Errors: id not a valid id: fs.ErrInvalid; no result id: fs.ErrNotExist;
// no or a malformed SigningKey: fs.ErrInvalid; errors of dst name it.
// ctx cancels the send and the upload.
//
// Privilege: CAP_SYS_ADMIN (BTRFS_IOC_SEND). Kernel: 4.18; compressed
// pass-through from 6.0. Concurrency: safe; Exports of one id in this
// Store are serialized, and a Delete of id or its base waits for the send.
func (s *Store) Export(ctx context.Context, id string, dst remote.Remote, opts ExportOptions) error {
	if err := validID(id); err != nil {
		return err
	}
	if len(opts.SigningKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("btrstore: export %s: signing key of %d bytes, want %d: %w", id, len(opts.SigningKey), ed25519.PrivateKeySize, fs.ErrInvalid)
	}
	if dst == nil {
		return fmt.Errorf("btrstore: export %s: nil remote: %w", id, fs.ErrInvalid)
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	unlockBuild, err := s.builds.Lock(ctx, exportLockName(id), false)
	if err != nil {
		return err
	}
	defer unlockBuild()
	start := time.Now()
	sent, base, err := s.export(ctx, id, dst, opts)
	if err != nil {
		s.log.Error(err, "export failed", "id", id, "duration", time.Since(start))
		return fmt.Errorf("btrstore: export %s: %w", id, err)
	}
	if sent >= 0 {
		s.log.V(1).Info("export done", "id", id, "base", base, "bytes", sent, "duration", time.Since(start))
	}
	return nil
}

// exportLockName is the key of the builds lock table that serializes
// Exports of id; it cannot be an id (ids have no NUL).
func exportLockName(id string) string { return "\x00export\x00" + id }

// export does Export's work and returns the bytes sent (-1 if the
// manifest was there already) and the parent used ("" for a full stream).
func (s *Store) export(ctx context.Context, id string, dst remote.Remote, opts ExportOptions) (int64, string, error) {
	name := manifestName(id)
	if data, err := dst.GetManifest(ctx, name); err == nil {
		if theirs, perr := remote.ParseUnverified(data); perr == nil {
			if self, ierr := s.resultIdentity(id); ierr == nil && self != theirs.UUID {
				s.log.V(1).Info("the remote has another build of this id; exporting nothing", "id", id, "remote", theirs.UUID.String(), "here", self.String())
			}
		}
		return -1, "", nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, "", err
	}
	unlock := s.lockResult(id, true) // Delete waits for the send
	defer unlock()
	if _, err := s.result(id); err != nil {
		return 0, "", err
	}
	self, err := s.resultIdentity(id)
	if err != nil {
		return 0, "", err
	}
	m := remote.Manifest{ID: id, UUID: self, Producer: producer(), Kernel: kernelRelease()}
	sendOpts := ioctl.SendOptions{Compressed: ioctl.SendStreamVersion() >= 2}
	// Send opens what it sends by path: /proc/self/fd paths of what the
	// store opened lead there, and through no symlink planted meanwhile.
	srcFd, err := openDirAt(s.resultFd, id+"/"+snapshotName)
	if err != nil {
		return 0, "", err
	}
	defer unix.Close(srcFd)
	if base := s.baseOf(id); base != "" {
		unlockBase := s.lockResult(base, true)
		defer unlockBase()
		if parent, ok := s.remoteParent(ctx, base, dst); ok {
			if baseFd, err := openDirAt(s.resultFd, base+"/"+snapshotName); err == nil {
				defer unix.Close(baseFd)
				m.Parent = &remote.Source{ID: base, UUID: parent}
				sendOpts.Parent = fdDir(baseFd)
			}
		}
	}
	m.Blob = blobName(id, self, m.Parent != nil)

	// kernel → pipe → hash → dst, with no copy on disk.
	pr, pw := io.Pipe()
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendDone := make(chan error, 1)
	go func() {
		err := ioctl.Send(sendCtx, pw, fdDir(srcFd), sendOpts)
		pw.CloseWithError(err) // nil: io.EOF for the reader
		sendDone <- err
	}()
	h := sha256.New()
	size, err := dst.PutBlob(ctx, m.Blob, io.TeeReader(pr, h))
	if err != nil {
		cancel()
		pr.CloseWithError(err) // the sender's writes fail: Send ends
	}
	serr := <-sendDone
	if err == nil && serr != nil {
		err = serr // PutBlob succeeded with what it got: not the stream
		dst.DeleteBlob(ctx, m.Blob)
	}
	if err != nil {
		if serr != nil && !errors.Is(err, serr) {
			err = fmt.Errorf("%w (send: %v)", err, serr)
		}
		return 0, parentID(m.Parent), err
	}
	h.Sum(m.Digest[:0])
	m.Size = size
	m.Created = time.Now()
	data, err := m.Sign(opts.SigningKey)
	if err != nil {
		return 0, "", err
	}
	if err := dst.CreateManifest(ctx, name, data); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return 0, "", err
		}
		// Someone published id meanwhile (another host): theirs wins;
		// our blob goes unless it is the one they named.
		if theirs, gerr := dst.GetManifest(ctx, name); gerr == nil {
			if tm, perr := remote.ParseUnverified(theirs); perr == nil && tm.Blob != m.Blob {
				dst.DeleteBlob(ctx, m.Blob)
			}
		}
		return -1, "", nil
	}
	return size, parentID(m.Parent), nil
}

// remoteParent reports whether dst has a manifest of base whose identity
// is that of the local result base, and returns that identity: a stream
// incremental against it can then be applied by any host that imported
// base from dst. The manifest's signature is not checked here (its signer
// may be another host's key): a lying manifest can only make the
// increment useless to importers, which then fall back (see Import).
func (s *Store) remoteParent(ctx context.Context, base string, dst remote.Remote) (remote.UUID, bool) {
	if _, err := s.result(base); err != nil {
		return remote.UUID{}, false
	}
	local, err := s.resultIdentity(base)
	if err != nil {
		return remote.UUID{}, false
	}
	data, err := dst.GetManifest(ctx, manifestName(base))
	if err != nil {
		return remote.UUID{}, false
	}
	m, err := remote.ParseUnverified(data)
	if err != nil || m.ID != base || m.UUID != local {
		return remote.UUID{}, false
	}
	return local, true
}

// parentID is p's id, "" for none.
func parentID(p *remote.Source) string {
	if p == nil {
		return ""
	}
	return p.ID
}

func producer() string {
	host, _ := os.Hostname()
	return "btrstore on " + host
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
