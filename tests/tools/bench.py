#!/usr/bin/env python3
"""bench.py: Postino's benchmark, run by `make bench` (Python 3 standard library only).

Starts everything itself in a temporary folder and stops it by pid at the end (SIGTERM,
bounded wait, SIGKILL), in a finally block:
  - a redis-server on a unix socket (appendonly yes, appendfsync always, --save '',
    maxmemory-policy noeviction), as Postino requires;
  - postino (POSTINO_BUILD, default "build") with a generated config: data_dir in the temporary
    folder, that Redis, submission on a free 127.0.0.1 port, no implicit-TLS listener (unless
    --tls implicit), hostname bench.test, default workers;
  - a user "bench" (postinoctl user add) that owns example.com;
then runs POSTINO_BUILD/tools/loadgen with STARTTLS and AUTH PLAIN against it and measures:
  - submission messages/s and latency (from loadgen's summary line),
  - CPU seconds per 1000 messages of the postino processes (master and every descendant,
    utime + stime from /proc/<pid>/stat, sampled before and after), of redis-server and of
    loadgen itself (all share this machine's cores),
  - peak RSS (VmHWM, summed over the postino processes; redis-server's own),
  - Redis memory per queued message (INFO memory used_memory before and after, divided by the
    messages Postino counted as queued in pst:stat),
  - `openssl speed -seconds 3 -multi <cores> rsa2048` signatures/s, before anything else runs,
    and the ratio of the end-to-end rate to it (each message will need one RSA-2048 DKIM
    signature);
  - DKIM signing alone, right after openssl speed and before anything else starts:
    POSTINO_BUILD/tools/dkimbench -n -r 1 -s <--dkim-seconds> (dksign_message() on one thread
    per core, whole 5 KB messages, rsa-sha256, ed25519-sha256 and both), and each rate's ratio
    to the openssl rsa2048 rate above (dkimbench cannot take that rate as input, so -n keeps it
    from running openssl speed a second time; its own line is printed as it ran).
  - end to end: POSTINO_BUILD/tools/smtpsink is the remote MX (every recipient domain is routed
    to it with "route * = 127.0.0.1:PORT"); the end-to-end rate is the messages delivered
    divided by the time from the start of the first submission to the sink's last arrival.
    Redis memory per queued message is measured first, in a phase of its own: --mem-count
    messages (default 2000) submitted while their domain is held (postinoctl queue hold
    --domain), measured, then deleted, so that deliveries do not blur the count.
With --idle-sessions N it also opens N idle cleartext sessions (connected, EHLO answered) and
reports postino's total RSS with them open.

The last line printed is exactly
  bench: e2e_msgs_per_s=N sign_per_s=M ratio=R
Exit status: 0 when every message was accepted and every step worked, 1 otherwise. The
temporary folder (logs, config) is kept and named when something failed, or with --keep.
"""
import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HOST = "127.0.0.1"
USER = "bench"
PASSWORD = "benchpass123"
DOMAIN = "example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LOADGEN_LINE = re.compile(r"^loadgen: sent=\d+ .*$", re.M)
DKIMBENCH_LINE = re.compile(r"^dkimbench: rsa_msgs_per_s=.*$", re.M)


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


# ---------------------------------------------------------------- processes


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Proc:
    """A process this script started, with its log file; stop() ends it by pid."""

    def __init__(self, name, argv, log_path, **kwargs):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        try:
            self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, **kwargs)
        except OSError as e:
            self.log.close()
            raise BenchError(f"cannot start {name} ({argv[0]}): {e}") from e
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM, wait up to timeout, then SIGKILL (and a short wait). Returns the exit code."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"bench: {self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f} s: "
                      "SIGKILL", file=sys.stderr)
                self.popen.kill()
                try:
                    self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    print(f"bench: {self.name} (pid {self.pid}) survived SIGKILL",
                          file=sys.stderr)
        self.log.close()
        return self.popen.returncode

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-16384:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a true value; BenchError after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, BenchError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                             + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


# ---------------------------------------------------------------- /proc


