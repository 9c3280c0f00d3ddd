"""The daemon as a program: configuration errors (exit 2, "FILE:LINE: reason"), -t, the embedded
Redis (started durable in data_dir, restarted if it dies, stopped with postino), the durability
check of a configured Redis and its override, the self-signed certificate, the data_dir lock,
worker supervision and graceful shutdown."""
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time
import unittest

from harness import (HOST, POSTINO_BIN, Conn, Postino, PostinoTestCase, RedisServer,
                     RespClient, b64, client_tls_context, make_message, plain_response,
                     process_alive, stop_process, wait_for)

USER, PW = "dmn", "dmn-secret-123"


def run_postino(args, timeout=30):
    return subprocess.run([POSTINO_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


class ConfigErrorsTest(PostinoTestCase):
    """postino -c FILE with a broken FILE: exit code 2, "FILE:LINE: reason", nothing started."""

    def write_conf(self, text):
        p = Postino(redis=None)
        self.addCleanup(p.cleanup)
        with open(p.conf, "w") as f:
            f.write(text)
        return p

    def base_lines(self, p):
        return [f"# test configuration", f"data_dir = {p.data_dir}",
                f"listen_submission = {HOST}:{p.port}", f"listen_smtps = {HOST}:{p.smtps_port}",
                "workers = 1", "sign_threads = 2"]

    def expect_config_error(self, p, line_no, needle, check_only=False):
        args = (["-t"] if check_only else []) + ["-c", p.conf]
        r = run_postino(args)
        self.assertEqual(r.returncode, 2, f"postino {' '.join(args)}: exit {r.returncode}, want 2; "
                                          f"stderr={r.stderr!r}")
        want = (f"{p.conf}:{line_no}: " if line_no else f"{p.conf}: ") + needle
        self.assertIn(want, r.stderr, f"stderr: got {r.stderr!r}, want {want!r}")
        self.assertFalse(os.path.exists(p.data_dir), "a config error must stop before data_dir "
                                                     "is created")

    def test_unknown_key(self):
        p = self.write_conf("")
        lines = self.base_lines(p) + ["bogus_key = 1"]
        with open(p.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.expect_config_error(p, len(lines), "unknown key 'bogus_key'")
        self.expect_config_error(p, len(lines), "unknown key", check_only=True)

    def test_bad_values(self):
        # (the line, what stderr must say after "FILE:LINE: ")
        cases = [
            ("max_recipients = 0", "max_recipients: out of range"),
            ("max_recipients = 100001", "max_recipients: out of range"),
            ("max_recipients = 99999999999999999999", "max_recipients: "),
            ("listen_smtps = nonsense", "listen_smtps: "),
            ("listen_submission = 127.0.0.1:0", "listen_submission: "),
            ("listen_submission = 127.0.0.1:70000", "listen_submission: "),
            ("listen_submission = localhost:2525", "listen_submission: "),
            ("listen_submission = ::1:2525",
             "listen_submission: IPv6 address must be written [ADDR]:PORT"),
            ("idle_timeout = 12abc", "idle_timeout: "),
            ("idle_timeout = -1", "idle_timeout: "),
            ("max_message_size = 1023", "max_message_size: out of range"),
            ("max_message_size = 1T", "max_message_size: "),
            ("auth_cleartext_loopback = maybe", "auth_cleartext_loopback: "),
            ("redis = unix:relative.sock", "redis: "),
            ("redis = no-port-here", "redis: "),
            ("redis_timeout = 5", "redis_timeout: out of range"),
            ("log_level = loud", "log_level: "),
            ("workers = 257", "workers: out of range"),
            ("data_dir =", "data_dir: "),
            ("workers = 2", "workers is set twice"),  # the base lines set workers already
            ("this line has no equals sign", "expected key = value"),
        ]
        for text, reason in cases:
            with self.subTest(line=text):
                p = self.write_conf("")
                key = text.split("=", 1)[0].strip()
                base = [ln for ln in self.base_lines(p)
                        if "set twice" in reason or not ln.startswith(key + " =")]
                lines = base + ["", "# a comment", text, "max_errors = 5"]
                with open(p.conf, "w") as f:
                    f.write("\n".join(lines) + "\n")
                self.expect_config_error(p, len(lines) - 1, reason)

    def test_tls_cert_without_key(self):
        p = self.write_conf("")
        with open(p.conf, "w") as f:
            f.write("\n".join(self.base_lines(p) + ["tls_cert = /nonexistent.pem"]) + "\n")
        self.expect_config_error(p, 0, "tls_cert and tls_key must be set together")

    def test_check_only(self):
        p = self.write_conf("")
        with open(p.conf, "w") as f:
            f.write("\n".join(self.base_lines(p) + ["max_recipients = 5  # trailing comment",
                                                    "hostname = x.example"]) + "\n")
        r = run_postino(["-t", "-c", p.conf])
        self.assertEqual(r.returncode, 0, f"postino -t: exit {r.returncode}, stderr {r.stderr!r}")
        self.assertIn("configuration ok", r.stdout)
        self.assertFalse(os.path.exists(p.data_dir), "-t must not create data_dir")
        # the shipped example configurations are valid too
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for name in ("deploy/postino.conf", "deploy/dev.conf"):
            path = os.path.join(root, name)
            if os.path.exists(path):
                with self.subTest(config=name):
                    r = run_postino(["-t", "-c", path])
                    self.assertEqual(r.returncode, 0, f"{name}: {r.stderr!r}")

    def test_postinoctl_config_errors_and_no_redis(self):
        p = self.write_conf("")
        lines = self.base_lines(p) + ["max_errors = lots"]
        with open(p.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = p.ctl("user", "list")
        self.assertEqual(r.returncode, 2, f"postinoctl with a bad config: {r}")
        self.assertIn(f"{p.conf}:{len(lines)}: ", r.stderr)
        with open(p.conf, "w") as f:
            f.write("\n".join(self.base_lines(p)) + "\n")
        r = p.ctl("user", "list")  # embedded Redis, but no postino runs
        self.assertEqual(r.returncode, 1, f"postinoctl without a Redis: {r}")
        self.assertIn("cannot connect to Redis", r.stderr)
        self.assertIn("is postino running?", r.stderr)

    def test_usage_errors(self):
        for args in ([], ["-c"], ["-x"], ["-c", "/nonexistent/postino.conf"]):
            with self.subTest(args=args):
                r = run_postino(args)
                self.assertEqual(r.returncode, 2, f"postino {args}: got {r.returncode} "
                                                  f"{r.stderr!r}, want 2")


class DaemonTest(PostinoTestCase):
    def expect_refusal(self, p, needle, timeout=30):
        """Runs p (already configured) and expects it to exit non-zero by itself."""
        p.write_config()
        log = open(p.log_path, "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen([POSTINO_BIN, "-c", p.conf], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_process(proc)
        text = p.log_text()
        self.assertIsNotNone(code, f"postino did not exit within {timeout} s; want a refusal "
                                   f"naming {needle!r}; log:\n{text[-3000:]}")
        self.assertNotEqual(code, 0, f"postino exit: got 0, want non-zero; log:\n{text[-3000:]}")
        self.assertIn(needle, text, f"want {needle!r} in the output, got:\n{text[-3000:]}")
        return code, text

    # ---- embedded Redis

    def test_embedded_redis(self):
        p = self.dedicated_postino(redis=None, auth_cleartext_loopback="yes")
        sock = os.path.join(p.data_dir, "redis.sock")
        self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode), f"{sock} is not a socket")
        pids = p.embedded_redis_pids()
        self.assertEqual(len(pids), 1, f"want one event=redis_started pid=N, got {pids}")
        redis_pid = pids[0]
        self.assertTrue(process_alive(redis_pid))
        c = RespClient(sock)
        self.addCleanup(c.close)
        for key, want in (("appendonly", b"yes"), ("appendfsync", b"always"),
                          ("maxmemory-policy", b"noeviction")):
            got = c.cmd("CONFIG", "GET", key)
            self.assertEqual(got, [key.encode(), want], f"CONFIG GET {key}")
        self.assertEqual(c.cmd("CONFIG", "GET", "dir")[1].decode(),
                         os.path.join(p.data_dir, "redis"))
        # postinoctl finds the embedded Redis by itself
        p.add_user(USER, ["dmn.example"], PW)
        self.assertIn(b"dmn", c.cmd("SMEMBERS", "pst:users"))
        s = self.login(p.port, USER, PW, tls=None)
        msg = make_message(from_addr="dmn@dmn.example")
        qid = self.submit(s, "dmn@dmn.example", ["x@dest.example"], msg)
        self.assertTrue(c.cmd("GET", f"pst:body:{qid}").endswith(msg))
        self.assertReply(s.cmd("QUIT"), 221, conn=s)
        s.close()
        c.close()
        p.stop()  # asserts exit 0, workers and redis gone
        self.assertFalse(process_alive(redis_pid), f"embedded redis-server {redis_pid} still runs")
        self.assertIn("event=redis_stopped", p.log_text())

    def test_embedded_redis_with_a_relative_data_dir(self):
        """deploy/dev.conf says "data_dir = ./data": the embedded Redis must start there too
        (redis-server changes into its --dir before it opens --logfile and --unixsocket)."""
        p = Postino(redis=None, relative_data_dir=True, auth_cleartext_loopback="yes")
        self.addCleanup(p.cleanup)
        try:
            p.start(timeout=20)
        except AssertionError as e:
            redis_log = os.path.join(p.data_dir, "redis.log")
            self.fail(f"postino with data_dir = data (relative) did not start: {e}\n"
                      f"{redis_log} exists: {os.path.exists(redis_log)}")
        self.addCleanup(p.stop)
        self.assertTrue(stat.S_ISSOCK(os.stat(os.path.join(p.data_dir, "redis.sock")).st_mode))
        p.add_user(USER, ["dmn.example"], PW)
        s = self.login(p.port, USER, PW, tls=None)
        self.submit(s, "dmn@dmn.example", ["x@dest.example"],
                    make_message(from_addr="dmn@dmn.example"))

    def test_embedded_redis_restarted_when_it_dies(self):
        p = self.dedicated_postino(redis=None, auth_cleartext_loopback="yes")
        p.add_user(USER, ["dmn.example"], PW)
        s = self.login(p.port, USER, PW, tls=None)
        qid1 = self.submit(s, "dmn@dmn.example", ["x@dest.example"],
                           make_message(from_addr="dmn@dmn.example"))
        old = p.embedded_redis_pids()[0]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: len(p.embedded_redis_pids()) == 2, 20, 0.1,
                 "the master to start a new embedded redis-server")
        self.assertIn("event=redis_died", p.log_text())

        def queued():
            r = s.cmd("MAIL FROM:<dmn@dmn.example>")
            if r.code != 250:
                return False
            s.cmd("RCPT TO:<x@dest.example>")
            _, final = s.data(make_message(from_addr="dmn@dmn.example"))
            if final is None or final.code != 250:
                s.cmd("RSET")
                return False
            return True
        wait_for(queued, 20, 0.2, "a submission to get 250 on the restarted embedded Redis")
        c = RespClient(os.path.join(p.data_dir, "redis.sock"))
        self.addCleanup(c.close)
        self.assertIsNotNone(c.cmd("GET", f"pst:body:{qid1}"),
                             "the message queued before kill -9 survives in the AOF")

    def test_embedded_redis_program_missing(self):
        p = Postino(redis=None, redis_server="/nonexistent/redis-server")
        self.addCleanup(p.cleanup)
        code, text = self.expect_refusal(p, "/nonexistent/redis-server")
        self.assertEqual(code, 1)

    # ---- a configured Redis that is not durable

    def test_configured_redis_not_durable_is_refused(self):
        cases = [("appendfsync is everysec", RedisServer(appendfsync="everysec")),
                 ("appendonly is no", RedisServer(extra_args=["--appendonly", "no"])),
                 ("maxmemory-policy is allkeys-lru",
                  RedisServer(extra_args=["--maxmemory-policy", "allkeys-lru"])),
                 # a Redis that hides CONFIG cannot prove it is durable
                 ("CONFIG GET appendonly failed",
                  RedisServer(extra_args=["--rename-command", "CONFIG", ""]))]
        for needle, r in cases:
            with self.subTest(unsafe=needle):
                self.addCleanup(r.cleanup)
                r.start()
                p = Postino(redis=r)
                self.addCleanup(p.cleanup)
                self.expect_refusal(p, needle)
                self.assertIn("redis_unsafe_ok", p.log_text(), "the refusal names the override")

    def test_redis_unsafe_ok_lets_it_start(self):
        r = RedisServer(appendfsync="everysec")
        self.addCleanup(r.cleanup)
        r.start()
        p = self.dedicated_postino(redis=r, redis_unsafe_ok="yes", auth_cleartext_loopback="yes")
        self.assertRegex(p.log_text(), r"event=redis_unsafe .*appendfsync")
        p.add_user(USER, ["dmn.example"], PW)
        s = self.login(p.port, USER, PW, tls=None)
        self.submit(s, "dmn@dmn.example", ["x@dest.example"],
                    make_message(from_addr="dmn@dmn.example"))

    def test_redis_password(self):
        r = RedisServer(password="redis-pass-123")
        self.addCleanup(r.cleanup)
        r.start()
        p = self.dedicated_postino(redis=r, redis_password="redis-pass-123",
                                   auth_cleartext_loopback="yes")
        p.add_user(USER, ["dmn.example"], PW)  # postinoctl uses redis_password too
        s = self.login(p.port, USER, PW, tls=None)
        qid = self.submit(s, "dmn@dmn.example", ["x@dest.example"],
                          make_message(from_addr="dmn@dmn.example"))
        self.assertIsNotNone(r.cmd("GET", f"pst:body:{qid}"))

    def test_wrong_redis_password_is_refused_at_once(self):
        """A wrong redis_password is a configuration error, not a Redis that is still
        starting: postino must stop with a message naming it, not wait for minutes."""
        r = RedisServer(password="redis-pass-123")
        self.addCleanup(r.cleanup)
        r.start()
        p = Postino(redis=r, redis_password="not-the-password")
        self.addCleanup(p.cleanup)
        code, text = self.expect_refusal(p, "WRONGPASS", timeout=10)
        self.assertEqual(code, 1)

    def test_redis_unreachable_at_start(self):
        r = RedisServer()  # never started: nothing listens on its socket
        self.addCleanup(r.cleanup)
        p = Postino(redis=r)
        self.addCleanup(p.cleanup)
        # postino retries a while; it must not run without a Redis, and must not hang forever
        p.write_config()
        log = open(p.log_path, "ab")
        proc = subprocess.Popen([POSTINO_BIN, "-c", p.conf], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        p.proc, p.log_file = proc, log  # p.cleanup() stops it by its pid
        time_limit = time.monotonic() + 3
        while time.monotonic() < time_limit and proc.poll() is None:
            s = socket.socket()
            try:
                s.settimeout(0.2)
                refused = s.connect_ex((HOST, p.port)) != 0
            finally:
                s.close()
            self.assertTrue(refused, "postino must not listen before its Redis answers")
            time.sleep(0.1)  # pacing the check, not an assertion
        self.assertIsNone(proc.poll(), f"postino exited early:\n{p.log_tail()}")
        r.start()  # once Redis comes up, postino goes on starting
        wait_for(lambda: "event=worker_started" in p.log_text(), 30, 0.1,
                 "postino to start once Redis is up")
        c = Conn(p.port)
        self.addCleanup(c.close)
        self.assertReply(c.greeting, 220, conn=c)
        c.close()
        self.assertEqual(p.stop(), 0)

    # ---- TLS certificate

    def test_selfsigned_certificate_made_in_data_dir_and_served(self):
        p = self.dedicated_postino(redis=None)
        cert = os.path.join(p.data_dir, "tls", "cert.pem")
        key = os.path.join(p.data_dir, "tls", "key.pem")
        self.assertTrue(os.path.isfile(cert) and os.path.isfile(key),
                        f"want {cert} and {key}")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode) & 0o077, 0,
                         f"{key} must not be readable by others: mode "
                         f"{oct(stat.S_IMODE(os.stat(key).st_mode))}")
        with open(cert) as f:
            pem = f.read()
        want_der = ssl.PEM_cert_to_DER_cert(pem)
        for port, starttls in ((p.smtps_port, False), (p.port, True)):
            with self.subTest(port=port, starttls=starttls):
                c = self.conn(port, tls=not starttls)
                if starttls:
                    self.assertReply(c.ehlo(), 250, conn=c)
                    c.starttls()
                self.assertEqual(c.sock.getpeercert(binary_form=True), want_der,
                                 "the served certificate is not data_dir/tls/cert.pem")
        # TLS 1.2 works too
        ctx = client_tls_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        s = ctx.wrap_socket(socket.create_connection((HOST, p.smtps_port), timeout=10))
        self.addCleanup(s.close)
        self.assertEqual(s.version(), "TLSv1.2")
        self.assertTrue(s.recv(100).startswith(b"220 "))
        # restarting keeps the same certificate
        p.restart()
        with open(cert) as f:
            self.assertEqual(f.read(), pem, "the certificate must be kept across restarts")
        c = self.conn(p.smtps_port, tls=True)
        self.assertEqual(c.sock.getpeercert(binary_form=True), want_der)

    def test_configured_certificate_is_served(self):
        src = self.dedicated_postino(redis=None)  # only to make a certificate pair
        src.stop()
        cert = os.path.join(src.data_dir, "tls", "cert.pem")
        key = os.path.join(src.data_dir, "tls", "key.pem")
        p = self.dedicated_postino(redis=None, tls_cert=cert, tls_key=key)
        self.assertFalse(os.path.exists(os.path.join(p.data_dir, "tls")),
                         "with tls_cert/tls_key set, no self-signed pair is made")
        with open(cert) as f:
            want_der = ssl.PEM_cert_to_DER_cert(f.read())
        c = self.conn(p.smtps_port, tls=True)
        self.assertEqual(c.sock.getpeercert(binary_form=True), want_der)

    # ---- logs

    def test_debug_log_holds_no_password_and_no_body(self):
        secret = "Sup3r-S3cret-pw"
        marker = "BODY-MARKER-7f3a9c"
        p = self.dedicated_postino(redis=None, log_level="debug", auth_cleartext_loopback="yes")
        p.add_user(USER, ["dmn.example"], secret)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-" + secret), 535, conn=c)
        self.assertReply(c.auth_login(USER, secret), 235, conn=c)
        c2 = self.conn(p.port)
        self.assertReply(c2.ehlo(), 250, conn=c2)
        self.assertReply(c2.cmd("AUTH PLAIN"), 334, conn=c2)
        self.assertReply(c2.cmd(plain_response(USER, secret)), 235, conn=c2)
        c3 = self.conn(p.port)
        self.assertReply(c3.ehlo(), 250, conn=c3)
        self.assertReply(c3.cmd(f"AUTH LOGIN {b64(USER)}"), 334, conn=c3)
        self.assertReply(c3.cmd(b64(secret)), 235, conn=c3)
        self.submit(c3, "dmn@dmn.example", ["x@dest.example"],
                    make_message(from_addr="dmn@dmn.example", body=marker + "\r\n"))
        for s in (c, c2, c3):
            s.cmd("QUIT")
        log = p.log_text()
        self.assertIn("level=debug", log, "log_level = debug logs debug lines")
        self.assertIn("event=command", log)
        for needle in (secret, b64(secret), plain_response(USER, secret),
                       plain_response(USER, "wrong-" + secret), b64("wrong-" + secret), marker):
            self.assertNotIn(needle, log, f"the log holds {needle!r}")

    # ---- one daemon per data_dir, supervision, shutdown

    def test_second_postino_on_the_same_data_dir_refused(self):
        p1 = self.dedicated_postino(redis=None)
        p2 = Postino(redis=None)
        self.addCleanup(p2.cleanup)
        p2.data_dir = p1.data_dir
        code, text = self.expect_refusal(p2, "another postino is running")
        self.assertEqual(code, 1)
        # the first one is unharmed
        c = self.conn(p1.port)
        self.assertReply(c.cmd("NOOP"), 250, conn=c)
        with open(os.path.join(p1.data_dir, "postino.lock")) as f:
            self.assertEqual(f.read().strip(), str(p1.proc.pid))

    def test_worker_that_dies_is_restarted(self):
        p = self.dedicated_postino(redis=None, workers=2)
        old = p.worker_pids()
        self.assertEqual(len(old), 2, f"want 2 workers, got {old}")
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda: "event=worker_restarted" in p.log_text(), 20, 0.1,
                 "the master to restart the killed worker")
        wait_for(lambda: len(p.worker_pids()) == 3, 20, 0.1, "the new worker to start")
        self.assertIn("event=worker_died", p.log_text())
        self.assertFalse(process_alive(old[0]))
        # the restarted pool serves every port
        for _ in range(6):
            c = Conn(p.port)
            self.addCleanup(c.close)
            self.assertReply(c.greeting, 220, conn=c)
            self.assertReply(c.cmd("QUIT"), 221, conn=c)

    def test_sessions_left_at_shutdown_get_421(self):
        """RFC 5321 3.8: a server closes a connection on its own only after 421 (shutting
        down) or a timeout; a session still open when postino stops must be told 421."""
        p = self.dedicated_postino(redis=None)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        t0 = time.monotonic()
        os.kill(p.proc.pid, signal.SIGTERM)
        replies, closed = c.replies_until_closed(30)
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "postino must close the session when it stops")
        self.assertTrue(replies and replies[-1].code == 421,
                        f"got {replies} then the close after {elapsed:.1f} s, want a 421 reply "
                        f"before the close")
        self.assertEqual(p.proc.wait(timeout=30), 0)

    def test_master_killed_its_children_follow(self):
        p = self.start_postino(redis=None)
        self.addCleanup(p.cleanup)  # unchecked stop: this master dies by SIGKILL
        children = p.worker_pids() + p.embedded_redis_pids()
        os.kill(p.proc.pid, signal.SIGKILL)
        p.proc.wait(timeout=10)
        wait_for(lambda: not any(process_alive(x) for x in children), 20, 0.1,
                 f"workers and embedded redis {children} to exit after the master's kill -9")
        # and the data_dir is free for a new postino
        p2 = Postino(redis=None)
        self.addCleanup(p2.cleanup)
        p2.data_dir = p.data_dir
        p2.start()
        self.assertEqual(p2.stop(), 0)

    def test_sigterm_lets_open_sessions_finish(self):
        """A transaction under way when postino is told to stop still ends with 250, and the
        session is told at once (421 4.3.2, sent right after the 250) that it must go."""
        p = self.dedicated_postino(redis=None, auth_cleartext_loopback="yes")
        p.add_user(USER, ["dmn.example"], PW)
        s = self.login(p.port, USER, PW, tls=None)
        self.assertReply(s.cmd("MAIL FROM:<dmn@dmn.example>"), 250, conn=s)
        self.assertReply(s.cmd("RCPT TO:<x@dest.example>"), 250, conn=s)
        os.kill(p.proc.pid, signal.SIGTERM)
        wait_for(lambda: "event=stopping" in p.log_text(), 10, 0.05, "postino to start stopping")
        # the open transaction still completes
        _, final = s.data(make_message(from_addr="dmn@dmn.example"))
        self.assertQueued(final, conn=s)
        s.send(b"QUIT\r\n")
        replies, closed = s.replies_until_closed(15)
        self.assertTrue(closed, f"the session must be closed; got {replies}")
        self.assertTrue(replies and replies[0].code == 421 and replies[0].enhanced == "4.3.2",
                        f"after the message: got {replies}, want 421 4.3.2 first")
        try:
            code = p.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("postino did not exit within 15 s after its last session ended")
        self.assertEqual(code, 0)


