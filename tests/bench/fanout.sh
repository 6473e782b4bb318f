#!/bin/bash
# fanout.sh [N...]: the same `uptime` on N sshd on loopback, through rprd and
# through the tools people use without it. Default: N=50 and N=100.
# Expects bin/rprd and bin/rprctl (make all; override with RPR_BIN_DIR),
# parallel-ssh and ansible (make bench-deps). Prints figures, no pass/fail.
#
# For each N:
#   1. rprctl exec -l ... -- uptime, on a freshly started rprd: every
#      session is new (connect, handshake, auth, exec)
#   2. the same again: over the sessions rprd pooled in 1
#   3. parallel-ssh -p 32 uptime
#   4. ansible all -m raw -a uptime -f 32
# Everyone runs 32 at a time (rprctl --parallel 32) and logs in as a plain
# user whose shell is /bin/sh (root's start-up files may be slow), and the
# peers use the key exchange libssh2 uses (curve25519-sha256): OpenSSH's
# default costs about three times the CPU per connection. See TOOLCHAIN.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BINDIR=$(cd "${RPR_BIN_DIR:-$REPO/bin}" && pwd)
RPRD=$BINDIR/rprd
RPRCTL=$BINDIR/rprctl
PARALLEL=32
BENCH_USER=${RPR_BENCH_USER:-rprbench}
KEX=curve25519-sha256
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(50 100)

for b in "$RPRD" "$RPRCTL" /usr/sbin/sshd; do
	[ -x "$b" ] || { echo "fanout: $b missing (make all)" >&2; exit 1; }
