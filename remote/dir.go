package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Dir is a Remote in a directory: blobs in its subdirectory blobs/,
// manifests in manifests/. It suits a local disk and a filesystem several
// machines mount (NFS included), and tests.
//
// Every object is written to a temporary file (a name starting with '.',
// which no valid name does) in its final directory, fsync'ed, and then
// renamed into place (a blob: rename(2), replacing) or linked into place
// (a manifest: link(2), which fails with EEXIST if the name exists, and is
// atomic on NFS as on local filesystems, unlike O_EXCL over NFSv2); the
// directory is then fsync'ed. So a reader never sees a partial object, and
// a crash leaves at most a temporary file, which NewDir removes once it is
// a day old (a day without a write: a live upload keeps it fresh).
type Dir struct {
	path string
}

var _ Remote = (*Dir)(nil)

const (
	blobsDir     = "blobs"
	manifestsDir = "manifests"
	tmpPrefix    = ".tmp-"
	staleTmp     = 24 * time.Hour
)

// NewDir returns the Remote in directory path, which must exist; it creates
// blobs/ and manifests/ in it if missing (mode 0755) and removes temporary
// files left there by a crash more than a day ago.
//
// Privilege: write access to path. Kernel: any. The returned Remote is
// safe for concurrent use, by goroutines and by processes on machines
// sharing the directory.
func NewDir(path string) (Remote, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("remote: dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("remote: dir %s: not a directory: %w", path, fs.ErrInvalid)
	}
	d := &Dir{path: path}
	for _, sub := range []string{blobsDir, manifestsDir} {
		if err := os.Mkdir(filepath.Join(path, sub), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("remote: dir: %w", err)
		}
		d.removeStale(sub)
	}
	return d, nil
}

// String returns the directory's path.
func (d *Dir) String() string { return d.path }

func (d *Dir) removeStale(sub string) {
	entries, err := os.ReadDir(filepath.Join(d.path, sub))
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
			os.Remove(filepath.Join(d.path, sub, e.Name())) // best effort
		}
	}
}

func (d *Dir) file(sub, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", fmt.Errorf("remote: dir %s: %w", d.path, err)
	}
	return filepath.Join(d.path, sub, name), nil
}

// fileCtx is file, then fails if ctx is done: the start of every read or
// removal.
func (d *Dir) fileCtx(ctx context.Context, sub, name string) (string, error) {
	p, err := d.file(sub, name)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return p, nil
}

// open opens the file name in sub for reading; op ("get blob") words its
// error.
func (d *Dir) open(ctx context.Context, sub, name, op string) (*os.File, error) {
	p, err := d.fileCtx(ctx, sub, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("remote: dir %s: %s: %w", d.path, op, err)
	}
	return f, nil
}

// ctxReader fails a Read once ctx is done, so a long copy stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeTemp writes r into a new temporary file in dir, fsyncs it and
// returns its path and size; on error it leaves nothing.
func writeTemp(ctx context.Context, dir string, r io.Reader) (_ string, n int64, err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if n, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return "", 0, err
	}
	if err = f.Chmod(0o644); err != nil {
		return "", 0, err
	}
	if err = f.Sync(); err != nil {
		return "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", 0, err
	}
	return tmp, n, nil
}

// twoLinks reports whether the file at p has exactly two hard links.
func twoLinks(p string) bool {
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Nlink == 2
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// PutBlob implements Remote.
func (d *Dir) PutBlob(ctx context.Context, name string, r io.Reader) (int64, error) {
	final, err := d.file(blobsDir, name)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(final)
	tmp, n, err := writeTemp(ctx, dir, r)
	if err != nil {
		return 0, fmt.Errorf("remote: dir %s: put blob %s: %w", d.path, name, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("remote: dir %s: put blob %s: %w", d.path, name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("remote: dir %s: put blob %s: %w", d.path, name, err)
	}
	if err := syncDir(dir); err != nil {
		return 0, fmt.Errorf("remote: dir %s: put blob %s: %w", d.path, name, err)
	}
	return n, nil
}

// GetBlob implements Remote.
func (d *Dir) GetBlob(ctx context.Context, name string) (io.ReadCloser, error) {
	f, err := d.open(ctx, blobsDir, name, "get blob")
	if err != nil {
		return nil, err
	}
	return ctxReadCloser{ctxReader{ctx, f}, f}, nil
}

type ctxReadCloser struct {
	ctxReader
	io.Closer
}

// StatBlob implements Remote.
func (d *Dir) StatBlob(ctx context.Context, name string) (int64, error) {
	p, err := d.fileCtx(ctx, blobsDir, name)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("remote: dir %s: stat blob: %w", d.path, err)
	}
	return st.Size(), nil
}

// DeleteBlob implements Remote.
func (d *Dir) DeleteBlob(ctx context.Context, name string) error {
	return d.remove(ctx, blobsDir, name)
}

// ListBlobs implements Remote.
func (d *Dir) ListBlobs(ctx context.Context, prefix string) ([]string, error) {
	return d.list(ctx, blobsDir, prefix)
}

// CreateManifest implements Remote.
func (d *Dir) CreateManifest(ctx context.Context, name string, data []byte) error {
	final, err := d.file(manifestsDir, name)
	if err != nil {
		return err
	}
	if len(data) > MaxManifestSize {
		return fmt.Errorf("remote: dir %s: create manifest %s: %d bytes, more than %d: %w", d.path, name, len(data), MaxManifestSize, fs.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	tmp, _, err := writeTemp(ctx, dir, strings.NewReader(string(data)))
	if err != nil {
		return fmt.Errorf("remote: dir %s: create manifest %s: %w", d.path, name, err)
	}
	defer os.Remove(tmp)
	// link(2), not rename(2): it fails if final exists. The *LinkError
	// unwraps to EEXIST, which matches fs.ErrExist. Over NFS a link whose
	// reply was lost is sent again and fails with EEXIST although it was
	// made: then tmp has two links (open(2), O_EXCL, the NFS recipe).
	if err := os.Link(tmp, final); err != nil {
		if !errors.Is(err, fs.ErrExist) || !twoLinks(tmp) {
			return fmt.Errorf("remote: dir %s: create manifest %s: %w", d.path, name, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("remote: dir %s: create manifest %s: %w", d.path, name, err)
	}
	return nil
}

// GetManifest implements Remote.
func (d *Dir) GetManifest(ctx context.Context, name string) ([]byte, error) {
	f, err := d.open(ctx, manifestsDir, name, "get manifest")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("remote: dir %s: get manifest %s: %w", d.path, name, err)
	}
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("remote: dir %s: get manifest %s: more than %d bytes: %w", d.path, name, MaxManifestSize, fs.ErrInvalid)
	}
	return data, nil
}

// ListManifests implements Remote.
func (d *Dir) ListManifests(ctx context.Context, prefix string) ([]string, error) {
	return d.list(ctx, manifestsDir, prefix)
}

// DeleteManifest implements Remote.
func (d *Dir) DeleteManifest(ctx context.Context, name string) error {
	return d.remove(ctx, manifestsDir, name)
}

func (d *Dir) remove(ctx context.Context, sub, name string) error {
	p, err := d.fileCtx(ctx, sub, name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remote: dir %s: delete: %w", d.path, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("remote: dir %s: delete %s: %w", d.path, name, err)
	}
	return nil
}

func (d *Dir) list(ctx context.Context, sub, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(d.path, sub))
	if err != nil {
		return nil, fmt.Errorf("remote: dir %s: list: %w", d.path, err)
	}
	names := []string{}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, prefix) && ValidName(n) == nil && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}
