#!/bin/bash
# run-quickstart.sh BINDIR: what `make run` does after building.
#
# Makes the quickstart's git repository (/tmp/rpr-quickstart/site.git, with
# a work tree to commit from) unless a whole one is there, starts
# BINDIR/rprd on ./.rpr (its defaults: unix socket ./.rpr/rpr.sock,
# http://127.0.0.1:8270/), waits until it answers, applies
# examples/quickstart/ with BINDIR/rprctl, prints where everything is and
# what to try, then stays with rprd until it exits. Ctrl-C (or SIGTERM)
# stops rprd cleanly and returns its exit code. No network is needed: the
# repository is local and the Server is this machine.
set -euo pipefail

BINDIR=${1:?usage: tests/run-quickstart.sh BINDIR}
BINDIR=$(cd "$BINDIR" && pwd)
STATE=$PWD/.rpr
SOCK=$STATE/rpr.sock
# rprd's TCP port: its default, 8270, unless RPR_QUICKSTART_PORT says
# otherwise (another rprd, or a test, may hold 8270).
PORT=${RPR_QUICKSTART_PORT:-8270}
# More rprd flags (the test gives --allow-networks: loopback only).
RPRD_ARGS=${RPR_QUICKSTART_RPRD_ARGS:-}
RPRD=$BINDIR/rprd
RPRCTL=$BINDIR/rprctl

for b in "$RPRD" "$RPRCTL"; do
	[ -x "$b" ] || { echo "run-quickstart: $b missing; run make first" >&2; exit 1; }
done
[ -d examples/quickstart ] || { echo "run-quickstart: run me from the source tree" >&2; exit 1; }
# The quickstart's repository and its Binding's command both need git.
command -v git >/dev/null || { echo "run-quickstart: git is missing" >&2; exit 1; }

# The repository the quickstart Binding deploys from: first page committed.
# One from an earlier run is kept (with its commits) if main still resolves
# to a commit; a half of one (say /tmp partly cleaned) is made afresh, since
# `git init` over it would find nothing to commit and stop here.
QS=/tmp/rpr-quickstart
if ! git --git-dir="$QS/site.git" rev-parse -q --verify 'main^{commit}' >/dev/null 2>&1; then
	if [ -e "$QS/site.git" ] || [ -e "$QS/work" ]; then
		echo "run-quickstart: $QS is incomplete; making it afresh" >&2
	fi
	rm -rf "$QS/site.git" "$QS/work"
	mkdir -p "$QS"
	git init -q --bare -b main "$QS/site.git"
	git init -q -b main "$QS/work"
	echo '<h1>Hello from rpr</h1>' >"$QS/work/index.html"
	git -C "$QS/work" add index.html
	# Identity and no signing given here: the user's git config may lack one
	# or require the other.
	git -C "$QS/work" -c user.name=rpr -c user.email=rpr@localhost -c commit.gpgsign=false \
		commit -q -m "The first page"
	git -C "$QS/work" remote add origin "$QS/site.git"
	git -C "$QS/work" push -q -u origin main
	git -C "$QS/work" config user.name "rpr quickstart"
	git -C "$QS/work" config user.email rpr@localhost
fi

"$RPRD" --state-dir "$STATE" --listen "unix:$SOCK" --listen "tcp:127.0.0.1:$PORT" --anonymous-read $RPRD_ARGS &
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
  API and dashboard: http://127.0.0.1:$PORT/   and unix:$SOCK
                     (the dashboard is read-only until you log in with the admin token)
  admin token:       $STATE/admin.token (mode 0600)

The Binding site-deploy deploys the commits of $QS/site.git
into $QS/www. Deploy a change, in another terminal:
  echo '<p>changed</p>' >> $QS/work/index.html
  git -C $QS/work commit -qam "A change" && git -C $QS/work push -q
  $ctl check repo site                  # or wait: the Repo looks every minute
  $ctl get runs                         # site-deploy-2 Succeeded
  $ctl logs run/site-deploy-2
  cat $QS/www/index.html

More to try:
  $ctl get servers
  $ctl get repos -o wide
  $ctl get bindings -o wide
  $ctl trigger binding site-deploy
  $ctl logs activity --tail 20
  $ctl describe server localhost
  $ctl get binding site-deploy -o yaml
  $ctl explain server.spec.check
  $ctl diff -f examples/quickstart/
  $ctl token create ci --role viewer --expires 30d
  $ctl get servers -w
  curl -H "Authorization: Bearer \$(cat $STATE/admin.token)" http://127.0.0.1:$PORT/api/v1/servers

Ctrl-C stops rprd.
EOF

rc=0
wait "$PID" || rc=$?
trap - INT TERM
exit "$rc"
