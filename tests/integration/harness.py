"""Integration test harness for Postino: real redis-server, real postino, real SMTP clients.

Everything here talks to real processes on loopback:
  RedisServer   a redis-server in a tempfile.mkdtemp() folder on a unix socket (appendonly yes,
                appendfsync always, --save '', --port 0), with start/stop/kill9/pause/resume/
                restart on the same socket and folder, and a tiny RESP client (cmd()).
  Postino       the daemon (POSTINO_BUILD/postino) with a generated config: free ports chosen at
                run time, data_dir in a temporary folder, redis = unix:<socket> or embedded.
                start() waits until the worker is connected to Redis and every port greets;
                stop() sends SIGTERM to the master's pid and checks that the master exits 0, that
                its workers and embedded redis-server are gone, and that no sanitizer report is in
                its log.
  ctl()         runs POSTINO_BUILD/postinoctl.
  Conn          a raw SMTP client over a socket (byte for byte, optional TLS, STARTTLS), with a
                transcript that failing assertions print.
  PostinoTestCase  a TestCase that prints the last 50 log lines of the postinos involved when a
                test fails.
  SharedPostinoTestCase  a PostinoTestCase with one redis-server and one postino for the whole
                class (config keys and users given as class attributes), cleaned up on failure.

Every wait has a deadline; every process is stopped by its pid (SIGTERM, bounded wait, SIGKILL).
Only 127.0.0.1 is used.
"""
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("POSTINO_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
POSTINO_BIN = os.path.join(BUILD_DIR, "postino")
POSTINOCTL_BIN = os.path.join(BUILD_DIR, "postinoctl")
REDIS_SERVER = shutil.which("redis-server") or "redis-server"
SWAKS = shutil.which("swaks")

HOST = "127.0.0.1"
HOSTNAME = "mx.postino.test"
QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:", "ThreadSanitizer")

# ---------------------------------------------------------------- small helpers


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value or timeout seconds pass.

    Returns the value; raises AssertionError naming `what` on timeout. Other exceptions of
    predicate() count as "not yet", except AssertionError, which is raised at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise  # a predicate that knows it can never become true fails at once
        except Exception as e:  # noqa: BLE001 - reported below if we time out
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}{extra}")
        time.sleep(interval)


def process_alive(pid):
    """True while pid exists and is not a zombie (an exited child waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) S ...": the state follows the last ')'
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state != b"Z"


def stop_process(proc, timeout=10.0, sig=signal.SIGTERM):
    """Stops a subprocess.Popen by its pid: sig, bounded wait, then SIGKILL. Returns the code."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not act on SIGTERM
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(timeout=10)


