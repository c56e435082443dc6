#!/usr/bin/env bash
# apt.sh runs apt-get as root, retrying what a busy mirror makes fail:
#
#	test/vm/apt.sh update [PACKAGE...]   apt-get update
#	test/vm/apt.sh install PACKAGE...    apt-get install -y --no-install-recommends
#
# update retries up to APT_TRIES times (default 3). If an index still fails
# (seen: "File has unexpected size ... Mirror sync in progress?" for one
# foreign architecture's security index), apt keeps every list it did get;
# the update then counts as done when each PACKAGE (name or name:arch) has an
# installation candidate, so that an index the caller does not need does not
# stop it. install retries the same way (a download can fail mid-sync too).
set -uo pipefail
tries=${APT_TRIES:-3}
export DEBIAN_FRONTEND=noninteractive

retry() {
	local i
	for ((i = 1; i <= tries; i++)); do
		"$@" && return 0
		echo "apt.sh: '$*' failed (attempt $i of $tries)" >&2
		((i < tries)) && sleep $((10 * i))
	done
	return 1
}

# candidates reports whether every package named has a candidate version.
candidates() {
	local p c missing=""
	for p in "$@"; do
		c=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
		if [ -z "$c" ] || [ "$c" = "(none)" ]; then missing="$missing $p"; fi
	done
	if [ -n "$missing" ]; then
		echo "apt.sh: no candidate for:$missing" >&2
		return 1
	fi
}

cmd=${1:-}
shift || true
case "$cmd" in
update)
	if retry apt-get update -qq; then exit 0; fi
	candidates "$@" || exit 1
	echo "apt.sh: apt-get update kept failing for some index, but every package needed has a candidate: carrying on" >&2
	;;
install)
	retry apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	;;
*)
	echo "usage: $0 update [PACKAGE...] | install PACKAGE..." >&2
	exit 2
	;;
esac
