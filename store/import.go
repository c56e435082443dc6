package store

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/receive"
	"github.com/btrstore/btrstore/remote"
	"golang.org/x/sys/unix"
)

// ImportOptions configures Import.
type ImportOptions struct {
	// TrustedKeys are the keys whose signatures Import accepts. None:
	// every Import fails with ErrUntrusted.
	TrustedKeys []ed25519.PublicKey
	// Zstd decompresses zstd extents that the kernel refuses to take
	// compressed (see receive.Options.Zstd: pass zstd.Decompress from
	// github.com/btrstore/btrstore/receive/zstd). Nil: such an extent
	// fails the Import (receive.ErrNoDecompressor); with CAP_SYS_ADMIN
	// on Linux 5.18 or later the kernel takes them as they are.
	Zstd receive.Decompressor
}

// maxChain bounds the parents an Import follows: a longer chain (or one
// that loops, which no honest exporter makes) fails with fs.ErrInvalid.
const maxChain = 64

// Names in an import's directory result-tmp/i<n>: the result being
// received (out/<id>/snapshot, as Build stages it), and the parents that
// are received only to apply an increment to (chain/c<n>/snapshot).
const (
	importChainDir = "chain"
)

// Import brings result id from src into the store: it fetches id's
// manifest and checks its signature against opts.TrustedKeys, receives its
// stream (receive.Apply, confined to a directory of its own in
// result-tmp) while checking the stream's size and SHA-256 against the
// manifest, and only then publishes the result exactly as Build does:
// complete and read-only, by one atomic rename into result/, or not at
// all. The result's received UUID is set (the sender's identity).
//
// The parent of an incremental stream must be here: a parent that is
// absent is imported first, the same way (recursively, and published as a
// result of its own); a parent that is here and is the stream's parent
// (same received UUID, or UUID) is used as it is, and only the increment
// is transferred. A result of the parent's id that was built here
// independently has another identity and cannot be the base of the
// sender's increment: Import then receives the sender's parent chain into
// its temporary directory as well (full stream of the first result in the
// chain that is not here, then each increment), applies id's stream on
// top and deletes those copies, publishing id alone: this transfers as
// much as a full stream would, and keeps the local result of the
// parent's id as it is.
//
// Errors: id not a valid id: fs.ErrInvalid; result id exists here:
// fs.ErrExist; id (or a parent the chain needs) has no manifest on src:
// fs.ErrNotExist; a manifest that is unsigned, signed by no trusted key
// or altered, or a stream that does not match its manifest (a byte
// changed, cut short, extended): ErrUntrusted. On any error, and when ctx
// ends (the transfer stops at once), nothing is published and nothing is
// left in result-tmp; a process killed mid-import leaves its directory
// in result-tmp, which the next Open removes (parents it had published
// stay: they are complete results).
//
// Privilege: CAP_SYS_ADMIN (receiving sets the received UUID). Kernel:
// 5.6 (openat2, which confines the receive). Concurrency: safe; Imports
// (and Builds) of one id are serialized: a second waits for the first and
// then fails with fs.ErrExist if the first published it, so one transfer
// happens. Imports of different ids run in parallel; a Delete of a parent
// waits until the increment is applied.
func (s *Store) Import(ctx context.Context, id string, src remote.Remote, opts ImportOptions) error {
	if err := validID(id); err != nil {
		return err
	}
	if src == nil {
		return fmt.Errorf("btrstore: import %s: nil remote: %w", id, fs.ErrInvalid)
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := s.importID(ctx, id, src, opts, nil); err != nil {
		return fmt.Errorf("btrstore: import %s: %w", id, err)
	}
	return nil
}

// importID imports id, which chain (the ids being imported, each the
// child of the next) needs.
func (s *Store) importID(ctx context.Context, id string, src remote.Remote, opts ImportOptions, chain []string) (err error) {
	if slices.Contains(chain, id) || len(chain) >= maxChain {
		return fmt.Errorf("the chain of parents of %s is longer than %d or loops: %w", chain[0], maxChain, fs.ErrInvalid)
	}
	if s.haveResult(id) {
		return fmt.Errorf("result %s exists: %w", id, fs.ErrExist)
	}
	unlockBuild, err := s.builds.Lock(ctx, id, false)
	if err != nil {
		return err
	}
	defer unlockBuild()
	if s.haveResult(id) { // imported or built while we waited
		return fmt.Errorf("result %s exists: %w", id, fs.ErrExist)
	}
	m, err := fetchManifest(ctx, id, src, opts)
	if err != nil {
		return err
	}

	start := time.Now()
	var received int64
	tmp, tmpFd, err := s.mkdirOpenTmp(s.resultTmpFd, "i")
	if err != nil {
		return explainEPERM(err, s.resultTmpFd, resultTmpDir)
	}
	defer func() {
		unix.Close(tmpFd)
		if cerr := s.removeEntry(s.resultTmpFd, resultTmpDir, tmp); cerr != nil {
			s.log.Error(cerr, "removing import directory failed; Open retries", "id", id, "dir", resultTmpDir+"/"+tmp)
			if err != nil {
				err = fmt.Errorf("%w; removing its directory %s/%s failed too (Open retries): %w", err, resultTmpDir, tmp, cerr)
			}
		}
		switch {
		case err == nil:
			s.log.V(1).Info("import done", "id", id, "parent", parentID(m.Parent), "bytes", received, "duration", time.Since(start))
		case errors.Is(err, ErrUntrusted):
			s.log.Error(err, "import refused", "id", id)
		default:
			s.log.V(1).Info("import failed", "id", id, "err", err.Error(), "duration", time.Since(start))
		}
	}()
	sources, done, err := s.parentSources(ctx, &m, src, opts, tmpFd, append(chain, id))
	if err != nil {
		return err
	}
	defer done()
	outFd, err := mkdirOpen(tmpFd, stageDir)
	if err != nil {
		return err
	}
	defer unix.Close(outFd)
	stageFd, err := mkdirOpen(outFd, id)
	if err != nil {
		return err
	}
	defer unix.Close(stageFd)
	if received, err = receiveVerified(ctx, &m, src, stageFd, sources, opts.Zstd); err != nil {
		return err
	}
	if err := setBase(stageFd, parentID(m.Parent)); err != nil {
		return err
	}
	if err := s.failAt("import-received"); err != nil {
		return err
	}
	if err := moveNoReplace(outFd, id, s.resultFd, id); err != nil {
		if errors.Is(err, fs.ErrExist) && s.removeNonResult(id) {
			err = moveNoReplace(outFd, id, s.resultFd, id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// haveResult reports whether result id is here (and not something a
// build step planted in its place).
func (s *Store) haveResult(id string) bool {
	if !s.resultExists(id) {
		return false
	}
	_, err := s.result(id)
	return !errors.Is(err, fs.ErrNotExist)
}

// fetchManifest gets and verifies id's manifest from src.
func fetchManifest(ctx context.Context, id string, src remote.Remote, opts ImportOptions) (remote.Manifest, error) {
	data, err := src.GetManifest(ctx, manifestName(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return remote.Manifest{}, fmt.Errorf("%s is not on the remote: %w", id, err)
		}
		return remote.Manifest{}, err
	}
	m, err := remote.Verify(data, opts.TrustedKeys)
	if err != nil {
		return remote.Manifest{}, err
	}
	if m.ID != id {
		// Signed, but for another id: moved, not made for this name.
		return remote.Manifest{}, fmt.Errorf("the manifest stored for %s is that of %q: %w", id, truncate(m.ID), ErrUntrusted)
	}
	if m.Parent != nil && validID(m.Parent.ID) != nil {
		return remote.Manifest{}, fmt.Errorf("the manifest of %s names parent %q, not a valid id: %w", id, truncate(m.Parent.ID), ErrUntrusted)
	}
	if len(m.Clones) > 0 {
		return remote.Manifest{}, fmt.Errorf("manifest of %s names clone sources, which this version does not import: %w", id, errors.ErrUnsupported)
	}
	return m, nil
}

// parentSources makes m's parent available for receiving m's stream and
// returns the directories to give receive.Apply as sources, and a done
// func that releases them (after the receive). See Import for the three
// cases. Parents received only as a base go in tmpFd's chain directory.
func (s *Store) parentSources(ctx context.Context, m *remote.Manifest, src remote.Remote, opts ImportOptions, tmpFd int, chain []string) ([]string, func(), error) {
	nothing := func() {}
	if m.Parent == nil {
		return nil, nothing, nil
	}
	p := *m.Parent
	if !s.haveResult(p.ID) {
		err := s.importID(ctx, p.ID, src, opts, chain)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, nothing, fmt.Errorf("importing parent %s: %w", p.ID, err)
		}
	}
	unlock := s.lockResult(p.ID, true) // a Delete of the parent waits
	if u, err := s.resultIdentity(p.ID); err == nil && u == p.UUID {
		fd, err := openDirAt(s.resultFd, p.ID)
		if err == nil {
			return []string{fdDir(fd)}, func() { unix.Close(fd); unlock() }, nil
		}
	}
	unlock()
	// The local p.ID is not the sender's (built here independently), or
	// went away meanwhile: receive the sender's p.ID as a base only.
	s.log.V(1).Info("the parent here is not the stream's; receiving the sender's parent chain", "id", m.ID, "parent", p.ID)
	pm, err := fetchManifest(ctx, p.ID, src, opts)
	if err != nil {
		return nil, nothing, fmt.Errorf("parent %s: %w", p.ID, err)
	}
	if pm.UUID != p.UUID {
		return nil, nothing, fmt.Errorf("the remote's %s (%s) is not the parent %s's stream was made against (%s); export %s again from a host that has it: %w",
			p.ID, pm.UUID, m.ID, p.UUID, m.ID, fs.ErrNotExist)
	}
	if slices.Contains(chain, p.ID) || len(chain) >= maxChain {
		return nil, nothing, fmt.Errorf("the chain of parents of %s is longer than %d or loops: %w", chain[0], maxChain, fs.ErrInvalid)
	}
	psrc, pdone, err := s.parentSources(ctx, &pm, src, opts, tmpFd, append(chain, p.ID))
	if err != nil {
		return nil, nothing, err
	}
	defer pdone()
	chainFd, err := openDirAt(tmpFd, importChainDir)
	if errors.Is(err, fs.ErrNotExist) {
		chainFd, err = mkdirOpen(tmpFd, importChainDir)
	}
	if err != nil {
		return nil, nothing, err
	}
	defer unix.Close(chainFd)
	_, dirFd, err := s.mkdirOpenTmp(chainFd, "c")
	if err != nil {
		return nil, nothing, err
	}
	if _, err := receiveVerified(ctx, &pm, src, dirFd, psrc, opts.Zstd); err != nil {
		unix.Close(dirFd)
		return nil, nothing, fmt.Errorf("parent %s: %w", p.ID, err)
	}
	return []string{fdDir(dirFd)}, func() { unix.Close(dirFd) }, nil
}

// fdDir is a path that leads to the directory open as fd and nowhere
// else, whatever was planted on the way meanwhile.
func fdDir(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// receiveVerified receives m's stream from src into the directory open as
// dirFd, with sources as receive.Apply's sources, checking the stream
// against m to its very end (zstd decompresses what the kernel does not
// take compressed), and checks what arrived: one read-only
// subvolume "snapshot" with m's identity as its received UUID. It returns
// the stream's size.
func receiveVerified(ctx context.Context, m *remote.Manifest, src remote.Remote, dirFd int, sources []string, zstd receive.Decompressor) (int64, error) {
	rc, err := src.GetBlob(ctx, m.Blob)
	if err != nil {
		return 0, fmt.Errorf("stream of %s: %w", m.ID, err)
	}
	defer rc.Close()
	counted := &countingReader{r: rc}
	vr := m.VerifyingReader(counted)
	got, err := receive.Apply(ctx, vr, fdDir(dirFd), receive.Options{Sources: sources, Zstd: zstd})
	if err == nil || (ctx.Err() == nil && !errors.Is(err, ErrUntrusted)) {
		// The receiver stops at the stream's end command, or at what it
		// took for corruption: only the digest of the whole blob says
		// whether the blob is the one signed for.
		if _, derr := io.Copy(io.Discard, vr); derr != nil {
			if err != nil && errors.Is(derr, ErrUntrusted) {
				err = fmt.Errorf("%w (receiving: %v)", derr, err)
			} else if err == nil {
				err = derr
			}
		}
	}
	if err != nil {
		return counted.n, fmt.Errorf("stream of %s: %w", m.ID, err)
	}
	if len(got) != 1 || got[0] != snapshotName && !hasBase(got[0], snapshotName) {
		return counted.n, fmt.Errorf("stream of %s holds %q, not one subvolume %q: %w", m.ID, got, snapshotName, fs.ErrInvalid)
	}
	fd, err := openDirAt(dirFd, snapshotName)
	if err != nil {
		return counted.n, err
	}
	defer unix.Close(fd)
	info, err := ioctl.SubvolumeInfoFd(fd)
	switch {
	case err != nil:
		return counted.n, &fs.PathError{Op: "BTRFS_IOC_GET_SUBVOL_INFO", Path: m.ID, Err: err}
	case !info.ReadOnly || remote.UUID(info.ReceivedUUID) != m.UUID:
		return counted.n, fmt.Errorf("stream of %s received as %s, manifest says %s: %w", m.ID, remote.UUID(info.ReceivedUUID), m.UUID, ErrUntrusted)
	}
	return counted.n, nil
}

// hasBase reports whether path p ends in the component name.
func hasBase(p, name string) bool {
	return len(p) > len(name) && p[len(p)-len(name)-1] == '/' && p[len(p)-len(name):] == name
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
