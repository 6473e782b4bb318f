#!/bin/bash
# apply.sh [BINDIR]: rough figures for rprd, printed side by side with what
# people do without it. Builds nothing: expects BINDIR (default bin/) to hold
# rprd and rprctl (make all). Prints figures only, no pass/fail.
#
#   1. rprctl apply -f of one YAML file with 10,000 Servers (target < 5 s);
#      they are inactive (127.x addresses, port 1: the Server controller
#      marks them Inactive, one status write each, instead of trying
#      10,000 logins during the measurement)
#   2. rprd's memory after it, VmHWM and VmRSS (target < 30 MB)
#   3. GET of one object with wrk -t2 -c32 -d5s over TCP (target > 20k req/s)
#   4. for comparison: the same 10,000 objects as files written by a shell
#      loop, a sqlite3 bulk insert of that JSON, and make -j over 10,000
#      no-op targets.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BINDIR=$(cd "${1:-$REPO/bin}" && pwd)
N=${RPR_BENCH_N:-10000}
RPRD=$BINDIR/rprd
RPRCTL=$BINDIR/rprctl

for b in "$RPRD" "$RPRCTL"; do
	[ -x "$b" ] || { echo "bench: $b missing (make all first)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/rpr-bench.XXXXXX)
PID=
cleanup() {
	if [ -n "$PID" ]; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STATE=$TMP/state
mkdir -m 0700 "$STATE"

"$RPRD" --state-dir "$STATE" --listen "unix:$STATE/rpr.sock" --listen "tcp:127.0.0.1:$PORT" \
	--allow-networks 127.0.0.0/8,::1/128 \
	2>"$TMP/rprd.log" &
PID=$!
for _ in $(seq 200); do
	[ -S "$STATE/rpr.sock" ] && [ -s "$STATE/admin.token" ] &&
		"$RPRCTL" --server "unix:$STATE/rpr.sock" version >/dev/null 2>&1 && break
	kill -0 "$PID" 2>/dev/null || { echo "bench: rprd exited:" >&2; cat "$TMP/rprd.log" >&2; exit 1; }
	sleep 0.05
done
TOKEN=$(cat "$STATE/admin.token")
RSS_IDLE=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
ctl() { "$RPRCTL" --server "unix:$STATE/rpr.sock" "$@"; }

# ---- 1. one YAML file of N Servers -------------------------------------------
awk -v n="$N" 'BEGIN {
	for (i = 0; i < n; i++) {
		printf "%sapiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: srv-%05d\n", (i ? "---\n" : ""), i
		printf "  labels: {role: web, rack: r%d}\nspec:\n  host: 127.%d.%d.%d\n  port: 1\n", i % 10, int(i / 65536) % 256, int(i / 256) % 256, i % 256
		printf "  user: deploy\n  active: false\n  check: {interval: 1h}\n"
	}
}' >"$TMP/servers.yaml"
SIZE_KB=$(( $(stat -c %s "$TMP/servers.yaml") / 1024 ))

t0=$(now)
ctl apply -f "$TMP/servers.yaml" >"$TMP/apply.out"
T_APPLY=$(since "$t0")
CREATED=$(grep -c ' created$' "$TMP/apply.out" || true)

t0=$(now)
ctl apply -f "$TMP/servers.yaml" >"$TMP/apply2.out"
T_APPLY2=$(since "$t0")

t0=$(now)
ctl get servers >/dev/null
T_GET=$(since "$t0")

# ---- 2. memory ----------------------------------------------------------------
RSS_BUSY=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
# Then let the controllers finish what the apply gave them (10,000 status
# writes) before measuring what rprd holds.
t0=$(now)
for _ in $(seq 600); do
	pending=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "rpr_controller_pending" { print $2 }')
	[ "${pending:-0}" = 0 ] && break
	sleep 0.1
done
T_SETTLE=$(since "$t0")
HWM=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")
RSS=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")

# ---- 3. GET throughput ----------------------------------------------------------
RPS=n/a
if command -v wrk >/dev/null; then
	wrk -t2 -c32 -d5s -H "Authorization: Bearer $TOKEN" \
		"http://127.0.0.1:$PORT/api/v1/namespaces/default/servers/srv-00042" >"$TMP/wrk.out" 2>&1 || true
	RPS=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$TMP/wrk.out")
	NON2XX=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk.out")
	[ -z "$NON2XX" ] || RPS="$RPS ($NON2XX non-2xx!)"
fi
RSS_AFTER=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status")

kill -TERM "$PID"
wait "$PID" || true
PID=

# ---- 4. what people do without rprd -----------------------------------------------
mkdir "$TMP/files"
t0=$(now)
for ((i = 0; i < N; i++)); do
	printf -v name 'srv-%05d' "$i"
	printf '{"apiVersion":"rpr/v1","kind":"Server","metadata":{"name":"%s","labels":{"role":"web"}},"spec":{"host":"127.0.%d.%d","port":1,"user":"deploy"}}\n' \
		"$name" $((i / 256 % 256)) $((i % 256)) >"$TMP/files/$name.json"
done
T_FILES=$(since "$t0")

T_SQLITE=n/a
if command -v sqlite3 >/dev/null; then
	t0=$(now)
	sqlite3 "$TMP/objects.db" >/dev/null <<EOF
PRAGMA journal_mode=WAL;
CREATE TABLE objects (name TEXT PRIMARY KEY, json TEXT NOT NULL);
BEGIN;
INSERT INTO objects (name, json)
  SELECT name, CAST(data AS TEXT) FROM fsdir('$TMP/files') WHERE name LIKE '%.json';
COMMIT;
EOF
	T_SQLITE=$(since "$t0")
	ROWS=$(sqlite3 "$TMP/objects.db" 'SELECT count(*) FROM objects')
	[ "$ROWS" = "$N" ] || T_SQLITE="$T_SQLITE ($ROWS rows!)"
fi

awk -v n="$N" 'BEGIN {
	printf ".PHONY: all\nall:"
	for (i = 0; i < n; i++) printf " t%05d", i
	printf "\nt%%:\n\t@:\n"
}' >"$TMP/Makefile"
t0=$(now)
make -s -j"$(nproc)" -C "$TMP" -f "$TMP/Makefile" all >/dev/null
T_MAKE=$(since "$t0")

