package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/btrstore/btrstore/store"
	"golang.org/x/sys/unix"
)

// run builds every step of spec, reusing results that exist, and prints
// one line per step.
func run(ctx context.Context, s *store.Store, spec *Spec) error {
	parent := ""
	total := time.Now()
	for i, st := range spec.Steps {
		id := stepID(parent, spec, st)
		label := fmt.Sprintf("step %d/%d %s", i+1, len(spec.Steps), id[:12])
		cmd := strings.Join(strings.Fields(st.Run), " ")
		if len(cmd) > 48 {
			cmd = cmd[:45] + "..."
		}
		if _, err := s.Result(id); err == nil {
			fmt.Printf("%s  %-48s  cached\n", label, cmd)
			parent = id
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		start := time.Now()
		err := s.Build(ctx, id, parent, func(ctx context.Context, dir string) error {
			return runStep(ctx, s, spec, st, dir, parent == "")
		})
		if err != nil {
			fmt.Printf("%s  %-48s  FAILED after %v\n", label, cmd, time.Since(start).Round(time.Millisecond))
			return err
		}
		fmt.Printf("%s  %-48s  built in %v\n", label, cmd, time.Since(start).Round(100*time.Microsecond))
		parent = id
	}
	res, err := s.Result(parent)
	if err != nil {
		return err
	}
	fmt.Printf("done in %v: %s\n", time.Since(total).Round(time.Millisecond), filepath.Join(res, "rootfs"))
	return nil
}

// runStep runs one step in the build directory dir: the tree is
// dir/rootfs and the command's output goes to dir/log. Caches are
// bind-mounted for the duration of the command, and unmounted before the
// directory is frozen.
func runStep(ctx context.Context, s *store.Store, spec *Spec, st Step, dir string, first bool) (err error) {
	rootfs := filepath.Join(dir, "rootfs")
	if first {
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return err
		}
		if spec.Rootfs != "" {
			if err := os.CopyFS(rootfs, os.DirFS(spec.Rootfs)); err != nil {
				return fmt.Errorf("copy rootfs %s: %w", spec.Rootfs, err)
			}
		}
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer log.Close()
	for _, c := range st.Caches {
		lease, err := s.Cache(ctx, c.Name, store.Owner{UID: os.Getuid(), GID: os.Getgid()})
		if err != nil {
			return err
		}
		target := filepath.Join(rootfs, c.Target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			lease.Release(ctx)
			return err
		}
		if err := unix.Mount(lease.Path(), target, "", unix.MS_BIND, ""); err != nil {
			lease.Release(ctx)
			return fmt.Errorf("bind-mount cache %s at %s: %w", c.Name, c.Target, err)
		}
		defer func() {
			if uerr := unix.Unmount(target, 0); uerr != nil && err == nil {
				err = fmt.Errorf("unmount cache %s: %w", c.Name, uerr)
			}
			if rerr := lease.Release(ctx); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	// sh from PATH on the host (the VM harness puts it in /usr/sbin),
	// the rootfs's own /bin/sh in a chroot.
	cmd := exec.CommandContext(ctx, "sh", "-c", st.Run)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = rootfs
	if spec.Chroot {
		cmd.Path, cmd.Err = "/bin/sh", nil
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
		cmd.Dir = "/"
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%q: %w\n--- log ---\n%s", st.Run, err, tail(log.Name(), 20))
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
