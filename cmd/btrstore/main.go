// Command btrstore is the operators' entry point to a btrstore store:
//
//	btrstore check   [-root DIR]             what the store needs, and what is missing
//	btrstore results -root DIR               the store's results: id, created, last used (RFC 3339, UTC), by id
//	btrstore prune   -root DIR [-used-before DURATION] [-limit N] [-min-free PERCENT]
//	                                         deletes least recently used results first; prints each id deleted
//	btrstore keygen  -key FILE               a new signing key; prints its public key
//	btrstore export  -root DIR -key FILE [remote flags] ID...   (oldest first: bases before what is built on them)
//	btrstore import  -root DIR -trust KEY[,KEY...] [remote flags] ID...
//
// The remote is an S3-compatible bucket (-endpoint, -bucket, -prefix,
// -region, -insecure; the keys from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, the region from AWS_REGION or AWS_DEFAULT_REGION
// and the endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL when the
// flags do not give them), or a directory (-dir, for a shared filesystem).
//
// A signing key file holds the base64 of an ed25519 seed (32 bytes); a
// trusted key is the base64 of an ed25519 public key, as keygen prints it
// and as manifests carry it ("key"), given inline or as a file name.
//
// Nothing here forks btrfs: the store calls the kernel itself. export and
// import need CAP_SYS_ADMIN (send and receive).
package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
	"github.com/btrstore/btrstore/receive/zstd"
	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/remote/s3"
	"github.com/btrstore/btrstore/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "btrstore:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  btrstore check   [-root DIR]
  btrstore results -root DIR
  btrstore prune   -root DIR [-used-before DURATION] [-limit N] [-min-free PERCENT]
  btrstore keygen  -key FILE
  btrstore export  -root DIR -key FILE [remote flags] ID...
  btrstore import  -root DIR -trust KEY[,KEY...] [remote flags] ID...