def client_tls_context():
    """A client context for Postino's self-signed certificate: no verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain_response(user, password):
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


def make_message(from_addr="alice@example.com", to="bob@dest.example", subject="test",
                 body=b"Hello.\r\n", message_id=True, date=True, extra_headers=()):
    """An RFC 5322 message with CRLF line ends, as bytes."""
    if isinstance(body, str):
        body = body.encode()
    h = []
    if from_addr is not None:
        h.append(f"From: <{from_addr}>")
    h.append(f"To: <{to}>")
    h.append(f"Subject: {subject}")
    if date:
        h.append("Date: Mon, 02 Nov 2026 10:00:00 +0000")
    if message_id:
        h.append(f"Message-ID: <{time.monotonic_ns()}.{os.getpid()}@client.example>")
    h.extend(extra_headers)
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def dot_stuff(message):
    """RFC 5321 4.5.2 transparency for a CRLF message: a leading '.' is doubled."""
    return re.sub(rb"(?m)(?<=\n)\.|\A\.", b"..", message)


FIELD_RE = rb"[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*"  # the rest of a field, folded lines too


def split_received(stored):
    """Splits a stored body into (Postino's Received: field, the rest).

    DKIM-Signature: fields Postino puts around its Received: field (signing comes after the
    trace header) are skipped, so the rest is what the client sent plus any Message-ID:/Date:
    Postino added. Returns (None, stored) when there is no leading Received: field."""
    m = re.match(rb"(?:DKIM-Signature:" + FIELD_RE + rb")*(Received:" + FIELD_RE + rb")"
                 rb"(?:DKIM-Signature:" + FIELD_RE + rb")*", stored)
    if m is None:
        return None, stored
    return m.group(1), stored[m.end():]


# ---------------------------------------------------------------- Redis


class RedisError(Exception):
    pass


class RespClient:
    """A tiny blocking RESP2 client over a unix socket (for assertions, not for speed)."""

    def __init__(self, path, timeout=5.0, password=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        if password is not None:
            try:
                self.cmd("AUTH", password)
            except BaseException:
                self.sock.close()
                raise

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError(f"bad RESP line {line!r}")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a)
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()


class RedisServer:
    """A redis-server on a unix socket in its own temporary folder.

    The folder (and so the AOF) survives stop()/kill9(); restart() starts a new process on the
    same socket and folder. cleanup() stops it and removes the folder."""

    def __init__(self, extra_args=(), appendfsync="always", password=None):
        self.dir = tempfile.mkdtemp(prefix="pst-redis-")
        self.password = password
        self.sock = os.path.join(self.dir, "redis.sock")
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.proc = None
        self.logfile = os.path.join(self.dir, "redis.log")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def address(self):
        return "unix:" + self.sock

    def start(self, timeout=20.0):
        args = [REDIS_SERVER, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--daemonize", "no", "--maxmemory-policy", "noeviction",
                "--logfile", self.logfile] + self.extra_args
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            try:
                return self.cmd("PING", timeout=1.0) == "PONG"
            except (OSError, RedisError):
                return False

        wait_for(ready, timeout, what=f"redis-server on {self.sock} to answer PING")
        return self

    def restart(self, timeout=20.0):
        """Starts redis-server again on the same socket and folder (after stop or kill9)."""
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("restart() while redis-server still runs")
        return self.start(timeout)

    def stop(self, timeout=10.0):
        if self.proc is not None:
            stop_process(self.proc, timeout)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cmd(self, *args, timeout=5.0):
        c = RespClient(self.sock, timeout, self.password)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def hgetall(self, key):
        flat = self.cmd("HGETALL", key) or []
        return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def msgs_count(self):
        return self.cmd("ZCARD", "pst:msgs")

    def clear_auth_failures(self):
        keys = self.cmd("KEYS", "pst:authfail:*") or []
        if keys:
            self.cmd("DEL", *keys)

    def log_tail(self, n=20):
        try:
            with open(self.logfile, "r", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def redis_client_ids(sock, password=None):
    """{id: cmd} of the clients connected to the Redis on sock."""
    c = RespClient(sock, 2.0, password)
    try:
        text = c.cmd("CLIENT", "LIST")
    finally:
        c.close()
    out = {}
    for line in text.decode().splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        out[fields.get("id")] = fields.get("cmd", "")
    return out


# ---------------------------------------------------------------- postino


def ctl(conf, *args, timeout=30, check=False, binary=False, cwd=None):
    """Runs postinoctl -c conf args...; returns CompletedProcess (text unless binary)."""
    p = subprocess.run([POSTINOCTL_BIN, "-c", conf] + [str(a) for a in args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=not binary,
                       timeout=timeout, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"postinoctl {' '.join(map(str, args))}: exit {p.returncode}, "
                             f"stdout={p.stdout!r} stderr={p.stderr!r}")
    return p


class Postino:
    """One postino daemon with a generated config (see module doc)."""

    instances = []  # every Postino made, in order; PostinoTestCase prints the failing ones' logs

    def __init__(self, redis=None, workers=1, relative_data_dir=False, **settings):
        """redis: a RedisServer, or None for the embedded Redis. settings: config keys.
        relative_data_dir: write "data_dir = data" and run postino and postinoctl in the
        folder that holds it (as deploy/dev.conf does with ./data)."""
        self.dir = tempfile.mkdtemp(prefix="pst-postino-")
        self.data_dir = os.path.join(self.dir, "data")
        self.relative_data_dir = relative_data_dir
        self.cwd = self.dir if relative_data_dir else None
        self.conf = os.path.join(self.dir, "postino.conf")
        self.log_path = os.path.join(self.dir, "postino.log")
        self.redis = redis
        self.workers = workers
        self.settings = dict(settings)
        self.proc = None
        self.saved_log = None
        self.stopped_code = None
        self.log_file = None
        self.log_offset = 0  # where the log of the current run starts
        self.choose_ports()
        Postino.instances.append(self)

    def choose_ports(self):
        self.submission_ports = [free_port(), free_port()]
        self.smtps_port = free_port()

    @property
    def port(self):
        """The first submission (STARTTLS) port."""
        return self.submission_ports[0]

    @property
    def redis_sock(self):
        if self.redis is not None:
            return self.redis.sock
        return os.path.join(self.data_dir, "redis.sock")

    def config_text(self):
        keys = {
            "hostname": HOSTNAME,
            "data_dir": "data" if self.relative_data_dir else self.data_dir,
            "listen_submission": ",".join(f"{HOST}:{p}" for p in self.submission_ports),
            "listen_smtps": f"{HOST}:{self.smtps_port}",
            "workers": self.workers,
            "sign_threads": 2,
            # no test may deliver anywhere but to its own sinks: delivery is on only where a
            # test turns it on, with routes or a test DNS server
            "delivery": "no",
            "bounce_rules": os.path.join(ROOT, "deploy", "bounce-rules.conf"),
        }
        if self.redis is not None:
            keys["redis"] = self.redis.address
        else:
            keys["redis_maxmemory"] = "64M"
        keys.update(self.settings)  # a test's settings replace the defaults above
        return "".join(f"{k} = {v}\n" for k, v in keys.items())

    def write_config(self):
        with open(self.conf, "w") as f:
            f.write(self.config_text())

    def start(self, timeout=30.0):
        for attempt in range(3):
            self.write_config()
            before = (set(redis_client_ids(self.redis.sock, self.redis.password))
                      if self.redis else set())
            self.saved_log = None
            self.log_offset = len(self.log_text())
            self.log_file = open(self.log_path, "ab")
            self.proc = subprocess.Popen([POSTINO_BIN, "-c", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=self.log_file,
                                         stderr=subprocess.STDOUT, cwd=self.cwd)
            try:
                self._wait_ready(before, timeout)
                return self
            except AssertionError:
                code = self.proc.poll()
                if code is not None and "cannot listen on" in self.run_log() and attempt < 2:
                    self.choose_ports()  # a port was taken meanwhile: try fresh ones
                    continue
                self.stop(check=False)
                raise

    def _wait_ready(self, before, timeout):
        deadline = time.monotonic() + timeout

        def left():
            return max(0.1, deadline - time.monotonic())

        def workers_started():
            if self.proc.poll() is not None:
                raise AssertionError(f"postino exited with {self.proc.returncode} at start:\n"
                                     f"{self.log_tail()}")
            return self.run_log().count("event=worker_started") >= self.workers

        wait_for(workers_started, left(), what="postino workers to start")

        def redis_connected():
            if self.proc.poll() is not None:
                raise AssertionError(f"postino exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            ids = redis_client_ids(self.redis_sock,
                                   self.redis.password if self.redis else None)
            ours = [i for i, c in ids.items() if i not in before and c != "client|list"
                    and c in ("script|load", "evalsha", "eval", "ping")]
            return len(ours) >= self.workers

        wait_for(redis_connected, left(), what="postino workers to connect to Redis")
        for port in self.submission_ports:
            wait_for(lambda: self._probe(port, False), left(),
                     what=f"postino to greet on {HOST}:{port}")
        wait_for(lambda: self._probe(self.smtps_port, True), left(),
                 what=f"postino to greet over TLS on {HOST}:{self.smtps_port}")

    def _probe(self, port, tls):
        """One full session: greeting, QUIT, 221, and the server's close. False (try again)
        on anything else."""
        try:
            c = Conn(port, tls=tls, timeout=5.0, greet=False)
        except OSError:
            return False
        try:
            r = c.read_reply()
            if r.code != 220:
                return False
            c.send(b"QUIT\r\n")
            if c.read_reply().code != 221:
                return False
            return c.wait_closed(5.0)
        except (AssertionError, OSError):
            return False
        finally:
            c.close()

    def worker_pids(self):
        return [int(m.group(1)) for m in
                re.finditer(r"proc=worker\d+ pid=(\d+) event=worker_started", self.log_text())]

    def embedded_redis_pids(self):
        return [int(m.group(1)) for m in
                re.finditer(r"event=redis_started pid=(\d+)", self.log_text())]

    def stop(self, timeout=30.0, check=True):
        """SIGTERM to the master; with check, asserts exit code 0, workers and embedded Redis
        gone, and no sanitizer report in the log. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            code = stop_process(self.proc, timeout)
        else:
            code = self.proc.returncode
        self.stopped_code = code
        if self.log_file:
            self.log_file.close()
            self.log_file = None
        children = self.worker_pids() + self.embedded_redis_pids()
        try:
            wait_for(lambda: not any(process_alive(p) for p in children), 10.0,
                     what=f"postino's workers and redis {children} to exit")
            leftover = []
        except AssertionError:
            leftover = [p for p in children if process_alive(p)]
            for p in leftover:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.saved_log = self.log_text()
        if check:
            problems = []
            if code != 0:
                problems.append(f"postino master exit code: got {code}, want 0")
            if leftover:
                problems.append(f"processes still alive after postino stopped: {leftover}")
            reports = [ln for ln in self.saved_log.splitlines()
                       if any(m in ln for m in SANITIZER_MARKERS)]
            if reports:
                problems.append("sanitizer report in the log:\n" + "\n".join(reports[:20]))
            if problems:
                raise AssertionError("; ".join(problems) + "\n--- last log lines:\n" +
                                     self.log_tail())
        return code

    def cleanup(self):
        try:
            self.stop(check=False)
        finally:
            if self.saved_log is None:
                self.saved_log = self.log_text()
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        if self.saved_log is not None and not os.path.exists(self.log_path):
            return self.saved_log
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return self.saved_log or ""

    def run_log(self):
        """The log of the current (or last) run only."""
        return self.log_text()[self.log_offset:]

    def restart(self, timeout=30.0):
        """stop() (checked), then start() again with the same config, ports and data_dir."""
        self.stop()
        return self.start(timeout)

    def log_tail(self, n=50):
        return "\n".join(self.log_text().splitlines()[-n:])

    # ---- administration through postinoctl

    def ctl(self, *args, **kw):
        kw.setdefault("cwd", self.cwd)
        return ctl(self.conf, *args, **kw)

    def add_user(self, name, domains, password=None, allow_net=(), only_net=()):
        """Adds a user; returns its password (the generated one when password is None)."""
        if isinstance(domains, str):
            domains = [domains]
        args = ["user", "add", name]
        for d in domains:
            args += ["--domain", d]
        if password is not None:
            args += ["--password", password]
        for n in allow_net:
            args += ["--allow-net", n]
        for n in only_net:
            args += ["--only-net", n]
        p = self.ctl(*args, check=True)
        if password is None:
            m = re.search(r"password: (\S+)", p.stdout)
            if m is None:
                raise AssertionError(f"user add printed no password: {p.stdout!r}")
            return m.group(1)
        return password


# ---------------------------------------------------------------- SMTP


class Reply:
    """One SMTP reply (possibly multi-line)."""

    def __init__(self, raw):
        self.raw = raw
        text = raw.decode("utf-8", errors="replace")
        self.lines = text.split("\r\n")[:-1]
        self.code = int(self.lines[-1][:3])
        self.texts = [ln[4:] for ln in self.lines]
        self.last = self.lines[-1]

    @property
    def enhanced(self):
        m = re.match(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})(?: |$)", self.lines[-1])
        return m.group(1) if m else None

    def __str__(self):
        return " | ".join(self.lines)

    __repr__ = __str__