# ---- report ------------------------------------------------------------------------
printf '\nrpr bench: %d Server objects (%d KiB of YAML), binaries in %s\n\n' "$N" "$SIZE_KB" "$BINDIR"
fmt='  %-52s %-28s %s\n'
printf "$fmt" "what" "figure" "target"
printf "$fmt" "----" "------" "------"
printf "$fmt" "rprd VmRSS at start (empty store)" "$RSS_IDLE MB" ""
RATE=$(awk -v n="$CREATED" -v t="$T_APPLY" 'BEGIN { printf "%d", (t > 0 ? n / t : 0) }')
printf "$fmt" "rprctl apply -f (one file, $CREATED created)" "$T_APPLY s ($RATE objects/s)" "< 5 s"
printf "$fmt" "rprctl apply -f again (all unchanged)" "$T_APPLY2 s" ""
printf "$fmt" "rprctl get servers (table of $N)" "$T_GET s" ""
printf "$fmt" "rprd VmRSS right after the applies (controller busy)" "$RSS_BUSY MB" ""
printf "$fmt" "controller done with the 10,000 status writes" "$T_SETTLE s later" ""
printf "$fmt" "rprd memory holding them: VmHWM / VmRSS" "$HWM / $RSS MB" "< 30 MB"
printf "$fmt" "GET one object, wrk -t2 -c32 -d5s (TCP)" "$RPS req/s" "> 20000 req/s"
printf "$fmt" "rprd VmRSS after wrk" "$RSS_AFTER MB" ""
printf '\n  for comparison, the same %d objects without rprd:\n' "$N"
printf "$fmt" "shell loop writing one JSON file per object" "$T_FILES s" ""
printf "$fmt" "sqlite3 bulk insert of those files (one txn)" "$T_SQLITE s" ""
printf "$fmt" "make -j$(nproc) of $N no-op targets" "$T_MAKE s" ""
printf '\n'
