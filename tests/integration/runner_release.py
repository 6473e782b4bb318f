"""A stand-in GitHub Actions runner release, built by the tests.

The tarball has what the real actions-runner-linux-x64-VERSION.tar.gz has
at its top and rpr uses: config.sh, run.sh and bin/Runner.Listener, here
POSIX sh scripts that take the real flags:

  config.sh --unattended --url URL --token TOKEN --name NAME [--labels A,B]
            [--work DIR] [--replace] [--ephemeral] [--disableupdate]
            [--runnergroup G]       registers with the fake (POST /_runner/register),
                                    writes .runner
  config.sh remove --token TOKEN    forgets .runner
  run.sh [--jitconfig B64]          runs bin/Runner.Listener run, passing its exit code on

The listener takes its identity from --jitconfig, ACTIONS_RUNNER_INPUT_JITCONFIG
or .runner, then heartbeats the fake (POST /_runner/heartbeat) every
RPR_FAKE_HEARTBEAT seconds (default 1): "job" makes it busy, "done" ends
the job (an ephemeral runner then exits 0), "deprecated" exits 7 when
ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE is set (1 otherwise),
"gone" (its registration was deleted) exits 2. HTTP is `busybox wget`, so
the scripts run on the test hosts and in busybox images alike (without -T:
Debian's busybox-static 1.35 wget crashes with it).
"""

import hashlib
import io
import os
import tarfile

CONFIG_SH = r'''#!/bin/sh
# Stand-in for the runner's config.sh (rpr tests).
set -u
cd "$(dirname "$0")"
if [ "${1:-}" = remove ]; then rm -f .runner; echo "Runner removed"; exit 0; fi
url= token=${ACTIONS_RUNNER_INPUT_TOKEN:-} name= labels= work=_work replace=false ephemeral=false unattended=false group=Default
while [ $# -gt 0 ]; do
  case $1 in
    --unattended) unattended=true;;
    --url) url=$2; shift;;
    --token) token=$2; shift;;
    --name) name=$2; shift;;
    --labels) labels=$2; shift;;
    --work) work=$2; shift;;
    --runnergroup) group=$2; shift;;
    --replace) replace=true;;
    --ephemeral) ephemeral=true;;
    --disableupdate) ;;
    *) echo "config.sh: unknown option $1" >&2; exit 1;;
  esac
  shift
done
[ "$unattended" = true ] || { echo "config.sh: only --unattended is supported here" >&2; exit 1; }
[ -n "$url" ] && [ -n "$token" ] && [ -n "$name" ] || { echo "config.sh: --url, --token and --name are required" >&2; exit 1; }
base=$(echo "$url" | sed 's#^\(https*://[^/]*\).*#\1#')
umask 077
# The token goes in a file, not on wget's command line.
printf 'token=%s&name=%s&labels=%s&ephemeral=%s&replace=%s' "$token" "$name" "$labels" "$ephemeral" "$replace" >.register
out=$(busybox wget -q -O - --post-file .register "$base/_runner/register"); rc=$?
rm -f .register
[ $rc = 0 ] || { echo "config.sh: registration refused" >&2; exit 1; }
{ echo "url=$base"; echo "$out"; echo "ephemeral=$ephemeral"; echo "work=$work"; } > .runner
echo "√ Runner successfully added"
echo "√ Settings Saved."
'''

RUN_SH = r'''#!/bin/sh
# Stand-in for the runner's run.sh (rpr tests).
cd "$(dirname "$0")"
bin/Runner.Listener run "$@"
exit $?
'''

LISTENER = r'''#!/bin/sh
# Stand-in for bin/Runner.Listener (rpr tests).
set -u
cd "$(dirname "$0")/.."
[ "${1:-}" = run ] && shift
jit=${ACTIONS_RUNNER_INPUT_JITCONFIG:-}
while [ $# -gt 0 ]; do
  case $1 in
    --jitconfig) jit=$2; shift;;
    --once|--startuptype) ;;
  esac
  shift
done
if [ -n "$jit" ]; then
  creds=$(echo "$jit" | busybox base64 -d) || { echo "invalid JIT configuration" >&2; exit 1; }
  ephemeral=true
else
  [ -f .runner ] || { echo "Not configured. Run config.sh to configure the runner." >&2; exit 1; }
  creds=$(cat .runner)
  ephemeral=$(echo "$creds" | sed -n 's/^ephemeral=//p')
fi
url=$(echo "$creds" | sed -n 's/^url=//p')
id=$(echo "$creds" | sed -n 's/^id=//p')
secret=$(echo "$creds" | sed -n 's/^secret=//p')
umask 077
printf 'id=%s&secret=%s' "$id" "$secret" >.heartbeat
echo "√ Connected to GitHub"
echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Listening for Jobs"
while :; do
  ans=$(busybox wget -q -O - --post-file .heartbeat "$url/_runner/heartbeat" 2>/dev/null) || ans=
  case $ans in
    job) echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Running job";;
    done) echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Job completed with result: Succeeded"
          [ "$ephemeral" = true ] && exit 0;;
    deprecated) echo "An error occurred: Runner version is deprecated and cannot receive messages." >&2
          [ -n "${ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE:-}" ] && exit 7
          exit 1;;
    gone) echo "Runner registration has been deleted from the server" >&2; exit 2;;
  esac
  sleep "${RPR_FAKE_HEARTBEAT:-1}"
done
'''


def build(directory, version="2.321.0", pad=0):
    """Writes actions-runner-linux-x64-VERSION.tar.gz into directory;
    returns (path, sha256). pad: bytes of random data added (bin/pad), to
    make a release of a real one's order of size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("config.sh", CONFIG_SH), ("run.sh", RUN_SH), ("bin/Runner.Listener", LISTENER)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        if pad:
            info = tarfile.TarInfo("bin/pad")
            info.size = pad
            tar.addfile(info, io.BytesIO(os.urandom(pad)))
    path = os.path.join(directory, "actions-runner-linux-x64-%s.tar.gz" % version)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()
