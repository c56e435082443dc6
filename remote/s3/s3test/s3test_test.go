package s3test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The Makefile installs the version the tests name.
func TestMakefileVersion(t *testing.T) {
	mk, err := os.ReadFile("../../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSITYGW_VERSION := (\S+)$`).FindSubmatch(mk)
	if m == nil || string(m[1]) != VersitygwVersion {
		t.Errorf("Makefile VERSITYGW_VERSION = %q, want %q", m, VersitygwVersion)
	}
}

// Start gives a working server and kills it by pid when the test ends.
func TestStartStop(t *testing.T) {
	var srv *Server
	t.Run("run", func(t *testing.T) {
		srv = Start(t)
		bucket := srv.NewBucket(t)
		c, err := srv.Client()
		if err != nil {
			t.Fatal(err)
		}
		ok, err := c.BucketExists(context.Background(), bucket)
		if err != nil || !ok {
			t.Errorf("BucketExists(%s) = %v, %v", bucket, ok, err)
		}
	})
	if srv == nil || srv.cmd == nil {
		return // skipped
	}
	if err := srv.cmd.Process.Signal(syscall.Signal(0)); err == nil {
		t.Errorf("versitygw (pid %d) still running after its test ended", srv.cmd.Process.Pid)
	}
	if out, _ := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(srv.cmd.Process.Pid)).Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("versitygw (pid %d) still in the process table: %q", srv.cmd.Process.Pid, out)
	}
}