def proc_stat(pid):
    """(ppid, utime + stime in seconds) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()  # after "pid (comm) "
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(root):
    """root and every process below it (scanning /proc/*/stat for parent pids)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = proc_stat(int(entry))
        if st is not None:
            children.setdefault(st[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids):
    """{pid: cpu seconds} for the pids still alive."""
    out = {}
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            out[pid] = st[1]
    return out


def status_kb(pid, key):
    """A "Vm..." value of /proc/<pid>/status in KiB, 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pids):
    """Resident set size of pids in KiB, from /proc/<pid>/statm (cheap to read often)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- Redis


class Resp:
    """A tiny RESP client over a unix socket, for INFO, HGET, PING. Every call is bounded."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise BenchError("Redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise BenchError("Redis reply line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self, depth=0):
        if depth > 8:
            raise BenchError("Redis reply nested too deep")
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"Redis error: {rest.decode(errors='replace')}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if n > 64 << 20:
                raise BenchError("Redis bulk reply too large")
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            if n > 100000:
                raise BenchError("Redis array reply too large")
            return None if n < 0 else [self._reply(depth + 1) for _ in range(n)]
        raise BenchError(f"unexpected Redis reply {line[:40]!r}")

    def cmd(self, *args):
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._reply()


def redis_info(path, section):
    """INFO section as a dict of strings."""
    r = Resp(path)
    try:
        text = r.cmd("INFO", section)
    finally:
        r.close()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def redis_ping(path):
    r = Resp(path, timeout=2)
    try:
        return r.cmd("PING") == "PONG"
    finally:
        r.close()


def messages_queued(path, field="messages_received_total"):
    """pst:stat messages_received_total as Postino counts it (0 before the first); with
    field="messages_queued", the messages in the queue now."""
    r = Resp(path)
    try:
        v = r.cmd("HGET", "pst:stat", field)
    finally:
        r.close()
    return int(v or 0)


# ---------------------------------------------------------------- SMTP helpers


def smtp_greets(port):
    """True when 127.0.0.1:port answers with a 220 greeting within 2 s."""
    with socket.create_connection((HOST, port), timeout=2) as s:
        data = b""
        while b"\r\n" not in data and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"220"):
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return True
    return False


def open_idle_sessions(port, count, timeout):
    """Opens count cleartext sessions to port, each greeted and past EHLO, and returns the open
    sockets (the caller closes them). At most 256 are being set up at once. Raises BenchError
    when not all of them get there within timeout seconds."""
    sel = selectors.DefaultSelector()
    done, started, failures = [], 0, []
    in_flight = {}
    deadline = time.monotonic() + timeout

    def start_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex((HOST, port))
        except OSError as e:
            s.close()
            failures.append(str(e))
            return
        in_flight[s] = {"stage": "greeting", "buf": b""}
        sel.register(s, selectors.EVENT_READ)

    def drop(s, why):
        sel.unregister(s)
        del in_flight[s]
        s.close()
        failures.append(why)

    try:
        while len(done) + len(failures) < count:
            while started < count and len(in_flight) < 256:
                start_one()
                started += 1
            if time.monotonic() > deadline:
                raise BenchError(f"idle sessions: {len(done)} of {count} open after "
                                 f"{timeout:.0f} s")
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                st = in_flight[s]
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    drop(s, str(e))
                    continue
                if not chunk:
                    drop(s, "closed by the server")
                    continue
                st["buf"] += chunk
                if len(st["buf"]) > 65536:
                    drop(s, "reply too long")
                    continue
                lines = st["buf"].split(b"\r\n")
                finished = [ln for ln in lines[:-1] if len(ln) >= 4 and ln[3:4] == b" "]
                if not finished:
                    continue
                last = finished[-1]
                if st["stage"] == "greeting":
                    if not last.startswith(b"220"):
                        drop(s, f"greeting {last[:60]!r}")
                        continue
                    st["stage"], st["buf"] = "ehlo", b""
                    s.sendall(b"EHLO idle.bench.test\r\n")
                else:
                    if not last.startswith(b"250"):
                        drop(s, f"EHLO reply {last[:60]!r}")
                        continue
                    sel.unregister(s)
                    del in_flight[s]
                    done.append(s)
        if failures:
            raise BenchError(f"idle sessions: {len(failures)} of {count} failed, first: "
                             f"{failures[0]}")
        return done
    except BaseException:
        for s in done + list(in_flight):
            s.close()
        raise
    finally:
        sel.close()


# ---------------------------------------------------------------- openssl speed


def openssl_speed(cores, seconds=3):
    """RSA-2048 signatures per second over `cores` processes, from `openssl speed`."""
    argv = ["openssl", "speed", "-seconds", str(seconds), "-multi", str(cores), "rsa2048"]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 4 + 60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"openssl speed: {e}") from e
    out = p.stdout + p.stderr
    m = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)\s*$", out, re.M)
    if m:
        return float(m.group(1))
    # the per-process lines "+F2:<n>:2048:<sign/s>:<verify/s>" summed
    fs = re.findall(r"\+F2:\d+:2048:([\d.]+):([\d.]+)", out)
    if fs:
        return sum(float(a) for a, _ in fs)
    raise BenchError(f"cannot read `{' '.join(argv)}` output (exit {p.returncode}): "
                     f"{out[-300:]!r}")


# ---------------------------------------------------------------- dkimbench


def dkimbench(binary, cores, seconds):
    """Runs dkimbench for one round of `seconds` per algorithm on `cores` threads, without its
    own openssl speed (-n). Returns {key: float} from its last line; BenchError when it fails."""
    argv = [binary, "-n", "-r", "1", "-s", f"{seconds:g}", "-t", str(cores)]
    print("bench: " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a
                               for a in argv), flush=True)
    limit = 4 * seconds + 60  # rsa, ed25519, both and the bare EVP run, plus key generation
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"dkimbench did not finish within {limit:.0f} s") from e
    except OSError as e:
        raise BenchError(f"cannot run dkimbench: {e}") from e
    for line in (p.stdout + p.stderr).splitlines():
        print("  " + line)
    print("bench: (dkimbench's openssl figures are 0 with -n: the table's ratios use the "
          "openssl speed run above)")
    m = None
    for m in DKIMBENCH_LINE.finditer(p.stdout):
        pass
    if p.returncode != 0 or m is None:
        raise BenchError(f"dkimbench: exit {p.returncode}"
                         + ("" if m else ", no summary line"))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", m.group(0))}


# ---------------------------------------------------------------- the run


def parse_loadgen(text):
    m = None
    for m in LOADGEN_LINE.finditer(text):
        pass
    if m is None:
        raise BenchError("loadgen printed no summary line")
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", m.group(0))}


def write_config(path, data_dir, redis_sock, port, smtps_port, cleartext_auth, max_conn,
                 sink_port, algorithms):
    lines = [
        "# generated by tests/tools/bench.py",
        "hostname = bench.test",
        f"data_dir = {data_dir}",
        f"redis = unix:{redis_sock}",
        f"listen_submission = {HOST}:{port}",
        f"listen_smtps = {HOST}:{smtps_port}" if smtps_port else "listen_smtps =",
        f"max_connections = {max_conn}",
        f"max_connections_per_ip = {max_conn}",
        f"route * = {HOST}:{sink_port}",
        f"dkim_algorithms = {algorithms}",
        f"bounce_rules = {os.path.join(ROOT, 'deploy', 'bounce-rules.conf')}",
    ]
    if cleartext_auth:
        lines.append("auth_cleartext_loopback = yes")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, want))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sink_stats(path):
    try:
        with open(path) as f:
            return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", f.read())}
    except OSError:
        return {}


def run_loadgen(args, argv, count, domains, tmp, name):
    argv = argv + ["--count", str(count), "--domains", str(domains)]
    print("bench: " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a
                               for a in argv if a != PASSWORD), flush=True)
    limit = args.max_seconds or 120 + count * 0.05
    try:
        lg = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"loadgen did not finish within {limit:.0f} s") from e
    with open(os.path.join(tmp, name), "w") as f:
        f.write(lg.stdout + lg.stderr)
    return lg


def ctl(postinoctl, conf, *args):
    p = subprocess.run([postinoctl, "-c", conf] + list(args), capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise BenchError(f"postinoctl {' '.join(args)} failed (exit {p.returncode}): "
                         f"{(p.stdout + p.stderr).strip()}")
    return p.stdout


def run(args, tmp, procs, results):
    build = os.environ.get("POSTINO_BUILD", "build")
    build_dir = build if os.path.isabs(build) else os.path.join(ROOT, build)
    postino = os.path.join(build_dir, "postino")
    postinoctl = os.path.join(build_dir, "postinoctl")
    loadgen = os.path.join(build_dir, "tools", "loadgen")
    dkimbench_bin = os.path.join(build_dir, "tools", "dkimbench")
    smtpsink = os.path.join(build_dir, "tools", "smtpsink")
    for b in (postino, postinoctl, loadgen, smtpsink) + \
            ((dkimbench_bin,) if args.dkim_seconds else ()):
        if not os.access(b, os.X_OK):
            raise BenchError(f"{b} is missing: run make first")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise BenchError("redis-server not found in PATH")
    cores = os.cpu_count() or 1
    results["cores"] = cores

    nofile = raise_nofile(args.idle_sessions + args.concurrency + 4096)
    if args.idle_sessions and nofile < args.idle_sessions + 256:
        raise BenchError(f"RLIMIT_NOFILE is {nofile}: too low for {args.idle_sessions} idle "
                         "sessions")

    # RSA signing speed first, while nothing else runs
    print(f"bench: openssl speed -seconds 3 -multi {cores} rsa2048 ...", flush=True)
    results["sign_per_s"] = openssl_speed(cores)
    if args.dkim_seconds:
        try:
            results["dkim"] = dkimbench(dkimbench_bin, cores, args.dkim_seconds)
        except BenchError as e:  # the submission figures are still worth having
            results["dkim_error"] = str(e)
            print(f"bench: FAILED: {e}", file=sys.stderr)

    redis_sock = os.path.join(tmp, "redis.sock")
    redis = Proc("redis-server", [
        redis_server, "--port", "0", "--unixsocket", redis_sock, "--unixsocketperm", "700",
        "--dir", tmp, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        "--maxmemory-policy", "noeviction", "--daemonize", "no",
        "--logfile", os.path.join(tmp, "redis.log")], os.path.join(tmp, "redis.out"))
    procs.append(redis)
    wait_until(lambda: redis_ping(redis_sock), 20, "redis-server to answer")

    sink_stats_path = os.path.join(tmp, "sink.stats")
    sink_port = free_port()
    sink = Proc("smtpsink", [smtpsink, "--listen", f"{HOST}:{sink_port}", "--stats",
                             sink_stats_path, "--delay-ms", str(args.sink_delay_ms)],
                os.path.join(tmp, "sink.log"))
    procs.append(sink)
    wait_until(lambda: smtp_greets(sink_port), 20, "smtpsink to greet")

    port = free_port()
    smtps_port = free_port() if args.tls == "implicit" else 0
    conf = os.path.join(tmp, "postino.conf")
    max_conn = max(10000, args.idle_sessions + args.concurrency + 100)
    write_config(conf, os.path.join(tmp, "data"), redis_sock, port, smtps_port,
                 args.tls == "none", max_conn, sink_port, args.algorithms)
    p = subprocess.run([postinoctl, "-c", conf, "user", "add", USER, "--domain", DOMAIN,
                        "--password", PASSWORD], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise BenchError(f"postinoctl user add failed (exit {p.returncode}): "
                         f"{(p.stdout + p.stderr).strip()}")

    master = Proc("postino", [postino, "-c", conf], os.path.join(tmp, "postino.log"))
    procs.append(master)
    for what, prt in (("submission", port), ("smtps", smtps_port)):
        if not prt:
            continue
        if what == "smtps":
            wait_until(lambda: socket.create_connection((HOST, prt), timeout=2).close() or True,
                       30, "postino's implicit-TLS port")
        else:
            wait_until(lambda: master.alive() and smtp_greets(prt), 30,
                       "postino to greet on the submission port")
    time.sleep(0.5)  # workers connect to Redis and load their scripts
    if not master.alive():
        raise BenchError(f"postino exited at start:\n{master.log_tail()}")

    target_port = smtps_port if args.tls == "implicit" else port
    lg_base = [loadgen, "--host", HOST, "--port", str(target_port), "--size", str(args.size),
               "--concurrency", str(args.concurrency), "--per-session", str(args.per_session),
               "--rcpts", str(args.rcpts), "--tls", args.tls, "--user", USER, "--password",
               PASSWORD]

    # phase 1: Redis memory per queued message, with delivery held back
    if args.mem_count:
        held = [f"rcpt-{i}.test" for i in range(min(args.domains, 100))]
        for d in held:
            ctl(postinoctl, conf, "queue", "hold", "--domain", d)
        mem0 = int(redis_info(redis_sock, "memory")["used_memory"])
        queued0 = messages_queued(redis_sock)
        lg = run_loadgen(args, lg_base, args.mem_count, len(held), tmp, "loadgen-mem.out")
        if lg.returncode != 0:
            raise BenchError(f"loadgen (memory phase) failed: {lg.stderr.strip()[-500:]}")
        time.sleep(0.3)
        mem1 = int(redis_info(redis_sock, "memory")["used_memory"])
        queued = messages_queued(redis_sock) - queued0
        results["queued"] = queued
        results["redis_bytes_per_msg"] = (mem1 - mem0) / queued if queued else 0.0
        for d in held:
            ctl(postinoctl, conf, "queue", "delete", "--domain", d)
            ctl(postinoctl, conf, "queue", "release", "--domain", d)
        wait_until(lambda: messages_queued(redis_sock, "messages_queued") == 0, 60,
                   "the memory phase's messages to be deleted")

    pids = descendants(master.pid)
    results["postino_processes"] = len(pids)
    cpu0 = cpu_seconds(pids)
    redis_cpu0 = cpu_seconds([redis.pid])
    sink_cpu0 = cpu_seconds([sink.pid])
    sink0 = sink_stats(sink_stats_path).get("messages", 0.0)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)

    # phase 2: end to end
    t_start = time.time()
    lg = run_loadgen(args, lg_base, args.count, args.domains, tmp, "loadgen.out")
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in lg.stdout.splitlines():
        print("  " + line)
    err_lines = [ln for ln in lg.stderr.splitlines() if not ln.startswith("loadgen: target=")]
    for line in err_lines[:10]:
        print("  " + line)
    summary = parse_loadgen(lg.stdout)
    results["loadgen"] = summary
    results["loadgen_rc"] = lg.returncode
    results["loadgen_cpu"] = ((children1.ru_utime + children1.ru_stime)
                              - (children0.ru_utime + children0.ru_stime))
    want = sink0 + summary.get("ok", 0.0)
    limit = 60 + args.count * 0.05
    try:
        wait_until(lambda: sink_stats(sink_stats_path).get("messages", 0.0) >= want, limit,
                   f"the sink to receive {want - sink0:.0f} messages", interval=0.2)
    except BenchError as e:
        results["delivery_error"] = str(e)
    st = sink_stats(sink_stats_path)
    delivered = st.get("messages", 0.0) - sink0
    results["delivered"] = delivered
    results["e2e_seconds"] = st.get("last", t_start) - t_start
    results["e2e_rate"] = delivered / results["e2e_seconds"] if results["e2e_seconds"] > 0 \
        else 0.0
    results["sink_cpu"] = (cpu_seconds([sink.pid]).get(sink.pid, 0.0)
                           - sink_cpu0.get(sink.pid, 0.0))
    results["sink_hwm_kb"] = status_kb(sink.pid, "VmHWM")

    time.sleep(0.2)  # let the last replies' Redis writes settle
    pids_after = set(descendants(master.pid)) | set(pids)
    cpu1 = cpu_seconds(pids_after)
    # a worker restarted during the run would have its whole life counted: say so
    restarted = sorted(set(cpu1) - set(cpu0))
    if restarted:
        results["note_restart"] = f"postino processes appeared during the run: {restarted}"
    results["postino_cpu"] = sum(cpu1.values()) - sum(cpu0.get(p, 0.0) for p in cpu1)
    results["redis_cpu"] = (cpu_seconds([redis.pid]).get(redis.pid, 0.0)
                            - redis_cpu0.get(redis.pid, 0.0))
    results["postino_hwm_kb"] = sum(status_kb(p, "VmHWM") for p in pids_after)
    results["redis_hwm_kb"] = status_kb(redis.pid, "VmHWM")

    if args.idle_sessions:
        pids_now = descendants(master.pid)
        before = rss_kb(pids_now)
        socks = open_idle_sessions(port, args.idle_sessions, 60 + args.idle_sessions / 50)
        try:
            time.sleep(1.0)
            pids_now = descendants(master.pid)
            with_idle = rss_kb(pids_now)
        finally:
            for s in socks:
                s.close()
        results["idle"] = (args.idle_sessions, before, with_idle)

    if not master.alive():
        raise BenchError(f"postino died during the run:\n{master.log_tail()}")


def fmt_rate(v):
    return f"{v:.1f}"


def print_table(args, results):
    lg = results.get("loadgen", {})
    ok = lg.get("ok", 0.0)
    sub_rate = lg.get("msgs_per_s", 0.0)
    rate = results.get("e2e_rate", 0.0)
    sign = results.get("sign_per_s", 0.0)
    per_k = 1000.0 / ok if ok else 0.0
    tls = {"starttls": "STARTTLS", "implicit": "implicit TLS", "none": "cleartext"}[args.tls]
    rows = [
        ("submission msgs/s", fmt_rate(sub_rate)),
        ("end-to-end msgs/s (first submission to last delivery)", fmt_rate(rate)),
        ("messages delivered / seconds end to end",
         f"{results.get('delivered', 0):.0f} / {results.get('e2e_seconds', 0):.2f}"),
        ("submission latency p50 / p99 (ms)",
         f"{lg.get('p50_ms', 0):.2f} / {lg.get('p99_ms', 0):.2f}"),
        ("messages ok / sent", f"{ok:.0f} / {lg.get('sent', 0):.0f}"),
        ("postino CPU s per 1000 msgs", f"{results.get('postino_cpu', 0) * per_k:.3f}"),
        ("redis CPU s per 1000 msgs", f"{results.get('redis_cpu', 0) * per_k:.3f}"),
        ("loadgen CPU s per 1000 msgs (same cores)",
         f"{results.get('loadgen_cpu', 0) * per_k:.3f}"),
        ("smtpsink CPU s per 1000 msgs (same cores)",
         f"{results.get('sink_cpu', 0) * per_k:.3f}"),
        (f"postino peak RSS, {results.get('postino_processes', 0)} processes (MiB)",
         f"{results.get('postino_hwm_kb', 0) / 1024:.1f}"),
        ("redis peak RSS (MiB)", f"{results.get('redis_hwm_kb', 0) / 1024:.1f}"),
        ("smtpsink peak RSS (MiB)", f"{results.get('sink_hwm_kb', 0) / 1024:.1f}"),
        (f"Redis bytes per queued message ({results.get('queued', 0)} held)",
         f"{results.get('redis_bytes_per_msg', 0):.0f}"),
        (f"openssl rsa2048 sign/s ({results.get('cores', 0)} processes)", fmt_rate(sign)),
    ]
    if "dkim" in results:
        dk = results["dkim"]
        for key, label in (("rsa", "rsa-sha256"), ("ed25519", "ed25519-sha256"),
                           ("both", "rsa-sha256 + ed25519-sha256")):
            value = dk.get(f"{key}_msgs_per_s", 0.0)
            rows += [
                (f"DKIM signing msgs/s, {label} ({results.get('cores', 0)} threads)",
                 fmt_rate(value)),
                ("  ratio to openssl rsa2048 sign/s", f"{(value / sign if sign else 0):.4f}"),
            ]
    elif "dkim_error" in results:
        rows.append(("DKIM signing (dkimbench)", "FAILED"))
    rows.append(("end-to-end rate / sign rate", f"{(rate / sign if sign else 0):.4f}"))
    if "idle" in results:
        n, before, with_idle = results["idle"]
        rows += [
            ("postino RSS, no idle sessions (MiB)", f"{before / 1024:.1f}"),
            (f"postino RSS with {n} idle sessions (MiB)", f"{with_idle / 1024:.1f}"),
            ("postino RSS per idle session (KiB)", f"{(with_idle - before) / n:.1f}"),
        ]
    title = (f"Postino bench: {args.count} messages of {args.size} octets, {args.rcpts} "
             f"recipient(s) over {args.domains} domain(s), {args.concurrency} "
             f"sessions x {args.per_session} messages, {tls} + AUTH PLAIN, DKIM "
             f"{args.algorithms}, sink delay {args.sink_delay_ms} ms, "
             f"{results.get('cores', '?')} cores shared by postino, redis and loadgen")
    width = max(len(r[0]) for r in rows)
    print()
    print(title)
    print("-" * (width + 14))
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    print("-" * (width + 14))
    if "note_restart" in results:
        print("note: " + results["note_restart"])
    print(f"bench: e2e_msgs_per_s={rate:.1f} sign_per_s={sign:.1f} "
          f"ratio={(rate / sign if sign else 0):.4f}")


def main():
    ap = argparse.ArgumentParser(description="Postino submission benchmark (make bench)")
    ap.add_argument("--count", type=int, default=20000, help="messages (default 20000)")
    ap.add_argument("--size", type=int, default=5120, help="octets per message (default 5120)")
    ap.add_argument("--concurrency", type=int, default=20, help="sessions (default 20)")
    ap.add_argument("--per-session", type=int, default=50,
                    help="messages per connection (default 50)")
    ap.add_argument("--tls", choices=("starttls", "implicit", "none"), default="starttls",
                    help="how loadgen connects (default starttls)")
    ap.add_argument("--idle-sessions", type=int, default=0,
                    help="also measure postino's RSS with N idle cleartext sessions open")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="bound on loadgen's run (default 120 + 0.05 s per message)")
    ap.add_argument("--dkim-seconds", type=float, default=3,
                    help="seconds per algorithm of the dkimbench run (default 3; 0 skips it)")
    ap.add_argument("--rcpts", type=int, default=1, help="recipients per message (default 1)")
    ap.add_argument("--domains", type=int, default=1,
                    help="recipient domains, rcpt-N.test (default 1)")
    ap.add_argument("--algorithms", choices=("rsa", "ed25519", "both"), default="both",
                    help="DKIM signatures per message (default both)")
    ap.add_argument("--sink-delay-ms", type=int, default=0,
                    help="the sink waits this long before every reply (default 0)")
    ap.add_argument("--mem-count", type=int, default=2000,
                    help="messages of the held memory phase (default 2000; 0 skips it)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if args.count < 1 or args.size < 256 or args.concurrency < 1 or args.per_session < 1 \
            or args.idle_sessions < 0 or not (args.dkim_seconds == 0 or
                                              0.1 <= args.dkim_seconds <= 3600):
        ap.error("--count, --concurrency, --per-session >= 1, --size >= 256, "
                 "--idle-sessions >= 0, --dkim-seconds 0 or 0.1 to 3600")

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt  # unwinds through the finally block that stops everything

    signal.signal(signal.SIGTERM, on_sigterm)
    tmp = tempfile.mkdtemp(prefix="postino-bench-")
    procs, results = [], {}
    failed = False
    try:
        run(args, tmp, procs, results)
        if results.get("loadgen_rc") != 0:
            failed = True
            print("bench: loadgen reports messages that were not accepted", file=sys.stderr)
        if "dkim_error" in results:
            failed = True
        if "delivery_error" in results:
            failed = True
            print(f"bench: {results['delivery_error']}", file=sys.stderr)
    except BenchError as e:
        failed = True
        print(f"bench: FAILED: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench: interrupted", file=sys.stderr)
    finally:
        for p in reversed(procs):
            rc = p.stop()
            if p.name == "postino" and rc not in (0, None):
                print(f"bench: postino exited with {rc}; log tail:\n{p.log_tail()}",
                      file=sys.stderr)
        if failed or args.keep:
            print(f"bench: logs and config kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if "loadgen" in results:
        print_table(args, results)
    else:
        print("bench: e2e_msgs_per_s=0.0 sign_per_s="
              f"{results.get('sign_per_s', 0.0):.1f} ratio=0.0000")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