done
for t in parallel-ssh ansible; do
	command -v "$t" >/dev/null || { echo "fanout: $t missing (make bench-deps)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/rpr-fanout.XXXXXX)
chmod 0755 "$TMP"
SSHD_PIDS=()
RPRD_PID=
stop_rprd() {
	if [ -n "$RPRD_PID" ]; then
		kill -TERM "$RPRD_PID" 2>/dev/null || true
		wait "$RPRD_PID" 2>/dev/null || true
		RPRD_PID=
	fi
}
stop_sshds() {
	for p in "${SSHD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${SSHD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	SSHD_PIDS=()
}
cleanup() {
	stop_rprd
	stop_sshds
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", (b > 0 ? a / b : 0) }'; }
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- the plain user and the keys ---------------------------------------------------
if ! id "$BENCH_USER" >/dev/null 2>&1; then
	useradd -m -s /bin/sh "$BENCH_USER"
fi
# With UsePAM no, sshd refuses an account whose password is locked ("!").
usermod -p '*' "$BENCH_USER"
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -C fanout-host -f "$TMP/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C fanout-client -f "$TMP/client_ed25519"
HOST_PIN="ssh-ed25519 $(ssh-keygen -lf "$TMP/host_ed25519.pub" | awk '{print $2}')"
KEY=$TMP/client_ed25519
SSH_OPTS="-o KexAlgorithms=$KEX -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i $KEY"

start_sshds() {
	local n=$1 i port
	: >"$TMP/ports"
	for i in $(seq "$n"); do
		port=$(free_port)
		cat >"$TMP/sshd_config.$i" <<-EOF
			Port $port
			ListenAddress 127.0.0.1
			HostKey $TMP/host_ed25519
			AuthorizedKeysFile $TMP/client_ed25519.pub
			UsePAM no
			PasswordAuthentication no
			KbdInteractiveAuthentication no
			StrictModes no
			KexAlgorithms $KEX
			MaxStartups 200:30:400
			PidFile $TMP/sshd.$i.pid
			LogLevel ERROR
		EOF
		/usr/sbin/sshd -D -e -f "$TMP/sshd_config.$i" 2>>"$TMP/sshd.log" &
		SSHD_PIDS+=($!)
		echo "$port" >>"$TMP/ports"
	done
	for port in $(cat "$TMP/ports"); do
		for _ in $(seq 200); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.02
		done
	done
}

start_rprd() {
	local state=$1
	"$RPRD" --state-dir "$state" --listen "unix:$state/rpr.sock" --allow-networks 127.0.0.0/8,::1/128 2>>"$TMP/rprd.log" &
	RPRD_PID=$!
	for _ in $(seq 200); do
		[ -S "$state/rpr.sock" ] && [ -s "$state/admin.token" ] &&
			"$RPRCTL" --server "unix:$state/rpr.sock" version >/dev/null 2>&1 && return 0
		kill -0 "$RPRD_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "fanout: rprd did not start:" >&2
	cat "$TMP/rprd.log" >&2
	exit 1
}

metric() { curl -s --unix-socket "$1/rpr.sock" http://localhost/metrics | awk -v m="$2" '$1 == m { print $2 }'; }

# Runs "$@" quietly; prints the seconds it took, or fails with its output.
timed() {
	local t0 t1
	t0=$(now)
	if ! "$@" >"$TMP/out" 2>&1; then
		echo "fanout: failed: $*" >&2
		tail -n 20 "$TMP/out" >&2
		exit 1
	fi
	t1=$(now)
	elapsed "$t0" "$t1"
}

declare -A RESULT
for n in "${SIZES[@]}"; do
	start_sshds "$n"

	# Servers applied to a fresh rprd; once every check is done, rprd is
	# restarted so that the first fan-out opens every session anew.
	state=$TMP/state-$n
	mkdir -m 0700 "$state"
	start_rprd "$state"
	i=0
	for port in $(cat "$TMP/ports"); do
		i=$((i + 1))
		printf -- '---\napiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: peer-%03d\n  labels: {bench: fanout}\nspec:\n  host: 127.0.0.1\n  port: %d\n  user: %s\n  identityFile: %s\n  hostKey: "%s"\n' \
			"$i" "$port" "$BENCH_USER" "$KEY" "$HOST_PIN"
	done >"$TMP/servers-$n.yaml"
	"$RPRCTL" --server "unix:$state/rpr.sock" apply -f "$TMP/servers-$n.yaml" >/dev/null
	for _ in $(seq 600); do
		ready=$("$RPRCTL" --server "unix:$state/rpr.sock" get servers -l bench=fanout -o json |
			/usr/bin/python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin)["items"] if o.get("status",{}).get("phase")=="Reachable"))')
		[ "$ready" -eq "$n" ] && break
		sleep 0.1
	done
	[ "$ready" -eq "$n" ] || { echo "fanout: only $ready of $n servers Reachable" >&2; exit 1; }
	stop_rprd
	start_rprd "$state"
	sleep 1
	sessions=$(metric "$state" rpr_ssh_sessions)

	ctl=("$RPRCTL" --server "unix:$state/rpr.sock" exec server -l bench=fanout --parallel "$PARALLEL" -- uptime)
	RESULT[$n,first]=$(timed "${ctl[@]}")
	RESULT[$n,second]=$(timed "${ctl[@]}")
	RESULT[$n,sessions]="$sessions -> $(metric "$state" rpr_ssh_sessions)"
	stop_rprd

	sed 's/^/127.0.0.1:/' "$TMP/ports" >"$TMP/hosts-$n"
	# shellcheck disable=SC2086
	RESULT[$n,pssh]=$(timed parallel-ssh -h "$TMP/hosts-$n" -p "$PARALLEL" -l "$BENCH_USER" -t 60 \
		-x "$SSH_OPTS" uptime)

	{
		echo "[peers]"
		i=0
		for port in $(cat "$TMP/ports"); do
			i=$((i + 1))
			echo "peer-$i ansible_host=127.0.0.1 ansible_port=$port"
		done
		echo "[peers:vars]"
		echo "ansible_user=$BENCH_USER"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_ssh_common_args='-o KexAlgorithms=$KEX -o UserKnownHostsFile=/dev/null'"
	} >"$TMP/inventory-$n"
	RESULT[$n,ansible]=$(ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_SSH_CONTROL_PATH_DIR="$TMP/cp-$n" \
		ANSIBLE_LOCAL_TEMP="$TMP/ansible-tmp" ANSIBLE_NOCOLOR=1 \
		timed ansible all -i "$TMP/inventory-$n" -m raw -a uptime -f "$PARALLEL")

	stop_sshds
done

echo
echo "fan-out of \`uptime\` over loopback sshd, $PARALLEL at a time, $(nproc) CPUs (seconds)"
printf '%-40s' ""
for n in "${SIZES[@]}"; do printf '%12s' "N=$n"; done
echo
row() {
	printf '%-40s' "$1"
	for n in "${SIZES[@]}"; do printf '%12s' "${RESULT[$n,$2]}"; done
	echo
}
row "rprctl exec, first (new sessions)" first
row "rprctl exec, second (pooled sessions)" second
row "parallel-ssh -p $PARALLEL" pssh
row "ansible -m raw -f $PARALLEL" ansible
printf '%-40s' "pssh / rpr first"
for n in "${SIZES[@]}"; do printf '%12s' "$(ratio "${RESULT[$n,pssh]}" "${RESULT[$n,first]}")"; done
echo
printf '%-40s' "ansible / rpr first"
for n in "${SIZES[@]}"; do printf '%12s' "$(ratio "${RESULT[$n,ansible]}" "${RESULT[$n,first]}")"; done
echo
printf '%-40s' "rpr first / rpr second"
for n in "${SIZES[@]}"; do printf '%12s' "$(ratio "${RESULT[$n,first]}" "${RESULT[$n,second]}")"; done
echo
printf '%-40s' "rpr_ssh_sessions before -> after"
for n in "${SIZES[@]}"; do printf '%12s' "${RESULT[$n,sessions]}"; done
echo
