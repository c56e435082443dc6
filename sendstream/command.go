package sendstream

import (
	"time"

	"github.com/btrstore/btrstore/internal/uuidhex"
)

// UUID is a subvolume UUID as the stream carries it.
type UUID [16]byte

// String formats u as 8-4-4-4-12 lowercase hex (always, also when zero, as
// uuid_unparse does).
func (u UUID) String() string {
	return uuidhex.Format(u)
}

// Timespec is a time attribute: seconds and nanoseconds since the epoch.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Time returns t as a time.Time.
func (t Timespec) Time() time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// Command is one decoded command. Which fields are meaningful depends on
// Type; Has reports which attributes the stream carried. Paths are relative
// to the subvolume being received and are returned exactly as the stream
// has them: checking them is the receiver's job.
//
// A Command returned by Reader.Next, and the byte slices in it (Data,
// XattrData, VeritySalt, VeritySig), are valid until the next call to Next.
type Command struct {
	Type    Cmd
	present attrSet

	Path     string // AttrPath: the object the command acts on
	PathTo   string // AttrPathTo: rename's new path
	PathLink string // AttrPathLink: symlink's target, link's existing path

	UUID     UUID   // subvol, snapshot: the new subvolume's UUID
	Ctransid uint64 // subvol, snapshot: its ctransid

	CloneUUID     UUID   // snapshot: the parent; clone: the source subvolume
	CloneCtransid uint64 // its ctransid
	ClonePath     string // clone: the source file, relative to its subvolume
	CloneOffset   uint64
	CloneLen      uint64

	Ino  uint64
	Size uint64 // truncate, update_extent, fallocate: size or length
	Mode uint64
	UID  uint64
	GID  uint64
	Rdev uint64 // the kernel's encoding (new_encode_dev)

	Atime, Mtime, Ctime, Otime Timespec

	XattrName string
	XattrData []byte

	FileOffset uint64
	Data       []byte // write, encoded_write

	FallocateMode    uint32
	Fileattr         uint64
	UnencodedFileLen uint64
	UnencodedLen     uint64
	UnencodedOffset  uint64
	Compression      uint32
	Encryption       uint32

	VerityAlgorithm uint8
	VerityBlockSize uint32
	VeritySalt      []byte
	VeritySig       []byte
}

// Has reports whether the command carries attribute a.
func (c *Command) Has(a Attr) bool { return a < 64 && c.present&(1<<a) != 0 }

// Set marks attribute a as carried, for the Writer (required attributes are
// always written; optional ones only when set).
func (c *Command) Set(a Attr) {
	if a < 64 {
		c.present |= 1 << a
	}
}
