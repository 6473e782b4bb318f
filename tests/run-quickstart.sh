#!/bin/bash
# run-quickstart.sh BINDIR: what `make run` does after building.
#
# Starts BINDIR/rprd on ./.rpr (its defaults: unix socket ./.rpr/rpr.sock,
# http://127.0.0.1:8270/), waits until it answers, applies
# examples/quickstart/ with BINDIR/rprctl, prints where everything is and
# what to try, then stays with rprd until it exits. Ctrl-C (or SIGTERM)
# stops rprd cleanly and returns its exit code.
set -euo pipefail

BINDIR=${1:?usage: tests/run-quickstart.sh BINDIR}
BINDIR=$(cd "$BINDIR" && pwd)
STATE=$PWD/.rpr
SOCK=$STATE/rpr.sock
RPRD=$BINDIR/rprd
RPRCTL=$BINDIR/rprctl

for b in "$RPRD" "$RPRCTL"; do
	[ -x "$b" ] || { echo "run-quickstart: $b missing; run make first" >&2; exit 1; }
done
[ -d examples/quickstart ] || { echo "run-quickstart: run me from the source tree" >&2; exit 1; }

"$RPRD" --state-dir "$STATE" &
PID=$!

stop() {
	trap - INT TERM
	echo >&2
	echo "run-quickstart: stopping rprd (pid $PID)" >&2
	kill -TERM "$PID" 2>/dev/null || true
	rc=0
	wait "$PID" || rc=$?
	exit "$rc"
}
trap stop INT TERM

# Wait up to 15 s for the socket and an answer; give up if rprd died.
ready=0
for _ in $(seq 150); do
	if ! kill -0 "$PID" 2>/dev/null; then
		rc=0
		wait "$PID" || rc=$?
		echo "run-quickstart: rprd exited with $rc before it was ready" >&2
		exit 1
	fi
	if [ -S "$SOCK" ] && "$RPRCTL" --server "unix:$SOCK" version >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ "$ready" != 1 ]; then
	echo "run-quickstart: rprd did not answer on $SOCK within 15 s" >&2
	kill -TERM "$PID" 2>/dev/null || true
	wait "$PID" || true
	exit 1
fi

# rprctl finds the admin token beside the socket: no secret on a command line.
if ! "$RPRCTL" --server "unix:$SOCK" apply -f examples/quickstart/; then
	echo "run-quickstart: applying examples/quickstart/ failed; stopping rprd" >&2
	kill -TERM "$PID" 2>/dev/null || true
	wait "$PID" || true
	exit 1
fi

ctl=$RPRCTL
case $ctl in "$PWD"/*) ctl=${ctl#"$PWD"/} ;; esac
cat <<EOF

rprd is running (pid $PID), state in $STATE
  API and dashboard: http://127.0.0.1:8270/   and unix:$SOCK
  admin token:       $STATE/admin.token (mode 0600)

Try, in another terminal:
  $ctl get servers
  $ctl get repos
  $ctl get bindings -o wide
  $ctl describe server localhost
  $ctl get binding site-deploy -o yaml
  $ctl explain server.spec.check
  $ctl diff -f examples/quickstart/
  $ctl token create ci --role viewer --expires 30d
  $ctl get servers -w
  curl -H "Authorization: Bearer \$(cat $STATE/admin.token)" http://127.0.0.1:8270/api/v1/servers

Ctrl-C stops rprd.
EOF

rc=0
wait "$PID" || rc=$?
trap - INT TERM
exit "$rc"