class PostinoctlQueueTest(PostinoTestCase):
    """postinoctl queue show / cat on a queue of known content (own redis-server)."""

    def test_queue_show_lists_every_message_in_batches(self):
        redis = self.dedicated_redis()
        p = self.dedicated_postino(redis=redis, auth_cleartext_loopback="yes")
        r = p.ctl("queue", "show", check=True)
        self.assertEqual(r.stdout, "messages=0 recipients=0\n", "an empty queue")
        p.add_user(USER, ["dmn.example"], PW)
        c = self.login(p.port, USER, PW, tls=None)
        n = 150  # more than one batch of 100 in queue_admin_show
        msg = make_message(from_addr="dmn@dmn.example")
        group = (b"MAIL FROM:<dmn@dmn.example>\r\nRCPT TO:<a@one.example>\r\n"
                 b"RCPT TO:<b@two.example>\r\nDATA\r\n")
        ids = []
        for _ in range(n):
            c.send(group)
            got = [c.read_reply() for _ in range(4)]
            self.assertEqual([x.code for x in got], [250, 250, 250, 354], f"got {got}")
            c.send(msg + b".\r\n")
            ids.append(self.assertQueued(c.read_reply(), conn=c))
        r = p.ctl("queue", "show", "--limit", "1000", check=True)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[-1], f"messages={n} recipients={2 * n}")
        heads = [ln for ln in lines if not ln.startswith("  ")][:-1]
        self.assertEqual(len(heads), n, f"want {n} message lines, got {len(heads)}")
        self.assertEqual(sorted(h.split()[0] for h in heads), sorted(ids))
        when = [re.search(r"received=(\S+)", h).group(1) for h in heads]
        self.assertEqual(when, sorted(when), "oldest first")
        for i, ln in enumerate(lines[:-1]):
            if not ln.startswith("  "):
                self.assertRegex(lines[i + 1], r"^  a@one\.example state=queued attempts=0 ")
                self.assertRegex(lines[i + 2], r"^  b@two\.example state=queued attempts=0 ")
        r = p.ctl("queue", "show", "--limit", "120", check=True)
        lines = r.stdout.splitlines()
        self.assertEqual(len([ln for ln in lines if not ln.startswith("  ")]) - 1, 120)
        self.assertEqual(lines[-1], f"messages={n} recipients={2 * n}",
                         "the last line counts the whole queue")
        r = p.ctl("queue", "cat", "0123456789abcdef")
        self.assertEqual(r.returncode, 1, f"queue cat of a missing id: {r}")
        self.assertIn("no such message", r.stderr)
        r = p.ctl("queue", "show", "--limit", "0")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