class ConnectionClosed(AssertionError):
    pass


class Conn:
    """A raw SMTP client: bytes out exactly as given, replies parsed, everything recorded."""

    def __init__(self, port, tls=False, timeout=10.0, greet=True, host=HOST):
        self.timeout = timeout
        self.transcript = []
        self.buf = b""
        self.closed_by_peer = False
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock)
        self.greeting = self.read_reply() if greet else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def history(self):
        out = []
        for who, data in self.transcript[-40:]:
            out.append(f"{who} {data[:300]!r}{'...' if len(data) > 300 else ''}")
        return "\n".join(out)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C:", data))
        self.sock.sendall(data)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
        return chunk

    def read_reply(self, timeout=None):
        """Reads one complete reply; raises AssertionError (with the transcript) on timeout or
        when the server closes first."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            m = re.search(rb"(?:^|\r\n)\d{3} [^\r\n]*\r\n|^\d{3}\r\n", self.buf)
            if m is not None:
                raw, self.buf = self.buf[:m.end()], self.buf[m.end():]
                self.transcript.append(("S:", raw))
                return Reply(raw)
            try:
                chunk = self._recv(deadline)
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"no complete reply within the deadline; buffered "
                                     f"{self.buf!r}\n{self.history()}") from None
            if not chunk:
                raise ConnectionClosed(f"server closed the connection, buffered {self.buf!r}\n"
                                       f"{self.history()}")
            self.buf += chunk

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply(timeout)

    def replies_until_closed(self, timeout=10.0):
        """Reads replies until the server closes; returns (replies, closed)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self.read_reply(max(0.01, deadline - time.monotonic())))
            except ConnectionClosed:
                return out, True
            except AssertionError:
                return out, False

    def wait_closed(self, timeout=10.0):
        """True when the server closes (EOF) within timeout, with nothing else sent."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self._recv(deadline)
            except (socket.timeout, TimeoutError):
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self.buf += chunk

    def starttls(self):
        """Sends STARTTLS, expects 220, performs the handshake. Returns the 220 reply."""
        r = self.cmd("STARTTLS")
        if r.code != 220:
            raise AssertionError(f"STARTTLS: got {r}, want 220\n{self.history()}")
        self.tls_handshake()
        return r

    def tls_handshake(self):
        if self.buf:
            raise AssertionError(f"bytes buffered before the TLS handshake: {self.buf!r}")
        self.sock.settimeout(self.timeout)
        self.sock = client_tls_context().wrap_socket(self.sock)
        self.transcript.append(("--", b"TLS handshake done"))

    def ehlo(self, name="client.example"):
        return self.cmd(f"EHLO {name}")

    def auth_plain(self, user, password):
        return self.cmd(f"AUTH PLAIN {plain_response(user, password)}")

    def auth_login(self, user, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.cmd(b64(user))
        if r.code != 334:
            return r
        return self.cmd(b64(password))

    def data(self, message, timeout=None):
        """DATA, then message (already dot-stuffed by the caller if needed) and CRLF.CRLF.

        Returns (354 reply, final reply) or (failed reply, None)."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r, None
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        self.send(message + b".\r\n")
        return r, self.read_reply(timeout)


