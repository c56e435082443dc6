#!/usr/bin/env bash
# demo-fleet: two "hosts" (two stores on two loop-mounted btrfs), one
# S3-compatible bucket between them (versitygw on loopback if installed,
# else a directory). Host A builds the builder's embedded default spec and
# exports every result; host B imports the last one (its parents come
# with it) and builds one more step on top. Timings and bytes are printed.
# Needs root (loop mounts). Run from the module root: make demo-fleet.
set -euo pipefail
GO=${GO:-go}
[ "$(id -u)" = 0 ] || { echo "demo-fleet needs root (it mounts loop devices)"; exit 1; }

d=$(mktemp -d)
gw_pid=""
cleanup() {
	[ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null || true
	for h in a b; do umount "$d/$h" 2>/dev/null || true; done
	rm -rf "$d"
}
trap cleanup EXIT

for h in a b; do
	truncate -s 2G "$d/$h.img"
	mkfs.btrfs -q "$d/$h.img" >/dev/null
	mkdir "$d/$h"
	mount -o loop "$d/$h.img" "$d/$h"
	mkdir "$d/$h/store"
done
(cd cmd/btrstore && $GO build -o "$d/btrstore" .)
$GO build -o "$d/builder" ./examples/builder

gw=$(command -v versitygw || echo "$($GO env GOPATH | cut -d: -f1)/bin/versitygw")
if [ -x "$gw" ]; then
	port=$(( 20000 + RANDOM % 20000 ))
	mkdir -p "$d/s3/fleet"
	export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret-$RANDOM AWS_REGION=us-east-1
	"$gw" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --region "$AWS_REGION" \
		--port "127.0.0.1:$port" --quiet posix "$d/s3" >/dev/null 2>&1 &
	gw_pid=$!
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
	remote=(-endpoint "127.0.0.1:$port" -insecure -bucket fleet)
	where="versitygw on 127.0.0.1:$port (pid $gw_pid)"
	bytes() { du -sb "$d/s3/fleet" | cut -f1; }
else
	mkdir "$d/remote"
	remote=(-dir "$d/remote")
	where="directory $d/remote (versitygw not installed: make deps-s3)"
	bytes() { du -sb "$d/remote" | cut -f1; }
fi
echo "remote: $where"
pub=$("$d/btrstore" keygen -key "$d/signing.key")

now() { date +%s.%N; }
took() { printf '%.3f s' "$(echo "$(now) - $1" | bc)"; }

echo; echo "== host A builds the default spec"
t=$(now); out=$("$d/builder" -root "$d/a/store"); echo "$out"; echo "host A build: $(took "$t")"
last=$(sed -n 's|^done in .*: .*/result/\([^/]*\)/.*|\1|p' <<<"$out")

echo; echo "== host A exports every result (bases first)"
before=$(bytes); t=$(now)
"$d/btrstore" export -root "$d/a/store" -key "$d/signing.key" "${remote[@]}" $("$d/btrstore" results -root "$d/a/store")
echo "host A export: $(took "$t"), $(( $(bytes) - before )) bytes uploaded"

echo; echo "== host B imports the last result ($last) and, with it, its parents"
t=$(now)
"$d/btrstore" import -root "$d/b/store" -trust "$pub" "${remote[@]}" "$last"
echo "host B import: $(took "$t"); results on B: $("$d/btrstore" results -root "$d/b/store" | wc -l)"

echo; echo "== host B builds on top: the default spec plus one step"
sed 's|^  \]$|    ,{"run": "read -r r < report; echo \\"$r, and built on host B\\" > fleet"}\n  ]|' examples/builder/default.json >"$d/spec.json"
t=$(now); "$d/builder" -root "$d/b/store" -spec "$d/spec.json"; echo "host B build on top: $(took "$t")"
