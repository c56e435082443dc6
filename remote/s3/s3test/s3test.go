// Package s3test starts a real S3 server for tests: versitygw
// (github.com/versity/versitygw, Apache-2.0) with its posix backend in a
// temporary directory, on a loopback port, killed by pid when the test ends.
//
// The binary is found as $BTRSTORE_VERSITYGW, else versitygw on $PATH,
// else $(go env GOPATH)/bin/versitygw. Without it a test skips with the
// install command, or fails when BTRFS_TEST_REQUIRE=1 (CI, where `make
// deps` installs it).
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// VersitygwVersion is the versitygw release the tests are run against;
// the Makefile's deps-s3 installs the same one.
const VersitygwVersion = "v1.8.0"

// InstallCommand installs VersitygwVersion into $(go env GOPATH)/bin.
const InstallCommand = "go install github.com/versity/versitygw/cmd/versitygw@" + VersitygwVersion

// Server is a running versitygw.
type Server struct {
	Endpoint  string // 127.0.0.1:port, plain HTTP
	AccessKey string
	SecretKey string
	Region    string
	Root      string // the posix backend's directory: one subdirectory per bucket

	cmd *exec.Cmd
}

var (
	binOnce sync.Once
	binPath string
)

// Binary returns the path of the versitygw binary, or "" if there is none.
func Binary() string {
	binOnce.Do(func() {
		if p := os.Getenv("BTRSTORE_VERSITYGW"); p != "" {
			binPath = p
			return
		}
		if p, err := exec.LookPath("versitygw"); err == nil {
			binPath = p
			return
		}
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
				gopath = strings.TrimSpace(string(out))
			}
		}
		for _, dir := range filepath.SplitList(gopath) {
			p := filepath.Join(dir, "bin", "versitygw")
			if _, err := os.Stat(p); err == nil {
				binPath = p
				return
			}
		}
	})
	return binPath
}

// Start starts a versitygw for t and stops it (SIGKILL by pid, then wait)
// when t ends. It lives at most until t's deadline (or 30 minutes), and
// dies with the test process (Pdeathsig). It skips t when versitygw is not
// installed, unless BTRFS_TEST_REQUIRE=1, where it fails t.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not installed (an S3 server for the tests); run: " + InstallCommand + " (or make deps)"
		if os.Getenv("BTRFS_TEST_REQUIRE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lastErr error
	for range 3 { // a free port can be taken between probe and listen
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting versitygw: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()

	s := &Server{
		Endpoint:  addr,
		AccessKey: "btrstore-test",
		SecretKey: randomHex(16),
		Region:    "us-east-1",
		Root:      t.TempDir(),
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", addr, "--quiet", "posix", s.Root)
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	lifetime := 30 * time.Minute
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			lifetime = time.Until(dl)
		}
	}
	bound := time.AfterFunc(lifetime, func() { cmd.Process.Kill() })
	stop := func() {
		bound.Stop()
		cmd.Process.Kill() // by pid: the process we started
		<-exited
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			bound.Stop()
			return nil, fmt.Errorf("versitygw exited (%v): %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("versitygw not listening on %s after 20s: %s", addr, stderr.String())
		}
	}
	t.Cleanup(stop)
	return s, nil
}

// NewBucket creates a bucket with a fresh name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	name := "b" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("creating bucket %s on %s: %v", name, s.Endpoint, err)
	}
	return name
}

// Client returns a minio-go client of the server, for checks below the
// Remote interface (pending multipart uploads, raw objects).
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
}

// Core returns a minio-go low-level client of the server, for multipart
// uploads made by hand.
func (s *Server) Core() (*minio.Core, error) {
	return minio.NewCore(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
