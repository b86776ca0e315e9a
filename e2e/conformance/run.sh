#!/usr/bin/env bash
# `make conformance`: the upstream Kubernetes conformance suite (e2e.test of
# k8s.io/kubernetes, the release in e2e/conformance/go.mod) against a Skiff
# cluster of one master and two agents in test network namespaces. See
# docs/CONFORMANCE.md. Root only (network namespaces, containers).
#
# Settings (environment):
#   CONFORMANCE_FOCUS   ginkgo focus   (default '\[Conformance\]')
#   CONFORMANCE_SKIP    ginkgo skip    (default '\[Serial\]|\[Disruptive\]')
#   CONFORMANCE_PROCS   parallel ginkgo processes (default 2; 1 runs e2e.test alone)
#   CONFORMANCE_SERIAL  1: then run the [Serial] conformance specs, one at a time
#   CONFORMANCE_REPORT  report directory (default bin/conformance/report-<UTC time>)
#   CONFORMANCE_TIMEOUT whole-suite timeout (default 12h)
#   SKIFF_BIN           skiff binary to test (default: `make build`, bin/skiff)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GO=${GO:-go}
FOCUS=${CONFORMANCE_FOCUS:-'\[Conformance\]'}
SKIP=${CONFORMANCE_SKIP-'\[Serial\]|\[Disruptive\]'}
PROCS=${CONFORMANCE_PROCS:-2}
TIMEOUT=${CONFORMANCE_TIMEOUT:-12h}
OUT=$ROOT/bin/conformance
REPORT=${CONFORMANCE_REPORT:-$OUT/report-$(date -u +%Y%m%dT%H%M%SZ)}
MOD=$ROOT/e2e/conformance

