// Command sendrecv does natively what users do with `btrfs send` and
// `btrfs receive`: write the send stream of a read-only subvolume to a file
// or stdout, apply a stream from a file or stdin below a directory, or
// print a stream as `btrfs receive --dump` does. No btrfs command is run.
//
// Usage:
//
//	sendrecv send [-p PARENT] [-c CLONE_SRC]... [-proto N] [-compressed-data] [-f FILE] SUBVOL
//	sendrecv receive [-f FILE] [-source DIR]... [-decompress] DIR
//	sendrecv dump [-f FILE]
//
// send and receive need root (CAP_SYS_ADMIN). Like the CLI, a pipe works:
//
//	sendrecv send -p /mnt/a/snap1 /mnt/a/snap2 | sendrecv receive /mnt/b/backups
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/receive"
	"github.com/btrstore/btrstore/sendstream"
)

type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  sendrecv send [-p PARENT] [-c CLONE_SRC]... [-proto N] [-compressed-data] [-f FILE] SUBVOL
  sendrecv receive [-f FILE] [-source DIR]... [-decompress] DIR
  sendrecv dump [-f FILE]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "send":
		err = send(ctx, os.Args[2:])
	case "receive":
		err = recv(ctx, os.Args[2:])
	case "dump":
		err = dump(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendrecv:", err)
		os.Exit(1)
	}
}

func send(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("send", flag.ExitOnError)
	var opts ioctl.SendOptions
	var clones multi
	fl.StringVar(&opts.Parent, "p", "", "parent subvolume (incremental stream)")
	fl.Var(&clones, "c", "clone source subvolume (repeatable)")
	proto := fl.Uint("proto", 0, "stream version (0: the highest the kernel offers)")
	fl.BoolVar(&opts.Compressed, "compressed-data", false, "pass compressed extents through (stream version 2)")
	file := fl.String("f", "", "write the stream to FILE instead of stdout")
	fl.Parse(args)
	if fl.NArg() != 1 {
		usage()
	}
	opts.CloneSources, opts.Version = clones, uint32(*proto)
	var w io.Writer = os.Stdout
	if *file != "" {
		f, err := os.Create(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := ioctl.Send(ctx, bw, fl.Arg(0), opts); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && *file != "" {
		return f.Sync()
	}
	return nil
}

func input(file string) (io.ReadCloser, error) {
	if file == "" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(file)
}

func recv(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("receive", flag.ExitOnError)
	var opts receive.Options
	var sources multi
	file := fl.String("f", "", "read the stream from FILE instead of stdin")
	fl.Var(&sources, "source", "directory whose subvolumes may be parents or clone sources (repeatable; default DIR)")
	fl.BoolVar(&opts.Decompress, "decompress", false, "write compressed extents decompressed (zlib, LZO; zstd extents then fail: a program passes receive/zstd's Decompress as Options.Zstd)")
	fl.Parse(args)
	if fl.NArg() != 1 {
		usage()
	}
	opts.Sources = sources
	r, err := input(*file)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := receive.Apply(ctx, r, fl.Arg(0), opts)
	for _, p := range got {
		fmt.Fprintln(os.Stderr, "received", p)
	}
	return err
}

func dump(args []string) error {
	fl := flag.NewFlagSet("dump", flag.ExitOnError)
	file := fl.String("f", "", "read the stream from FILE instead of stdin")
	fl.Parse(args)
	r, err := input(*file)
	if err != nil {
		return err
	}
	defer r.Close()
	return sendstream.Dump(os.Stdout, r)
}
