package ioctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// slowWriter keeps the send pipe full, so that the kernel sits in the
// pipe write, where a signal interrupts it.
type slowWriter struct{ bytes.Buffer }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(200 * time.Microsecond)
	return w.Buffer.Write(p)
}

// TestSendSignalsDoNotRestart: a signal that reaches the thread blocked in
// BTRFS_IOC_SEND must not restart the send (Go's handlers have
// SA_RESTART, and the kernel restarts an interrupted send from the start,
// writing the stream header again: btrfs-progs #719). Every thread of the
// process is sent SIGURG, which Go's runtime takes as a harmless
// preemption request, many times during one send.
func TestSendSignalsDoNotRestart(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a")
	data := make([]byte, 16<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(fsys.Path, "a", "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(fsys.Path, "s")
	if err := Snapshot(filepath.Join(fsys.Path, "a"), snap, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	signals := 0
	go func() {
		defer wg.Done()
		pid := os.Getpid()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tasks, _ := os.ReadDir("/proc/self/task")
			for _, task := range tasks {
				if tid, err := strconv.Atoi(task.Name()); err == nil && unix.Tgkill(pid, tid, unix.SIGURG) == nil {
					signals++
				}
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	// Restarting, the send never ends while the signals go on: bound it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var w slowWriter
	err := Send(ctx, &w, snap, SendOptions{Version: 1})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(w.Bytes(), []byte("btrfs-stream\x00")); n != 1 {
		t.Fatalf("the stream holds %d stream headers after %d signals, want 1: the send restarted", n, signals)
	}
	t.Logf("%d signals during a %d-byte send", signals, w.Len())
}
