#!/usr/bin/env python3
"""agents.py [--fanout HOSTS]: many agents on one rprd. Prints figures, no
pass/fail. Uses bin/ (the release build; RPR_BIN_DIR overrides).

A load client speaks the agents' protocol as N agents (AGENTS_N, default
1,000; 10,000 works) over TLS to one rprd (the release build, bin/): each
joins (its own credential), then holds a long poll (25 s window), as
rpr-agent does when idle: over its poll stream (AGENTS_HTTP=stream, the
default: one HTTP/1.1 upgrade, then a frame per poll and per answer), or
as POST polls over AGENTS_HTTP=h2 or http/1.1 (older agents). The agents live in AGENTS_PROCS client processes
(default one per 2,500 agents), each an asyncio loop with one TLS context,
so that the client is not what limits the figures; its CPU is printed too.
Then:

  joins          wall time of N joins (AGENTS_JOIN_PARALLEL in flight, 32)
  RSS            rprd idle, with N agents joined (their Servers and
                 credentials in the store), and with their N polls held,
                 in MiB; then sampled twice a second from the second poll
                 window to the end of the steady state: lowest, median and
                 highest (the figure, also in decimal MB);
                 with AGENTS_MALLOC_STATS=1 also glibc's malloc_stats() at
                 each phase (through gdb, into rprd's log, printed) and the
                 RSS after malloc_trim(0), which is what fragmentation holds
  CPU            rprd's share of one core over AGENTS_STEADY seconds (40),
                 starting one poll window after the polls were first held
                 (every agent has been answered and polls again)
  dispatch       AGENTS_DISPATCH (default 200) commands, one at a time, each
                 to a random agent through POST /api/v1/exec: from the
                 request sent to the offer in that agent's poll answer
                 (p50, p99); the agent accepts and finishes it (0 bytes)

With --fanout HOSTS (50): the same `uptime` through `rprctl exec` to HOSTS
real rpr-agent processes and to HOSTS loopback sshd (pooled sessions, as in
fanout.sh), five rounds each, from the request to all done.

AGENTS_RPRD_WRAP runs rprd under a profiler ("heaptrack -o FILE"); the RSS
figures are then the wrapper's. AGENTS_PERF=FILE records rprd with perf
over the steady state. Targets (issue 19): 10,000 agents held
under 200 MB RSS and under 20% of one core at steady state; dispatch p99
under 50 ms.
"""

import asyncio
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import h2.config  # python3-h2 (make bench-deps)
import h2.connection
import h2.events

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BINDIR = os.path.abspath(os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin")))
N = int(os.environ.get("AGENTS_N", "1000"))
PROCS = int(os.environ.get("AGENTS_PROCS", str(max(1, math.ceil(N / 2500)))))
JOIN_PARALLEL = int(os.environ.get("AGENTS_JOIN_PARALLEL", "32"))
STEADY = float(os.environ.get("AGENTS_STEADY", "40"))
DISPATCH = int(os.environ.get("AGENTS_DISPATCH", "200"))
MALLOC_STATS = os.environ.get("AGENTS_MALLOC_STATS") == "1"
HTTP = os.environ.get("AGENTS_HTTP", "stream")
JOIN_SECRET = "BenchJoin7Qw2Lk9Xv4Rt8Zp3"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
WINDOW = 25


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


class RssSampler:
    """rprd's RSS twice a second on a thread of its own, until stop():
    then the lowest, the median and the highest."""

    def __init__(self, pid):
        self.pid, self.samples, self.done = pid, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.5):
            self.samples.append(rss_mb(self.pid))

    def stop(self):
        self.done.set()
        self.thread.join()
        s = sorted(self.samples)
        return s[0], s[len(s) // 2], s[-1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def loadavg():
    return "load %s" % " ".join(open("/proc/loadavg").read().split()[:3])


class Conn:
    """One keep-alive HTTP/1.1 connection over TLS."""

    def __init__(self, ctx, port):
        self.ctx, self.port = ctx, port
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx,
                                                                 server_hostname="localhost")

    async def request(self, path, body, token=None):
        if self.writer is None:
            await self.connect()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            path, len(data))
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        self.writer.write(head.encode() + b"\r\n" + data)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:
            out = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                out += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            out = await self.reader.readexactly(length or 0)
        return status, out

    def close(self):
        """Closes the socket at once, as a process that exits does (rpr-agent
        join): waiting for rprd's close_notify would hold it open."""
        if self.writer is not None:
            self.writer.transport.abort()


