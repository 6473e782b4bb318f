#!/usr/bin/env python3
"""agents.py [BINDIR]: many agents on one rprd. Prints figures, no pass/fail.

A load client speaks the agents' protocol as N agents (AGENTS_N, default
1,000; try 10000) over TLS to one rprd (the release build, bin/): each joins
(its own credential), then holds a long poll (25 s window), as rpr-agent
does when idle. Then:

  joins          wall time of N joins (16 at a time)
  RSS            rprd idle, with N agents joined (their Servers and
                 credentials in the store), and with their N polls held
  CPU            rprd's share of one core over 20 s of steady state
  dispatch       AGENTS_DISPATCH (default 200) commands, one at a time, each
                 to a random agent through POST /api/v1/exec: from the
                 request sent to the offer in that agent's poll answer
                 (p50, p99); the agent accepts and finishes it (0 bytes)

Targets (issue 19): 10,000 agents held under 200 MB RSS and under 20% of
one core at steady state; dispatch p99 under 50 ms.
"""

import asyncio
import http.client
import json
import os
import random
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BINDIR = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "bin"))
N = int(os.environ.get("AGENTS_N", "1000"))
DISPATCH = int(os.environ.get("AGENTS_DISPATCH", "200"))
JOIN_SECRET = "BenchJoin7Qw2Lk9Xv4Rt8Zp3"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


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


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Conn:
    """One keep-alive HTTP/1.1 connection over TLS."""

    def __init__(self, ctx, port):
        self.ctx, self.port = ctx, port
        self.reader = self.writer = None

    async def request(self, path, body, token=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx,
                                                                     server_hostname="localhost")
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


class Agent:
    def __init__(self, name, cred, ctx, port, offers):
        self.name, self.cred = name, cred
        self.conn = Conn(ctx, port)
        self.offers = offers  # name -> asyncio.Queue of (time, id)

    async def serve(self):
        hb = {"version": "0.1.0", "capacity": 1, "pollSeconds": 25, "wait": 25, "jobs": []}
        while True:
            status, body = await self.conn.request("/api/v1/agents/poll", hb, self.cred)
            if status != 200:
                raise RuntimeError("poll of %s: %d %s" % (self.name, status, body[:200]))
            now = time.monotonic()
            for offer in json.loads(body)["offers"]:
                self.offers[self.name].put_nowait((now, offer["id"]))
                await self.conn.request("/api/v1/agents/jobs/%s/accept" % offer["id"], b"", self.cred)
                await self.conn.request("/api/v1/agents/jobs/%s/finish" % offer["id"],
                                        {"exitCode": 0, "bytes": 0, "sha256": EMPTY_SHA}, self.cred)


async def join_all(ctx, port):
    sem = asyncio.Semaphore(16)
    creds = {}

    async def one(i):
        async with sem:
            c = Conn(ctx, port)
            name = "a%05d" % i
            status, body = await c.request("/api/v1/agents/join",
                                           {"token": JOIN_SECRET, "name": name, "version": "0.1.0",
                                            "labels": {"bench": "yes"}})
            assert status == 201, body
            creds[name] = json.loads(body)["credential"]
            c.writer.close()

    await asyncio.gather(*(one(i) for i in range(N)))
    return creds


def exec_one(sock, token, name):
    c = UnixHTTP(sock)
    c.request("POST", "/api/v1/exec", body=json.dumps({"servers": [name], "command": "true"}),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="rpr-bench-agents-")
    state, port = os.path.join(tmp, "state"), free_port()
    os.mkdir(state, 0o700)
    log = open(os.path.join(tmp, "rprd.log"), "wb")
    rprd = subprocess.Popen([os.path.join(BINDIR, "rprd"), "--state-dir", state, "--listen",
                             "unix:%s/rpr.sock" % state, "--listen", "tls:127.0.0.1:%d" % port,
                             "--allow-networks", "127.0.0.0/8,::1/128"], stdout=log, stderr=log)
    sock = os.path.join(state, "rpr.sock")
    try:
        for _ in range(200):
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
        ctx = ssl.create_default_context(cafile=os.path.join(state, "tls", "cert.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        rss_idle = rss_mb(rprd.pid)

        t = time.monotonic()
        creds = await join_all(ctx, port)
        print("agents         %d" % N)
        print("joins          %.2f s (%.1f ms each, 16 at a time)" % (time.monotonic() - t,
                                                                    (time.monotonic() - t) * 1000 / N))

        await asyncio.sleep(2)
        rss_joined = rss_mb(rprd.pid)
        offers = {name: asyncio.Queue() for name in creds}
        agents = [Agent(name, cred, ctx, port, offers) for name, cred in creds.items()]
        tasks = [asyncio.create_task(a.serve()) for a in agents]
        await asyncio.sleep(max(5, N / 1000 * 3))
        rss_held = rss_mb(rprd.pid)
        cpu0, t0 = cpu_seconds(rprd.pid), time.monotonic()
        await asyncio.sleep(20)
        cpu = (cpu_seconds(rprd.pid) - cpu0) / (time.monotonic() - t0) * 100
        print("RSS            idle %.1f MB; %d joined (Servers, credentials) %.1f MB; their polls held %.1f MB:"
              % (rss_idle, N, rss_joined, rss_held))
        print("               %.1f KB per agent in all, %.1f KB of it for its held poll" % (
            (rss_held - rss_idle) * 1024 / N, (rss_held - rss_joined) * 1024 / N))
        print("CPU            %.1f%% of one core at steady state" % cpu)

        lat = []
        loop = asyncio.get_running_loop()
        names = list(creds)
        for _ in range(DISPATCH):
            name = random.choice(names)
            t0 = time.monotonic()
            fut = loop.run_in_executor(None, exec_one, sock, token, name)
            got, _ = await asyncio.wait_for(offers[name].get(), 30)
            lat.append((got - t0) * 1000)
            await fut
        lat.sort()
        print("dispatch       p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d commands, exec -> offer in the poll)" % (
            lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], lat[-1], len(lat)))
        for t in tasks:
            if t.done() and t.exception():
                print("agent failed:", t.exception())
                break
            t.cancel()
    finally:
        rprd.terminate()
        rprd.wait(60)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    asyncio.run(main())