def queue_id(reply):
    """The queue id from a '250 2.0.0 Ok: queued as <id>' reply, or None."""
    m = QUEUED_RE.match(reply.last if isinstance(reply, Reply) else reply)
    return m.group(1) if m else None


# ---------------------------------------------------------------- TestCase base


class PostinoTestCase(unittest.TestCase):
    """Prints the last 50 lines of each postino's log (those of the class and those started by
    the test) when a test fails or errs."""

    maxDiff = 4000

    def run(self, result=None):
        first = len(Postino.instances)
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            shown = set()
            candidates = list(Postino.instances[first:])
            for attr in ("postino",):
                p = getattr(self, attr, None)
                if isinstance(p, Postino):
                    candidates.insert(0, p)
            for p in candidates:
                if id(p) in shown or not p.log_text():
                    continue  # shown already, or never ran
                shown.add(id(p))
                sys.stderr.write(f"\n--- {self.id()}: last 50 lines of postino log "
                                 f"{p.log_path} ---\n{p.log_tail(50)}\n--- end of log ---\n")
        return out

    # ---- assertions that print what they got and what they wanted

    def assertReply(self, reply, code, enhanced=None, conn=None, text=None):
        want = f"{code}" + (f" {enhanced}" if enhanced else "") + (f" ...{text}..." if text else "")
        ok = reply is not None and reply.code == code and \
            (enhanced is None or reply.enhanced == enhanced) and \
            (text is None or text in reply.raw.decode(errors="replace"))
        if not ok:
            hist = ("\ntranscript:\n" + conn.history()) if conn is not None else ""
            self.fail(f"got reply {reply}, want {want}{hist}")

    def assertQueued(self, reply, conn=None):
        """Asserts '250 2.0.0 Ok: queued as <16 hex>' and returns the id."""
        qid = queue_id(reply) if reply is not None else None
        if qid is None:
            hist = ("\ntranscript:\n" + conn.history()) if conn is not None else ""
            self.fail(f"got reply {reply}, want '250 2.0.0 Ok: queued as <16 hex digits>'{hist}")
        return qid

    # ---- common set-up pieces

    @classmethod
    def start_redis(cls):
        r = RedisServer()
        try:
            r.start()
        except BaseException:
            r.cleanup()
            raise
        return r

    @classmethod
    def start_postino(cls, redis=None, **settings):
        p = Postino(redis=redis, **settings)
        try:
            p.start()
        except BaseException as e:
            sys.stderr.write(f"\n--- postino failed to start ({e}); last log lines:\n"
                             f"{p.log_tail(50)}\n")
            p.cleanup()
            raise
        return p

    def dedicated_postino(self, redis=None, **settings):
        """A postino for this test only, stopped (and checked) when the test ends."""
        p = self.start_postino(redis=redis, **settings)
        self.addCleanup(p.cleanup)
        self.addCleanup(p.stop)  # runs first: checks the exit, then cleanup removes the folder
        return p

    def dedicated_redis(self):
        r = self.start_redis()
        self.addCleanup(r.cleanup)
        return r

    def conn(self, port, tls=False, timeout=10.0, greet=True):
        c = Conn(port, tls=tls, timeout=timeout, greet=greet)
        self.addCleanup(c.close)
        if greet:
            self.assertReply(c.greeting, 220, conn=c)
        return c

    def login(self, port, user, password, tls="starttls", mech="PLAIN"):
        """A session authenticated as user. tls: 'starttls', 'implicit' or None (cleartext)."""
        c = self.conn(port, tls=(tls == "implicit"))
        r = c.ehlo()
        self.assertReply(r, 250, conn=c)
        if tls == "starttls":
            c.starttls()
            self.assertReply(c.ehlo(), 250, conn=c)
        r = c.auth_plain(user, password) if mech == "PLAIN" else c.auth_login(user, password)
        self.assertReply(r, 235, "2.7.0", conn=c)
        return c

    def submit(self, c, sender, rcpts, message, mail_params=""):
        """MAIL, RCPTs, DATA on an authenticated session; asserts each step; returns the id."""
        r = c.cmd(f"MAIL FROM:<{sender}>{mail_params}")
        self.assertReply(r, 250, "2.1.0", conn=c)
        for rc in rcpts:
            self.assertReply(c.cmd(f"RCPT TO:<{rc}>"), 250, "2.1.5", conn=c)
        r354, final = c.data(dot_stuff(message))
        self.assertReply(r354, 354, conn=c)
        return self.assertQueued(final, conn=c)