class H2Conn(Conn):
    """One HTTP/2 connection over TLS, one request at a time on it, as
    rpr-agent's libcurl speaks by default (ALPN h2)."""

    async def connect(self):
        await super().connect()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())

    async def request(self, path, body, token=None):
        if self.writer is None:
            await self.connect()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "https"), (":authority", "localhost"), (":path", path),
                   ("content-type", "application/json"), ("content-length", str(len(data)))]
        if token:
            headers.append(("authorization", "Bearer " + token))
        self.h2.send_headers(sid, headers, end_stream=not data)
        if data:
            self.h2.send_data(sid, data, end_stream=True)
        self.writer.write(self.h2.data_to_send())
        status, out, done = None, b"", False
        while not done:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("rprd closed the connection")
            for ev in self.h2.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    out += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError("rprd ended the stream: %r" % ev)
            pending = self.h2.data_to_send()
            if pending:
                self.writer.write(pending)
        return status, out


class StreamConn(Conn):
    """An agent's poll stream (rpr-agent's way when rprd offers it): one
    HTTP/1.1 upgrade, then each poll and each answer a frame (4-byte
    big-endian length, JSON). Job requests go on another connection."""

    async def open(self, token):
        await self.connect()
        self.writer.write(("GET /api/v1/agents/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                           "Connection: Upgrade\r\nUpgrade: rpr-agent-poll/1\r\n\r\n" % token).encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            raise RuntimeError("no poll stream: %r" % head[:200])

    async def poll(self, hb):
        data = json.dumps(hb).encode()
        self.writer.write(len(data).to_bytes(4, "big") + data)
        await self.writer.drain()
        n = int.from_bytes(await self.reader.readexactly(4), "big")
        return 200, await self.reader.readexactly(n)


# ---- the client processes ----------------------------------------------------------------------


class Client:
    """One client process: its share of the agents, driven by the parent
    through a pipe (join, poll, stop); offers are reported with the time
    they arrived (time.monotonic is one clock for all processes)."""

    def __init__(self, names, port, cafile, pipe, offers):
        self.names, self.port, self.pipe, self.offers = names, port, pipe, offers
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.ctx.set_alpn_protocols(["http/1.1" if HTTP == "stream" else HTTP])
        self.conn_class = H2Conn if HTTP == "h2" else Conn
        self.creds = {}
        self.polled = 0
        self.failed = []

    async def join(self):
        sem = asyncio.Semaphore(max(1, JOIN_PARALLEL // PROCS))

        async def one(name):
            async with sem:
                c = self.conn_class(self.ctx, self.port)
                status, body = await c.request("/api/v1/agents/join",
                                               {"token": JOIN_SECRET, "name": name, "version": "0.1.0",
                                                "labels": {"bench": "yes"}})
                c.close()
                if status != 201:
                    raise RuntimeError("join of %s: %d %s" % (name, status, body[:200]))
                self.creds[name] = json.loads(body)["credential"]

        await asyncio.gather(*(one(n) for n in self.names))

    async def serve(self, name, delay):
        cred = self.creds[name]
        hb = {"version": "0.1.0", "capacity": 1, "pollSeconds": WINDOW, "wait": WINDOW, "jobs": []}
        await asyncio.sleep(delay)
        if HTTP == "stream":
            conn = StreamConn(self.ctx, self.port)
            await conn.open(cred)
        else:
            conn = self.conn_class(self.ctx, self.port)
            await conn.connect()
        self.polled += 1
        while True:
            if HTTP == "stream":
                status, body = await conn.poll(hb)
            else:
                status, body = await conn.request("/api/v1/agents/poll", hb, cred)
            if status != 200 or "offers" not in json.loads(body):
                raise RuntimeError("poll of %s: %d %s" % (name, status, body[:200]))
            now = time.monotonic()
            for offer in json.loads(body)["offers"]:
                self.offers.put((name, now))
                jobs = Conn(self.ctx, self.port) if HTTP == "stream" else conn
                await jobs.request("/api/v1/agents/jobs/%s/accept" % offer["id"], b"", cred)
                await jobs.request("/api/v1/agents/jobs/%s/finish" % offer["id"],
                                   {"exitCode": 0, "bytes": 0, "sha256": EMPTY_SHA}, cred)
                if jobs is not conn:
                    jobs.close()

    async def run(self):
        loop = asyncio.get_running_loop()
        commands = asyncio.Queue()
        loop.add_reader(self.pipe.fileno(), lambda: commands.put_nowait(self.pipe.recv()))
        tasks = []
        while True:
            cmd = await commands.get()
            if cmd == "join":
                t = time.monotonic()
                await self.join()
                self.pipe.send(("joined", time.monotonic() - t))
            elif cmd == "poll":
                # The first polls spread over a second per 1,000 agents (at
                # least two), as agents started at different times would
                # be; after that each agent's window keeps its own phase.
                spread = max(2, N / 1000)
                tasks = [asyncio.ensure_future(self.serve(n, random.random() * spread)) for n in self.creds]
                while self.polled < len(self.creds) and not any(t.done() for t in tasks):
                    await asyncio.sleep(0.1)
                self.pipe.send(("polling", self.polled))
            elif cmd == "status":
                failed = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled()]
                ru = resource.getrusage(resource.RUSAGE_SELF)
                self.pipe.send(("status", failed[:3], ru.ru_utime + ru.ru_stime))
            elif cmd == "stop":
                for t in tasks:
                    t.cancel()
                self.pipe.send(("stopped",))
                return


def client_main(names, port, cafile, pipe, offers):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Client(names, port, cafile, pipe, offers).run())


def ask_all(pipes, cmd):
    for p in pipes:
        p.send(cmd)
    return [p.recv() for p in pipes]


# ---- rprd ---------------------------------------------------------------------------------------


def malloc_probe(pid, log_path, what):
    """glibc's own account (arenas, in use vs. held) and what trimming gives
    back: the difference is memory freed but kept by malloc."""
    before = rss_mb(pid)
    with open(log_path, "rb") as f:
        f.seek(0, 2)
        start = f.tell()
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void) malloc_stats()",
                    "-ex", "call (int) malloc_trim(0)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    with open(log_path, "rb") as f:
        f.seek(start)
        stats = f.read().decode(errors="replace")
    total = re.findall(r"Total \(incl. mmap\):\s+system bytes\s+=\s+(\d+)\s+in use bytes\s+=\s+(\d+)", stats)
    arenas = len(re.findall(r"^Arena \d+:", stats, re.M))
    if total:
        sys_b, used_b = (int(x) for x in total[-1])
        print("  malloc (%s): %d arenas, %.1f MB held from the system, %.1f MB in use; RSS %.1f MB, "
              "after malloc_trim %.1f MB" % (what, arenas, sys_b / 2**20, used_b / 2**20, before, rss_mb(pid)))


def start_rprd(tmp, port):
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    log_path = os.path.join(tmp, "rprd.log")
    log = open(log_path, "wb")
    wrap = os.environ.get("AGENTS_RPRD_WRAP", "").split()
    rprd = subprocess.Popen(wrap + [os.path.join(BINDIR, "rprd"), "--state-dir", state, "--listen",
                                    "unix:%s/rpr.sock" % state, "--listen", "tls:127.0.0.1:%d" % port,
                                    "--allow-networks", "127.0.0.0/8,::1/128"], stdout=log, stderr=log)
    sock = os.path.join(state, "rpr.sock")
    for _ in range(400):
        if os.path.exists(os.path.join(state, "admin.token")) and os.path.exists(sock):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    token = open(os.path.join(state, "admin.token")).read().strip()
    c = UnixHTTP(sock)
    c.request("POST", "/api/v1/apply", body=json.dumps([{
        "apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "bench-join"},
        "spec": {"type": "agent", "value": JOIN_SECRET}}]),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert c.getresponse().status == 200
    c.close()
    return rprd, state, sock, token, log_path


def exec_one(sock, token, name):
    c = UnixHTTP(sock)
    c.request("POST", "/api/v1/exec", body=json.dumps({"servers": [name], "command": "true"}),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()


def dispatch(sock, token, names, offers):
    lat = []
    for _ in range(DISPATCH):
        name = random.choice(names)
        t0 = time.monotonic()
        th = threading.Thread(target=exec_one, args=(sock, token, name))
        th.start()
        while True:
            got_name, got = offers.get(timeout=30)
            if got_name == name:
                break
        lat.append((got - t0) * 1000)
        th.join()
    lat.sort()
    return lat


# ---- the same command to 50 hosts: agents against pooled ssh -----------------------------------


def apply_objects(sock, token, objects):
    c = UnixHTTP(sock)
    c.request("POST", "/api/v1/apply", body=json.dumps(objects),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    c.close()


def reachable(sock, token, selector):
    c = UnixHTTP(sock)
    c.request("GET", "/api/v1/namespaces/default/servers?labelSelector=" + selector,
              headers={"Authorization": "Bearer " + token})
    items = json.loads(c.getresponse().read())["items"]
    c.close()
    return sum(1 for o in items if o.get("status", {}).get("phase") == "Reachable")


def wait_reachable(sock, token, selector, n, what):
    for _ in range(1200):
        if reachable(sock, token, selector) == n:
            return
        time.sleep(0.1)
    sys.exit("agents.py: not all %d %s became Reachable" % (n, what))


def exec_wall(sock, state, selector):
    """rprctl exec of `uptime` on every selected Server, 32 at a time:
    from the request to all done (rprctl waits for every one)."""
    t = time.monotonic()
    subprocess.run([os.path.join(BINDIR, "rprctl"), "--server", "unix:" + sock, "exec", "server", "-l", selector,
                    "--parallel", "32", "--", "uptime"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, RPR_TOKEN=open(os.path.join(state, "admin.token")).read().strip()))
    return time.monotonic() - t


def fanout(hosts, rounds=5):
    """The same command on `hosts` real rpr-agents (each its own process,
    joined over TLS, holding its poll) and on `hosts` loopback sshd
    (pooled sessions, libssh2's key exchange, a plain /bin/sh user)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    import sshd as sshd_mod

    tmp = tempfile.mkdtemp(prefix="rpr-bench-fanout-")
    os.chmod(tmp, 0o755)
    port = free_port()
    rprd, state, sock, token, log_path = start_rprd(tmp, port)
    agents, daemons = [], []
    try:
        cert = os.path.join(state, "tls", "cert.pem")
        for i in range(hosts):
            d = os.path.join(tmp, "agent-%d" % i)
            subprocess.run([os.path.join(BINDIR, "rpr-agent"), "join", "--server", "https://127.0.0.1:%d" % port,
                            "--token", JOIN_SECRET, "--name", "ag-%03d" % i, "--labels", "fanout=agents",
                            "--ca", cert, "--state-dir", d], check=True, stdout=subprocess.DEVNULL)
            agents.append(subprocess.Popen([os.path.join(BINDIR, "rpr-agent"), "run", "--state-dir", d],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        keys = sshd_mod.Keys.generate(os.path.join(tmp, "keys"))
        servers = []
        for i in range(hosts):
            d = sshd_mod.Sshd(tmp, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")],
                              extra=["KexAlgorithms curve25519-sha256"]).start()
            daemons.append(d)
            servers.append({"apiVersion": "rpr/v1", "kind": "Server",
                            "metadata": {"name": "ssh-%03d" % i, "labels": {"fanout": "ssh"}},
                            "spec": {"host": "127.0.0.1", "port": d.port, "user": d.user,
                                     "identityFile": keys.client("ed25519"), "hostKey": d.pin("ed25519")}})
        apply_objects(sock, token, servers)
        wait_reachable(sock, token, "fanout%3Dagents", hosts, "agent Servers")
        wait_reachable(sock, token, "fanout%3Dssh", hosts, "ssh Servers")
        over_agents = [exec_wall(sock, state, "fanout=agents") for _ in range(rounds)]
        over_ssh = [exec_wall(sock, state, "fanout=ssh") for _ in range(rounds)]
        print("fan-out        `uptime` on %d hosts, request to all done (%d rounds; %s):" % (hosts, rounds, loadavg()))
        print("               over agents %s s" % " ".join("%.3f" % t for t in over_agents))
        print("               over pooled ssh %s s (the first checks opened the sessions)"
              % " ".join("%.3f" % t for t in over_ssh))
    finally:
        for a in agents:
            a.terminate()
        for a in agents:
            a.wait(30)
        for d in daemons:
            d.cleanup()
        rprd.terminate()
        rprd.wait(60)
        subprocess.run(["rm", "-rf", tmp])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--fanout":
        fanout(int(sys.argv[2]) if len(sys.argv) > 2 else 50)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if N + 100 > hard:
        sys.exit("agents.py: %d agents need more than the fd limit %d" % (N, hard))
    tmp = tempfile.mkdtemp(prefix="rpr-bench-agents-")
    port = free_port()
    rprd, state, sock, token, log_path = start_rprd(tmp, port)
    names = ["a%05d" % i for i in range(N)]
    offers = multiprocessing.Queue()
    pipes, procs = [], []
    try:
        for k in range(PROCS):
            parent, child = multiprocessing.Pipe()
            p = multiprocessing.Process(target=client_main, args=(names[k::PROCS], port,
                                                                  os.path.join(state, "tls", "cert.pem"),
                                                                  child, offers), daemon=True)
            p.start()
            pipes.append(parent)
            procs.append(p)
        print("agents         %d over %s (%d client processes; %s)" % (N, HTTP, PROCS, loadavg()))
        if MALLOC_STATS:
            malloc_probe(rprd.pid, log_path, "idle")
        rss_idle = rss_mb(rprd.pid)

        t = time.monotonic()
        ask_all(pipes, "join")
        joined = time.monotonic() - t
        print("joins          %.1f s (%.2f ms each, %d in flight)" % (joined, joined * 1000 / N, JOIN_PARALLEL))
        time.sleep(2)
        if MALLOC_STATS:
            malloc_probe(rprd.pid, log_path, "joined")
        rss_joined = rss_mb(rprd.pid)

        t = time.monotonic()
        ask_all(pipes, "poll")
        time.sleep(3)
        print("polls          all %d held %.1f s after the first (rprd holds %d fds)" % (
            N, time.monotonic() - t, open_fds(rprd.pid)))
        rss_held = rss_mb(rprd.pid)
        # Every agent answered once and polling again: what is left is what
        # a fleet costs as it goes on. RSS is sampled twice a second from
        # here to the end of the steady state: its highest is the figure.
        sampler = RssSampler(rprd.pid)
        time.sleep(WINDOW + 5)
        cpu0, t0 = cpu_seconds(rprd.pid), time.monotonic()
        client0 = sum(s[2] for s in ask_all(pipes, "status"))
        if os.environ.get("AGENTS_PERF"):
            subprocess.run(["perf", "record", "-F", "199", "--call-graph", "dwarf,8192", "-p", str(rprd.pid), "-o",
                            os.environ["AGENTS_PERF"], "--", "sleep", str(STEADY)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            time.sleep(STEADY)
        cpu = (cpu_seconds(rprd.pid) - cpu0) / (time.monotonic() - t0) * 100
        status = ask_all(pipes, "status")
        client_cpu = (sum(s[2] for s in status) - client0) / (time.monotonic() - t0) * 100
        rss_low, rss_median, rss_steady = sampler.stop()
        print("RSS (MiB)      idle %.1f; %d joined %.1f; their polls held %.1f; over %.0f s of polling "
              "%.1f-%.1f, median %.1f (MB: highest %.1f)" % (rss_idle, N, rss_joined, rss_held, WINDOW + 5 + STEADY,
                                                            rss_low, rss_steady, rss_median, rss_steady * 1.048576))
        print("               %.1f KiB per agent in all, %.1f KiB of it for its held poll (at the highest)" % (
            (rss_steady - rss_idle) * 1024 / N, (rss_steady - rss_joined) * 1024 / N))
        print("CPU            rprd %.1f%% of one core over %.0f s of steady state (the client: %.1f%%; %s)"
              % (cpu, STEADY, client_cpu, loadavg()))
        if MALLOC_STATS:
            malloc_probe(rprd.pid, log_path, "polling")
        for s in status:
            if s[1]:
                print("agents failed:", s[1])
                with open(log_path, errors="replace") as f:
                    print("rprd's log ends:", *f.readlines()[-10:], sep="\n  ")

        lat = dispatch(sock, token, names, offers)
        print("dispatch       p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d commands, exec -> offer in the poll; %s)" % (
            lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], lat[-1], len(lat), loadavg()))
        ask_all(pipes, "stop")
    finally:
        for p in procs:
            p.kill()
        rprd.terminate()
        rprd.wait(60)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
