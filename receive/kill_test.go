package receive

import (
	"context"
	"fmt"
	"github.com/btrstore/btrstore/internal/treecmp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

func init() {
	// receiveStalled applies the first half of a stream file to a
	// directory, says "ready" and waits to be killed.
	btrfstest.Register("receiveStalled", func(args []string) error {
		data, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		half, _ := strconv.Atoi(args[2])
		r := &stallingReader{data: data[:half]}
		_, err = Apply(context.Background(), r, args[1], Options{})
		return fmt.Errorf("Apply returned: %v", err)
	})
}

type stallingReader struct{ data []byte }

func (s *stallingReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		fmt.Println("ready")
		os.Stdout.Sync()
		select {} // until killed
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

// TestKilledReceiveLooksUnreceived: a receive killed (SIGKILL) in the
// middle of a stream leaves only a writable subvolume under a temporary
// name, without received UUID, which no lookup by received UUID finds.
func TestKilledReceiveLooksUnreceived(t *testing.T) {
	s := newScene(t)
	stream := send(t, s.s1, ioctl.SendOptions{})
	f := filepath.Join(t.TempDir(), "stream")
	must(t, os.WriteFile(f, stream, 0o600))

	c := btrfstest.Start(t, "receiveStalled", nil, f, s.recv, strconv.Itoa(len(stream)/2))
	c.WaitReady(t, 60*time.Second)
	c.Kill()
	if !c.Wait(60*time.Second) || !c.Killed() {
		t.Fatalf("child ended by %v, not SIGKILL; stderr:\n%s", c.State(), c.Stderr())
	}

	entries, err := os.ReadDir(s.recv)
	must(t, err)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), tmpPrefix) {
		t.Fatalf("after the kill: %v", entries)
	}
	info, err := ioctl.SubvolumeInfo(filepath.Join(s.recv, entries[0].Name()))
	must(t, err)
	if info.ReadOnly || !info.ReceivedUUID.IsZero() {
		t.Errorf("half-received subvolume: read-only %v, received UUID %v", info.ReadOnly, info.ReceivedUUID)
	}
	// A full receive still works beside it, and an incremental one on top
	// finds the complete parent, not the leftover.
	apply(t, send(t, s.s1, ioctl.SendOptions{}), s.recv, Options{})
	apply(t, send(t, s.s2, ioctl.SendOptions{Parent: s.s1}), s.recv, Options{})
	treecmp.Compare(t, s.s2, filepath.Join(s.recv, "s2"), treecmp.KernelSent()...)
}