class SharedPostinoTestCase(PostinoTestCase):
    """One redis-server (cls.redis) and one postino (cls.postino) shared by the whole class.

    setUpClass starts the redis-server, then a postino on it with the config keys of
    postino_settings, adds the users of postino_users, then calls prepare_class() (a hook for
    more class set-up that needs the running postino). When any step fails, what was started is
    cleaned up before the error propagates. tearDownClass stops the postino with the checks of
    Postino.stop() (exit code 0, no process left, no sanitizer report), then removes both."""

    postino_settings = {}  # config keys, as for Postino(**settings)
    # (name, domains, password) or (name, domains, password, {more add_user() arguments})
    postino_users = ()

    @classmethod
    def prepare_class(cls):
        """Runs once the users are added; the default does nothing."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = cls.start_redis()
        try:
            cls.postino = cls.start_postino(redis=cls.redis, **cls.postino_settings)
            try:
                for name, domains, password, *more in cls.postino_users:
                    cls.postino.add_user(name, domains, password, **(more[0] if more else {}))
                cls.prepare_class()
            except BaseException:
                cls.postino.cleanup()
                raise
        except BaseException:
            cls.redis.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.postino.stop()
        finally:
            try:
                cls.postino.cleanup()
            finally:
                cls.redis.cleanup()
        super().tearDownClass()


def run_swaks(args, timeout=60):
    """Runs swaks with args; returns CompletedProcess (text, stdout and stderr)."""
    return subprocess.run([SWAKS] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout)


# ---------------------------------------------------------------- DNS (dnsmasq)
# Added for tests/integration/test_domain_check.py (the DKIM/SPF/DMARC domain check and the
# DKIM DNS watcher); kept apart from the rest of the harness.

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
DNS_TYPE_TXT = 16


def free_udp_tcp_port():
    """A port on 127.0.0.1 free for both UDP and TCP a moment ago (a DNS server needs both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((HOST, 0))
            port = u.getsockname()[1]
            t.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise AssertionError("no port free for both UDP and TCP on 127.0.0.1")


def dns_query(port, name, qtype=DNS_TYPE_TXT, timeout=2.0):
    """One plain UDP query to 127.0.0.1:port; returns (rcode, [TXT strings joined, ...]) or
    raises socket.timeout. For readiness probes and assertions, not a resolver."""
    import struct
    qid = int.from_bytes(os.urandom(2), "big")
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(query, (HOST, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65535)
            if len(data) >= 12 and data[:2] == query[:2]:
                break
    finally:
        s.close()
    rcode, ancount = data[3] & 15, struct.unpack(">H", data[6:8])[0]
    at = 12 + len(qname) + 4
    texts = []
    for _ in range(ancount):
        while data[at] not in (0,) and data[at] < 0xC0:
            at += 1 + data[at]
        at += 2 if data[at] >= 0xC0 else 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        rdata, at = data[at:at + rdlen], at + rdlen
        if rtype == DNS_TYPE_TXT:
            parts, k = [], 0
            while k < len(rdata):
                parts.append(rdata[k + 1:k + 1 + rdata[k]])
                k += 1 + rdata[k]
            texts.append(b"".join(parts).decode("latin-1"))
    return rcode, texts


class LoggedProcess:
    """A helper process started by a test, with its output in self.log_path: stop() ends it by
    its pid (SIGTERM, bounded wait, SIGKILL) and closes the log; log_tail() reads the log."""

    proc = None
    log_file = None
    log_path = None

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, 10.0)
            self.proc = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Dnsmasq(LoggedProcess):
    """A dnsmasq on 127.0.0.1:<port> (UDP and TCP) serving the records it is given.

    txt: {name: value or [string, ...]}, or a list of (name, value or [strings]) pairs for
    several records at one name; a value longer than 255 octets is split by dnsmasq.
    local: zones answered here only (NXDOMAIN / NODATA for what is not listed, instead of
    REFUSED for want of an upstream). servers: {zone: "ADDR#PORT"} forwarded zones.
    extra: more dnsmasq config lines (mx-host=..., address=...).
    The records go into a config file (so values may hold ',', ';' and '"'); restart() with
    new records keeps the port. Stopped by its pid."""

    def __init__(self, txt=(), local=(), servers=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="pst-dnsmasq-")
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")
        self.port = free_udp_tcp_port()
        self.proc = None
        self.log_file = None
        self.set_records(txt, local, servers, extra)

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    @staticmethod
    def _quote(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def set_records(self, txt=(), local=(), servers=None, extra=()):
        pairs = list(txt.items()) if isinstance(txt, dict) else list(txt)
        lines = []
        for name, value in pairs:
            strings = [value] if isinstance(value, str) else list(value)
            lines.append(f"txt-record={name}," + ",".join(self._quote(s) for s in strings))
        lines += [f"local=/{zone}/" for zone in local]
        lines += [f"server=/{zone}/{addr}" for zone, addr in (servers or {}).items()]
        lines += list(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [DNSMASQ, "--no-daemon", f"--port={self.port}", f"--listen-address={HOST}",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=",
             f"--conf-file={self.conf}", "--log-facility=-"],
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited with {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            try:
                dns_query(self.port, "ready.probe.invalid", timeout=0.3)
                return True
            except OSError:
                return False

        wait_for(ready, timeout, what=f"dnsmasq on {self.address} to answer")
        return self

    def restart(self, txt=(), local=(), servers=None, extra=(), timeout=10.0):
        """Stops, writes the new records, starts again on the same port."""
        self.stop()
        self.set_records(txt, local, servers, extra)
        return self.start(timeout)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- SMTP sink (remote MX)

SMTPSINK_BIN = os.path.join(BUILD_DIR, "tools", "smtpsink")


class Sink(LoggedProcess):
    """tests/tools/smtpsink on host:port (port 0: a free one), saving every message it accepts
    (--save) and keeping its tallies in a file (--stats). args: more smtpsink options
    (["--rcpt-by-name"], ["--no-starttls"], ...). Stopped by its pid."""

    def __init__(self, host=HOST, port=0, args=(), tls=False):
        self.dir = tempfile.mkdtemp(prefix="pst-sink-")
        self.save_dir = os.path.join(self.dir, "mail")
        os.mkdir(self.save_dir)
        self.stats_path = os.path.join(self.dir, "stats")
        self.log_path = os.path.join(self.dir, "sink.log")
        self.host = host
        self.port = port
        self.args = list(args)
        self.tls = tls
        self.proc = None
        self.log_file = None

    def start(self, timeout=10.0):
        args = [SMTPSINK_BIN, "--listen", f"{self.host}:{self.port}", "--save", self.save_dir,
                "--stats", self.stats_path] + self.args
        if self.tls:
            cert, key = self._tls_pair()
            args += ["--tls-cert", cert, "--tls-key", key]
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"smtpsink exited with {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            m = re.search(r"smtpsink: listening=\S+:(\d+)", self.log_tail(50))
            if m:
                self.port = int(m.group(1))
            return m is not None

        wait_for(listening, timeout, what="smtpsink to listen")
        return self

    def _tls_pair(self):
        cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=sink.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        return cert, key

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stats(self):
        """The tallies as a dict of ints (messages, recipients, sessions, rejected, peak)."""
        try:
            with open(self.stats_path) as f:
                line = f.read()
        except OSError:
            return {"messages": 0, "recipients": 0, "sessions": 0, "rejected": 0, "peak": 0}
        return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)}

    def messages(self):
        """[(envelope text, message bytes, arrival time)] in arrival order (file mtimes)."""
        out = []
        names = sorted(n for n in os.listdir(self.save_dir) if n.endswith(".eml"))
        for n in names:
            base = os.path.join(self.save_dir, n[:-4])
            with open(base + ".eml", "rb") as f:
                body = f.read()
            with open(base + ".env") as f:
                env = f.read()
            out.append((env, body, os.stat(base + ".eml").st_mtime))
        return out

    def count(self):
        return len([n for n in os.listdir(self.save_dir) if n.endswith(".eml")])
