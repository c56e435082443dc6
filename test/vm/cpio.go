package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks into its rootfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). Entries are
// owned by root whoever runs the harness, and device nodes need no mknod:
// this is why the harness writes the archive itself instead of running cpio.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool // directories already written
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{"/": true}}
}

// Mkdir writes dir and any missing parents.
func (c *cpioWriter) Mkdir(dir string) error {
	dir = path.Clean("/" + dir)
	if c.dirs[dir] {
		return nil
	}
	if err := c.Mkdir(path.Dir(dir)); err != nil {
		return err
	}
	c.dirs[dir] = true
	return c.entry(dir, syscall.S_IFDIR|0o755, 0, 0, nil)
}

// WriteFile writes a regular file with the given contents.
func (c *cpioWriter) WriteFile(name string, perm uint32, data []byte) error {
	if err := c.Mkdir(path.Dir(name)); err != nil {
		return err
	}
	return c.entry(name, syscall.S_IFREG|perm, int64(len(data)), 0, bytes.NewReader(data))
}

// CopyFile writes the host file src (symlinks followed) as name, keeping its
// permission bits.
func (c *cpioWriter) CopyFile(name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := c.Mkdir(path.Dir(name)); err != nil {
		return err
	}
	return c.entry(name, syscall.S_IFREG|uint32(st.Mode().Perm()), st.Size(), 0, f)
}

// Symlink writes name pointing to target.
func (c *cpioWriter) Symlink(name, target string) error {
	if err := c.Mkdir(path.Dir(name)); err != nil {
		return err
	}
	return c.entry(name, syscall.S_IFLNK|0o777, int64(len(target)), 0, strings.NewReader(target))
}

// CharDev writes a character device node.
func (c *cpioWriter) CharDev(name string, perm uint32, major, minor uint32) error {
	if err := c.Mkdir(path.Dir(name)); err != nil {
		return err
	}
	return c.entry(name, syscall.S_IFCHR|perm, 0, major<<8|minor, nil)
}

// Close writes the trailer and flushes; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	if err := c.entry("TRAILER!!!", 0, 0, 0, nil); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *cpioWriter) entry(name string, mode uint32, size int64, rdev uint32, body io.Reader) error {
	name = strings.TrimPrefix(name, "/") // archive paths are relative to the rootfs
	c.ino++
	nlink := 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize (with its NUL), check.
	_, err := fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev>>8, rdev&0xff, len(name)+1, 0)
	if err != nil {
		return err
	}
	c.w.WriteString(name)
	c.w.WriteByte(0)
	c.pad(110 + len(name) + 1) // the header is 110 bytes
	if body != nil {
		n, err := io.Copy(c.w, body)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("cpio: %s: wrote %d bytes, want %d", name, n, size)
		}
	}
	return c.pad(int(size))
}

// pad aligns to 4 bytes after n bytes of header+name or data.
func (c *cpioWriter) pad(n int) error {
	_, err := c.w.Write(make([]byte, (4-n%4)%4))
	return err
}