say() { printf '== %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "make conformance: needs root (network namespaces and containers)" >&2
	exit 1
fi

# uptodate TARGET DEP...: TARGET exists and no DEP is newer.
uptodate() {
	local t=$1
	shift
	[ -e "$t" ] || return 1
	local d
	for d in "$@"; do
		[ "$d" -nt "$t" ] && return 1
	done
	return 0
}

mkdir -p "$OUT" "$REPORT"
started=$(date +%s)

# 1. Binaries. e2e.test is big (minutes of compiling on a loaded machine):
# it is rebuilt only when the nested module's go.mod or go.sum change.
if [ -z "${SKIFF_BIN:-}" ]; then
	say "building skiff"
	make --no-print-directory build >&2
	SKIFF_BIN=$ROOT/bin/skiff
fi
export SKIFF_BIN
modfiles=("$MOD/go.mod" "$MOD/go.sum")
if ! uptodate bin/e2e.test "${modfiles[@]}"; then
	say "building e2e.test (k8s.io/kubernetes/test/e2e)"
	(cd "$MOD" && CGO_ENABLED=0 $GO test -c -vet=off -o "$ROOT/bin/e2e.test" k8s.io/kubernetes/test/e2e)
fi
if ! uptodate bin/ginkgo "${modfiles[@]}"; then
	say "building ginkgo"
	(cd "$MOD" && CGO_ENABLED=0 $GO build -o "$ROOT/bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo)
fi
if ! uptodate bin/agnhost "${modfiles[@]}"; then
	say "building agnhost"
	(cd "$MOD" && CGO_ENABLED=0 $GO build -o "$ROOT/bin/agnhost" k8s.io/kubernetes/test/images/agnhost)
fi
if ! uptodate bin/nnp "${modfiles[@]}"; then
	say "building nonewprivs' nnp"
	(cd "$MOD" && CGO_ENABLED=0 $GO build -o "$ROOT/bin/nnp" k8s.io/kubernetes/test/images/nonewprivs)
fi
say "building the harness (pause, summary, cluster)"
(cd "$MOD" && CGO_ENABLED=0 $GO build -o "$OUT/pause" ./pause && $GO build -o "$OUT/summary" ./summary)
# The cluster program is the main module's (it uses e2e/testutil): built from
# the root by file name.
$GO build -o "$OUT/cluster" ./e2e/conformance/cluster/main.go

# 2. Images, named exactly as this e2e.test asks for them.
uptodate "$OUT/images.txt" bin/e2e.test || bin/e2e.test --list-images >"$OUT/images.txt"
# ref RE [all]: the first image name matching RE, or all of them.
ref() {
	local m=-m1
	[ "${2:-}" = all ] && m=
	grep $m -E "$1" "$OUT/images.txt" || { echo "make conformance: e2e.test names no image matching $1" >&2; exit 1; }
}
AGNHOST=$(ref '^registry\.k8s\.io/e2e-test-images/agnhost:')
# The suite names two busybox tags: both are Debian's busybox-static.
BUSYBOX=$(ref '^registry\.k8s\.io/e2e-test-images/busybox:' all | sort | paste -sd, -)
PAUSE=$(ref '^registry\.k8s\.io/pause:')
# jessie-dnsutils (the DNS tests' second prober): a stand-in with the same
# tools (dig, getent, sh) on agnhost's busybox root.
JESSIE=$(ref '^registry\.k8s\.io/e2e-test-images/jessie-dnsutils:')
# httpd and nginx: stand-ins (busybox's httpd serving the upstream document
# root on port 80), every tag the suite names.
HTTPD=$(ref '^registry\.k8s\.io/e2e-test-images/httpd:' all | sort | paste -sd, -)
NGINX=$(ref '^registry\.k8s\.io/e2e-test-images/nginx:' all | sort | paste -sd, -)
# nonewprivs (upstream's program, set-user-ID root, on busybox); kitten and
# nautilus (agnhost's test-webserver with upstream's pictures and data.json).
NONEWPRIVS=$(ref '^registry\.k8s\.io/e2e-test-images/nonewprivs:')
KITTEN=$(ref '^registry\.k8s\.io/e2e-test-images/kitten:')
NAUTILUS=$(ref '^registry\.k8s\.io/e2e-test-images/nautilus:')
UNBUILDABLE=$(grep -v -x -F -e "$AGNHOST" -e "$PAUSE" -e "$JESSIE" -e "$NONEWPRIVS" -e "$KITTEN" -e "$NAUTILUS" "$OUT/images.txt" | grep -v -x -F "$(tr , '\n' <<<"$BUSYBOX,$HTTPD,$NGINX")" | paste -sd, -)
IMAGES=$OUT/images
if ! uptodate "$IMAGES/agnhost.tar" bin/agnhost bin/nnp "$OUT/pause" "$OUT/images.txt" "$MOD/cluster/main.go"; then
	say "building images: $AGNHOST $BUSYBOX $PAUSE $JESSIE $HTTPD $NGINX $NONEWPRIVS $KITTEN $NAUTILUS"
	rm -rf "$IMAGES"
	agnsrc=$(cd "$MOD" && $GO list -f '{{.Dir}}' k8s.io/kubernetes/test/images/agnhost)
	"$OUT/cluster" images -out "$IMAGES" -agnhost bin/agnhost -porter-certs "$agnsrc/porter" -pause "$OUT/pause" \
		-agnhost-ref "$AGNHOST" -busybox-ref "$BUSYBOX" -pause-ref "$PAUSE" -jessie-ref "$JESSIE" \
		-httpd-ref "$HTTPD" -nginx-ref "$NGINX" -nnp bin/nnp -nonewprivs-ref "$NONEWPRIVS" \
		-test-images "$(dirname "$agnsrc")" -kitten-ref "$KITTEN" -nautilus-ref "$NAUTILUS" >&2
fi

# 3. The cluster: one master (with its embedded agent) and two agents, each
# in a network namespace of its own; every node imports the images at
# start. The cluster program deletes the pods and stops the nodes on
# SIGTERM; node logs are kept in the report directory.
WORK=$(mktemp -d /tmp/skiff-conformance.XXXXXX)
KUBECONFIG_FILE=$WORK/kubeconfig
cpid=
cleanup() {
	local rc=$?
	if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
		say "stopping the cluster"
		kill -TERM "$cpid" 2>/dev/null || true
		wait "$cpid" 2>/dev/null || true
	fi
	# A pod the cluster could not delete (stuck Terminating) leaves its
	# container's mounts behind once the nodes stop: unmount them.
	awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" || true
	done
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
# A signal interrupts a running e2e.test (ginkgo then writes its report and
# the summary is printed), else exits; the EXIT trap cleans up.
interrupted=
epid=
on_signal() {
	interrupted=1
	# ginkgo's parallel processes are interrupted with their CLI: e2e.test
	# runs in a process group of its own (setsid), signalled as a whole.
	if [ -n "$epid" ]; then kill -INT -- "-$epid" 2>/dev/null || true; else exit 130; fi
}
trap on_signal INT TERM
say "starting the cluster (log: $REPORT/cluster.log)"
SKIFF_KEEP_LOGS=$REPORT/nodes "$OUT/cluster" up -images "$IMAGES" -kubeconfig "$KUBECONFIG_FILE" -work "$WORK/nodes" \
	>"$REPORT/cluster.log" 2>&1 &
cpid=$!
deadline=$(($(date +%s) + 300))
until [ -s "$KUBECONFIG_FILE" ]; do
	if ! kill -0 "$cpid" 2>/dev/null; then
		tail -30 "$REPORT/cluster.log" >&2
		echo "make conformance: the cluster did not start" >&2
		exit 1
	fi
	if [ "$(date +%s)" -gt "$deadline" ]; then
		tail -30 "$REPORT/cluster.log" >&2
		echo "make conformance: the cluster was not ready after 300s" >&2
		exit 1
	fi
	sleep 1
done
grep 'cluster ready' "$REPORT/cluster.log" >&2 || true
kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -o wide >&2

# 4. The suite. e2e.test runs on this host and talks to the master through
# the test network's bridge; pods' traffic stays inside the namespaces.
# run_suite NAME FOCUS SKIP PROCS
run_suite() {
	local name=$1 focus=$2 skip=$3 procs=$4
	local dir=$REPORT/$name
	mkdir -p "$dir"
	local args=(--kubeconfig="$KUBECONFIG_FILE" --provider=skeleton --report-dir="$dir"
		--allowed-not-ready-nodes=0 --kubectl-path="$(command -v kubectl)")
	local t0
	t0=$(date +%s)
	say "running e2e.test ($name): focus '$focus', skip '$skip', $procs process(es); log $dir/e2e.log"
	if [ "$procs" -gt 1 ]; then
		setsid bin/ginkgo --procs="$procs" --timeout="$TIMEOUT" --no-color --focus="$focus" ${skip:+--skip="$skip"} \
			bin/e2e.test -- "${args[@]}" >"$dir/e2e.log" 2>&1 &
	else
		setsid bin/e2e.test "${args[@]}" --ginkgo.timeout="$TIMEOUT" --ginkgo.no-color --ginkgo.focus="$focus" \
			${skip:+--ginkgo.skip="$skip"} >"$dir/e2e.log" 2>&1 &
	fi
	epid=$!
	local rc=0
	while :; do
		wait "$epid" && rc=0 || rc=$?
		kill -0 "$epid" 2>/dev/null || break
	done
	epid=
	local secs=$(($(date +%s) - t0))
	say "$name: e2e.test exited $rc after $((secs / 60))m$((secs % 60))s"
	if [ ! -s "$dir/junit_01.xml" ]; then
		tail -40 "$dir/e2e.log" >&2
		echo "make conformance: no JUnit report in $dir (see $dir/e2e.log)" >&2
		return 1
	fi
	"$OUT/summary" -focus "$focus" -skip "$skip" -unbuildable "$UNBUILDABLE" "$dir/junit_01.xml" | tee "$dir/summary.txt"
	echo "($name: $((secs / 60))m$((secs % 60))s, $procs process(es); report $dir)"
}

{
	echo "skiff $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (modified)'), e2e.test of $(grep -m1 -o 'k8s.io/kubernetes v[^ ]*' "$MOD/go.mod")"
	echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem/ {print $2}') GiB, $(uname -sr)"
	echo "images built: $AGNHOST $BUSYBOX $PAUSE $JESSIE (stand-in) $HTTPD $NGINX $NONEWPRIVS $KITTEN $NAUTILUS (stand-ins)"
	echo "images not built (tests needing them fail): $UNBUILDABLE"
} | tee "$REPORT/run.txt" >&2
rc=0
run_suite parallel "$FOCUS" "$SKIP" "$PROCS" || rc=1
if [ "${CONFORMANCE_SERIAL:-0}" = 1 ] && [ -z "$interrupted" ]; then
	run_suite serial '\[Serial\].*\[Conformance\]|\[Conformance\].*\[Serial\]' '\[Disruptive\]' 1 || rc=1
fi
secs=$(($(date +%s) - started))
echo "make conformance: $((secs / 60))m$((secs % 60))s in all; report in $REPORT"
exit $rc
