package sendstream

import "fmt"

// Magic starts every stream; HeaderSize is the magic and the version.
const (
	Magic             = "btrfs-stream\x00"
	HeaderSize        = len(Magic) + 4
	CommandHeaderSize = 10
	MaxVersion        = 3
)

// Cmd is a command type (enum btrfs_send_cmd).
type Cmd uint16

// Command types, as in the kernel's fs/btrfs/send.h.
const (
	CmdUnspec       Cmd = 0
	CmdSubvol       Cmd = 1
	CmdSnapshot     Cmd = 2
	CmdMkfile       Cmd = 3
	CmdMkdir        Cmd = 4
	CmdMknod        Cmd = 5
	CmdMkfifo       Cmd = 6
	CmdMksock       Cmd = 7
	CmdSymlink      Cmd = 8
	CmdRename       Cmd = 9
	CmdLink         Cmd = 10
	CmdUnlink       Cmd = 11
	CmdRmdir        Cmd = 12
	CmdSetXattr     Cmd = 13
	CmdRemoveXattr  Cmd = 14
	CmdWrite        Cmd = 15
	CmdClone        Cmd = 16
	CmdTruncate     Cmd = 17
	CmdChmod        Cmd = 18
	CmdChown        Cmd = 19
	CmdUtimes       Cmd = 20
	CmdEnd          Cmd = 21
	CmdUpdateExtent Cmd = 22
	// Version 2.
	CmdFallocate    Cmd = 23
	CmdFileattr     Cmd = 24
	CmdEncodedWrite Cmd = 25
	// Version 3.
	CmdEnableVerity Cmd = 26
)

var cmdNames = [...]string{
	"unspec", "subvol", "snapshot", "mkfile", "mkdir", "mknod", "mkfifo", "mksock",
	"symlink", "rename", "link", "unlink", "rmdir", "set_xattr", "remove_xattr",
	"write", "clone", "truncate", "chmod", "chown", "utimes", "end",
	"update_extent", "fallocate", "fileattr", "encoded_write", "enable_verity",
}

// String returns the name `btrfs receive --dump` prints for c.
func (c Cmd) String() string {
	if int(c) < len(cmdNames) {
		return cmdNames[c]
	}
	return fmt.Sprintf("cmd(%d)", uint16(c))
}

// maxCmd is the highest command type of each version.
var maxCmd = [...]Cmd{0, CmdUpdateExtent, CmdEncodedWrite, CmdEnableVerity}

// Attr is an attribute type (BTRFS_SEND_A_*).
type Attr uint16

// Attribute types, as in the kernel's fs/btrfs/send.h.
const (
	AttrUUID             Attr = 1
	AttrCtransid         Attr = 2
	AttrIno              Attr = 3
	AttrSize             Attr = 4
	AttrMode             Attr = 5
	AttrUID              Attr = 6
	AttrGID              Attr = 7
	AttrRdev             Attr = 8
	AttrCtime            Attr = 9
	AttrMtime            Attr = 10
	AttrAtime            Attr = 11
	AttrOtime            Attr = 12
	AttrXattrName        Attr = 13
	AttrXattrData        Attr = 14
	AttrPath             Attr = 15
	AttrPathTo           Attr = 16
	AttrPathLink         Attr = 17
	AttrFileOffset       Attr = 18
	AttrData             Attr = 19
	AttrCloneUUID        Attr = 20
	AttrCloneCtransid    Attr = 21
	AttrClonePath        Attr = 22
	AttrCloneOffset      Attr = 23
	AttrCloneLen         Attr = 24
	AttrFallocateMode    Attr = 25 // version 2
	AttrFileattr         Attr = 26
	AttrUnencodedFileLen Attr = 27
	AttrUnencodedLen     Attr = 28
	AttrUnencodedOffset  Attr = 29
	AttrCompression      Attr = 30
	AttrEncryption       Attr = 31
	AttrVerityAlgorithm  Attr = 32 // version 3
	AttrVerityBlockSize  Attr = 33
	AttrVeritySaltData   Attr = 34
	AttrVeritySigData    Attr = 35
)

// maxAttr is the highest attribute type of each version.
var maxAttr = [...]Attr{0, AttrCloneLen, AttrEncryption, AttrVeritySigData}

// Attribute value kinds and their exact sizes (0: variable).
type kind uint8

const (
	kString kind = iota // path or name: variable, no NUL
	kBytes              // variable
	kU8
	kU32
	kU64
	kUUID
	kTime
)

var kindSize = [...]int{kString: 0, kBytes: 0, kU8: 1, kU32: 4, kU64: 8, kUUID: 16, kTime: 12}

var attrKind = [...]kind{
	AttrUUID: kUUID, AttrCtransid: kU64, AttrIno: kU64, AttrSize: kU64, AttrMode: kU64,
	AttrUID: kU64, AttrGID: kU64, AttrRdev: kU64, AttrCtime: kTime, AttrMtime: kTime,
	AttrAtime: kTime, AttrOtime: kTime, AttrXattrName: kString, AttrXattrData: kBytes,
	AttrPath: kString, AttrPathTo: kString, AttrPathLink: kString, AttrFileOffset: kU64,
	AttrData: kBytes, AttrCloneUUID: kUUID, AttrCloneCtransid: kU64, AttrClonePath: kString,
	AttrCloneOffset: kU64, AttrCloneLen: kU64, AttrFallocateMode: kU32, AttrFileattr: kU64,
	AttrUnencodedFileLen: kU64, AttrUnencodedLen: kU64, AttrUnencodedOffset: kU64,
	AttrCompression: kU32, AttrEncryption: kU32, AttrVerityAlgorithm: kU8,
	AttrVerityBlockSize: kU32, AttrVeritySaltData: kBytes, AttrVeritySigData: kBytes,
}