remote flags: -dir DIR, or -endpoint HOST[:PORT]|URL -bucket B [-prefix P] [-region R] [-insecure]
(S3 keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)
`

// run runs the command line args with env as the environment.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fl := flag.NewFlagSet("btrstore "+cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	root := fl.String("root", "", "the store's directory")
	verbose := fl.Int("v", 0, "log verbosity: 0 repairs and failures, 1 the life cycle of each operation")
	var rf remoteFlags
	switch cmd {
	case "export", "import":
		rf.register(fl)
	}
	key := fl.String("key", "", "signing key file (export, keygen)")
	var usedBefore time.Duration
	var limit int
	var minFree float64
	if cmd == "prune" {
		fl.DurationVar(&usedBefore, "used-before", 0, "only results last used more than this long ago (0: any)")
		fl.IntVar(&limit, "limit", 0, "delete at most this many results (0: no limit)")
		fl.Float64Var(&minFree, "min-free", 0, "stop once this percentage of the filesystem is free (0: no target)")
	}
	trust := fl.String("trust", "", "trusted public keys, comma-separated: base64, or files holding it (import)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(stderr, prefix, args) }, funcr.Options{Verbosity: *verbose})
	open := func() (*store.Store, error) {
		if *root == "" {
			return nil, fmt.Errorf("%s: -root is required: %w", cmd, fs.ErrInvalid)
		}
		return store.Open(ctx, *root, store.Config{Logger: log})
	}
	switch cmd {
	case "check":
		path := *root
		if path == "" {
			path = "."
		}
		r := kernel.Check(path)
		fmt.Fprint(stdout, r.String())
		if r.Err != nil || !r.Btrfs {
			return errors.Join(r.Err, r.CanUseBtrfs())
		}
		return errors.Join(r.CanUseBtrfs(), r.CanDeleteSubvolumes(), r.CanWaitDeleted())
	case "results":
		s, err := open()
		if err != nil {
			return err
		}
		defer s.Close()
		infos, err := results(s)
		for _, r := range infos {
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", r.ID, r.Created.UTC().Format(time.RFC3339), r.LastUsed.UTC().Format(time.RFC3339))
		}
		return err
	case "keygen":
		return keygen(*key, stdout)
	case "export":
		priv, err := readSigningKey(*key)
		if err != nil {
			return err
		}
		return withRemote(ctx, cmd, open, &rf, env, fl.Args(), stdout, func(s *store.Store, r remote.Remote, id string) error {
			return s.Export(ctx, id, r, store.ExportOptions{SigningKey: priv})
		})
	case "import":
		keys, err := parseTrusted(*trust)
		if err != nil {
			return err
		}
		return withRemote(ctx, cmd, open, &rf, env, fl.Args(), stdout, func(s *store.Store, r remote.Remote, id string) error {
			return s.Import(ctx, id, r, store.ImportOptions{TrustedKeys: keys, Zstd: zstd.Decompress})
		})
	case "prune":
		if usedBefore < 0 {
			return fmt.Errorf("prune: -used-before %v: want a duration ≥ 0: %w", usedBefore, fs.ErrInvalid)
		}
		if fl.NArg() > 0 {
			return fmt.Errorf("prune: unexpected arguments %q: %w", fl.Args(), fs.ErrInvalid)
		}
		s, err := open()
		if err != nil {
			return err
		}
		defer s.Close()
		opts := store.PruneOptions{Limit: limit, MinFreeSpace: minFree}
		if usedBefore > 0 {
			opts.UsedBefore = time.Now().Add(-usedBefore)
		}
		deleted, err := s.Prune(ctx, opts)
		for _, id := range deleted {
			fmt.Fprintln(stdout, "deleted", id)
		}
		return err
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q: %w", cmd, flag.ErrHelp)
}

// withRemote opens the store and the remote and runs fn for each id,
// printing each id with its duration.
func withRemote(ctx context.Context, cmd string, open func() (*store.Store, error), rf *remoteFlags, env func(string) string,
	ids []string, stdout io.Writer, fn func(*store.Store, remote.Remote, string) error) error {
	if len(ids) == 0 {
		return fmt.Errorf("%s: no result ids given: %w", cmd, fs.ErrInvalid)
	}
	r, err := rf.open(ctx, env)
	if err != nil {
		return err
	}
	s, err := open()
	if err != nil {
		return err
	}
	defer s.Close()
	if cmd == "export" {
		ids = oldestFirst(s, ids)
	}
	for _, id := range ids {
		start := time.Now()
		if err := fn(s, r, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s in %v\n", cmd, id, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// oldestFirst orders ids by the transaction that created their results,
// so that a base (always made before what is built or received on it)
// is exported before its children, which can then go as increments.
// Ids that are not results keep their place at the end (Export says why).
func oldestFirst(s *store.Store, ids []string) []string {
	created := map[string]uint64{}
	for _, id := range ids {
		created[id] = ^uint64(0)
		if p, err := s.Result(id); err == nil {
			if info, err := ioctl.SubvolumeInfo(p); err == nil {
				created[id] = info.OTransID
			}
		}
	}
	ids = slices.Clone(ids)
	slices.SortStableFunc(ids, func(a, b string) int { return cmp.Compare(created[a], created[b]) })
	return ids
}

// results lists the store's results, by id.
func results(s *store.Store) ([]store.ResultInfo, error) {
	var infos []store.ResultInfo
	for r, err := range s.Results() {
		if err != nil {
			return infos, err
		}
		infos = append(infos, r)
	}
	slices.SortFunc(infos, func(a, b store.ResultInfo) int { return cmp.Compare(a.ID, b.ID) })
	return infos, nil
}

// remoteFlags say where the remote is.
type remoteFlags struct {
	dir                              string
	endpoint, bucket, prefix, region string
	insecure                         bool
}

func (rf *remoteFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&rf.dir, "dir", "", "a directory as the remote (instead of S3)")
	fl.StringVar(&rf.endpoint, "endpoint", "", "S3 endpoint, host[:port] or URL (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL)")
	fl.StringVar(&rf.bucket, "bucket", "", "S3 bucket")
	fl.StringVar(&rf.prefix, "prefix", "", "S3 key prefix (\"fleet/\" puts every object below fleet/)")
	fl.StringVar(&rf.region, "region", "", "S3 region (default $AWS_REGION, $AWS_DEFAULT_REGION)")
	fl.BoolVar(&rf.insecure, "insecure", false, "plain HTTP to a host[:port] endpoint")
}

// s3Config is the S3 configuration the flags and env give.
func (rf *remoteFlags) s3Config(env func(string) string) s3.Config {
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	return s3.Config{
		Endpoint:  first(rf.endpoint, env("AWS_ENDPOINT_URL_S3"), env("AWS_ENDPOINT_URL")),
		Region:    first(rf.region, env("AWS_REGION"), env("AWS_DEFAULT_REGION")),
		Bucket:    rf.bucket,
		Prefix:    rf.prefix,
		AccessKey: env("AWS_ACCESS_KEY_ID"),
		SecretKey: env("AWS_SECRET_ACCESS_KEY"),
		Insecure:  rf.insecure,
	}
}

func (rf *remoteFlags) open(ctx context.Context, env func(string) string) (remote.Remote, error) {
	if rf.dir != "" {
		if rf.bucket != "" || rf.endpoint != "" {
			return nil, fmt.Errorf("-dir and S3 flags given: choose one: %w", fs.ErrInvalid)
		}
		return remote.NewDir(rf.dir)
	}
	cfg := rf.s3Config(env)
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fmt.Errorf("no remote: give -dir, or -bucket and -endpoint (or AWS_ENDPOINT_URL): %w", fs.ErrInvalid)
	}
	return s3.New(ctx, cfg)
}

// keygen writes a new signing key to path (which must not exist) and
// prints its public key.
func keygen(path string, stdout io.Writer) error {
	if path == "" {
		return fmt.Errorf("keygen: -key FILE is required: %w", fs.ErrInvalid)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv.Seed()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	_, err = fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(pub))
	return err
}

// readSigningKey reads a key file that keygen wrote.
func readSigningKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		return nil, fmt.Errorf("export: -key FILE is required: %w", fs.ErrInvalid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key file %s: want the base64 of a %d-byte ed25519 seed: %w", path, ed25519.SeedSize, fs.ErrInvalid)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// parseTrusted parses -trust: base64 public keys, or files holding one.
func parseTrusted(list string) ([]ed25519.PublicKey, error) {
	if list == "" {
		return nil, fmt.Errorf("import: -trust is required (the public keys whose signatures to accept): %w", fs.ErrInvalid)
	}
	var keys []ed25519.PublicKey
	for _, item := range strings.Split(list, ",") {
		text := item
		if data, err := os.ReadFile(item); err == nil {
			text = string(data)
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("trusted key %q: want the base64 of a %d-byte ed25519 public key, or a file holding it: %w",
				item, ed25519.PublicKeySize, fs.ErrInvalid)
		}
		keys = append(keys, ed25519.PublicKey(b))
	}
	return keys, nil
}