// attrSet is a bit set of attribute types.
type attrSet uint64

func set(as ...Attr) attrSet {
	var s attrSet
	for _, a := range as {
		s |= 1 << a
	}
	return s
}

// spec lists, per command, every attribute it may carry in the order the
// kernel writes them (the Writer follows it), and which of them are
// optional.
type spec struct {
	attrs    []Attr
	optional attrSet
}

var specs = [...]spec{
	CmdSubvol:       {attrs: []Attr{AttrPath, AttrUUID, AttrCtransid}},
	CmdSnapshot:     {attrs: []Attr{AttrPath, AttrUUID, AttrCtransid, AttrCloneUUID, AttrCloneCtransid}},
	CmdMkfile:       {attrs: []Attr{AttrPath, AttrIno}, optional: set(AttrIno)},
	CmdMkdir:        {attrs: []Attr{AttrPath, AttrIno}, optional: set(AttrIno)},
	CmdMknod:        {attrs: []Attr{AttrPath, AttrIno, AttrRdev, AttrMode}, optional: set(AttrIno)},
	CmdMkfifo:       {attrs: []Attr{AttrPath, AttrIno, AttrRdev, AttrMode}, optional: set(AttrIno, AttrRdev, AttrMode)},
	CmdMksock:       {attrs: []Attr{AttrPath, AttrIno, AttrRdev, AttrMode}, optional: set(AttrIno, AttrRdev, AttrMode)},
	CmdSymlink:      {attrs: []Attr{AttrPath, AttrIno, AttrPathLink}, optional: set(AttrIno)},
	CmdRename:       {attrs: []Attr{AttrPath, AttrPathTo}},
	CmdLink:         {attrs: []Attr{AttrPath, AttrPathLink}},
	CmdUnlink:       {attrs: []Attr{AttrPath}},
	CmdRmdir:        {attrs: []Attr{AttrPath}},
	CmdSetXattr:     {attrs: []Attr{AttrPath, AttrXattrName, AttrXattrData}},
	CmdRemoveXattr:  {attrs: []Attr{AttrPath, AttrXattrName}},
	CmdWrite:        {attrs: []Attr{AttrPath, AttrFileOffset, AttrData}},
	CmdClone:        {attrs: []Attr{AttrFileOffset, AttrCloneLen, AttrPath, AttrCloneUUID, AttrCloneCtransid, AttrClonePath, AttrCloneOffset}},
	CmdTruncate:     {attrs: []Attr{AttrPath, AttrSize}},
	CmdChmod:        {attrs: []Attr{AttrPath, AttrMode}},
	CmdChown:        {attrs: []Attr{AttrPath, AttrUID, AttrGID}},
	CmdUtimes:       {attrs: []Attr{AttrPath, AttrAtime, AttrMtime, AttrCtime, AttrOtime}, optional: set(AttrOtime)},
	CmdEnd:          {},
	CmdUpdateExtent: {attrs: []Attr{AttrPath, AttrFileOffset, AttrSize}},
	CmdFallocate:    {attrs: []Attr{AttrPath, AttrFallocateMode, AttrFileOffset, AttrSize}},
	CmdFileattr:     {attrs: []Attr{AttrPath, AttrFileattr}},
	CmdEncodedWrite: {attrs: []Attr{AttrPath, AttrFileOffset, AttrUnencodedFileLen, AttrUnencodedLen, AttrUnencodedOffset, AttrCompression, AttrEncryption, AttrData},
		optional: set(AttrCompression, AttrEncryption)},
	CmdEnableVerity: {attrs: []Attr{AttrPath, AttrVerityAlgorithm, AttrVerityBlockSize, AttrVeritySaltData, AttrVeritySigData},
		optional: set(AttrVeritySaltData, AttrVeritySigData)},
}

// allowed and required, as bit sets, per command.
var allowedAttrs, requiredAttrs [len(specs)]attrSet

func init() {
	for c, s := range specs {
		allowedAttrs[c] = set(s.attrs...)
		requiredAttrs[c] = allowedAttrs[c] &^ s.optional
	}
}

// maxCommandSize is the largest command (header included) the kernel
// writes for each version: its send buffer, BTRFS_SEND_BUF_SIZE_V1 (64 KiB)
// for version 1, and 16 KiB plus the largest compressed extent (128 KiB)
// rounded up to the page size from version 2 on (allowing 64 KiB pages).
func maxCommandSize(version uint32) int {
	if version == 1 {
		return 64 << 10
	}
	return 192 << 10
}

// Compression values of an encoded write (BTRFS_ENCODED_IO_COMPRESSION_*).
const (
	CompressionNone   = 0
	CompressionZlib   = 1
	CompressionZstd   = 2
	CompressionLZO4K  = 3 // LZO with 4 KiB sectors; 4 to 7 for 8 to 64 KiB
	CompressionLZO64K = 7
)
