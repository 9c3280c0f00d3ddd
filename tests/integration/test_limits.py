"""Session limits that need their own configuration: idle, data and TLS handshake timers, slow
clients, connections per IP and in total, errors per session, AUTH failure lockouts, and users
bound to an allowed network.

Each test starts a dedicated postino with the setting under test (workers = 1); they share the
class's redis-server, except the allowed-network test whose user would act for every loopback
client."""
import socket
import ssl
import time
import unittest

from harness import (HOST, Conn, Postino, PostinoTestCase, client_tls_context, dot_stuff,
                     make_message, plain_response, wait_for)

USER, PW = "lim", "lim-secret-123"
OTHER, OTHER_PW = "lim2", "lim2-secret-12"
DOMAIN = "lim.example"
SENDER = f"lim@{DOMAIN}"


class LimitsTest(PostinoTestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = cls.start_redis()
        try:
            # users live in Redis: postinoctl needs only a config that names it
            p = Postino(redis=cls.redis)
            try:
                p.write_config()
                p.add_user(USER, [DOMAIN], PW)
                p.add_user(OTHER, [DOMAIN], OTHER_PW)
            finally:
                p.cleanup()
        except BaseException:
            cls.redis.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.redis.cleanup()

    def setUp(self):
        self.redis.clear_auth_failures()

    def postino(self, **settings):
        settings.setdefault("auth_cleartext_loopback", "yes")
        return self.dedicated_postino(redis=self.redis, **settings)

    # ---- timers

    def test_idle_timeout(self):
        p = self.postino(idle_timeout=2)
        c = self.conn(p.port)
        t0 = time.monotonic()
        r = c.read_reply(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.2", conn=c)
        self.assertTrue(1.5 <= elapsed <= 6, f"421 came after {elapsed:.2f} s, want about 2 s")
        self.assertTrue(c.wait_closed(5), "the server must close after 421")

    def test_idle_timeout_counts_from_the_last_command(self):
        p = self.postino(idle_timeout=2)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        t0 = time.monotonic()
        r = c.read_reply(timeout=10)
        self.assertReply(r, 421, "4.4.2", conn=c)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)

    def test_slow_client_one_byte_per_100ms(self):
        """3 s for a command on a 2 s idle timer, 2.5 s for the end of a message on a 2 s data
        timer: the timers count from the last read, not from the start of the line."""
        p = self.postino(idle_timeout=2, data_timeout=2)
        c = self.conn(p.port)

        def slowly(data):
            t0 = time.monotonic()
            for b in data:
                c.send(bytes([b]))
                time.sleep(0.1)  # pacing the client, not an assertion
            return time.monotonic() - t0

        spent = slowly(b"EHLO slow-client.example.org\r\n")
        self.assertGreater(spent, 2.5)
        r = c.read_reply()
        self.assertReply(r, 250, conn=c)
        self.assertIn("Hello slow-client.example.org", r.lines[0])
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@dest.example>"), 250, conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)
        msg = make_message(from_addr=SENDER, body=b"a slow ending line\r\n")
        c.send(msg[:-20])
        spent = slowly(msg[-20:] + b".\r\n")
        self.assertGreater(spent, 2.1)
        qid = self.assertQueued(c.read_reply(), conn=c)
        self.assertTrue(self.redis.cmd("GET", f"pst:body:{qid}").endswith(msg))

    def test_stall_in_data_beyond_data_timeout(self):
        p = self.postino(idle_timeout=60, data_timeout=2)
        before = self.redis.msgs_count()
        c = self.login(p.port, USER, PW, tls=None)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@dest.example>"), 250, conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)
        c.send(make_message(from_addr=SENDER) + b"partial line, then silence")
        t0 = time.monotonic()
        r = c.read_reply(timeout=15)
        elapsed = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.2", conn=c)
        self.assertTrue(1.5 <= elapsed <= 8, f"421 came after {elapsed:.2f} s, want about 2 s "
                                             f"(data_timeout), not idle_timeout")
        self.assertTrue(c.wait_closed(5), "the server must close after 421")
        self.assertEqual(self.redis.msgs_count(), before, "a stalled message must not be queued")

    def test_tls_handshake_timeout(self):
        p = self.postino(tls_handshake_timeout=1)
        s = socket.create_connection((HOST, p.smtps_port), timeout=10)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        data = s.recv(100)  # say nothing: the server must give up on the handshake
        elapsed = time.monotonic() - t0
        self.assertEqual(data, b"", f"got {data!r}, want the connection closed")
        self.assertTrue(0.5 <= elapsed <= 6, f"closed after {elapsed:.2f} s, want about 1 s")

    # ---- connections

    def test_max_connections_per_ip(self):
        p = self.postino(max_connections_per_ip=3)
        held = [self.conn(p.submission_ports[i % 2]) for i in range(3)]
        c = Conn(p.port, greet=False)
        self.addCleanup(c.close)
        r = c.read_reply()
        self.assertReply(r, 421, "4.7.0", conn=c)
        self.assertTrue(c.wait_closed(5), "the refused connection must be closed")
        # implicit TLS: no cleartext reply, just a close
        s = socket.create_connection((HOST, p.smtps_port), timeout=10)
        self.addCleanup(s.close)
        try:
            ss = client_tls_context().wrap_socket(s)
            self.addCleanup(ss.close)
            got = ss.recv(100)
            self.fail(f"4th connection over TLS: got {got!r}, want the connection closed")
        except (ssl.SSLError, OSError):
            pass
        # the held sessions still work; closing one makes room again
        for h in held:
            self.assertReply(h.cmd("NOOP"), 250, conn=h)
        held[0].send(b"QUIT\r\n")
        self.assertReply(held[0].read_reply(), 221, conn=held[0])
        self.assertTrue(held[0].wait_closed(5))

        def admitted():
            x = Conn(p.port, greet=False)
            try:
                return x.read_reply().code == 220
            finally:
                x.close()
        wait_for(admitted, 10, 0.1, "a new connection to be admitted after one closed")

    def test_max_connections_total(self):
        p = self.postino(max_connections=2)
        held = [self.conn(p.port), self.conn(p.submission_ports[1])]
        c = Conn(p.port, greet=False)
        self.addCleanup(c.close)
        self.assertReply(c.read_reply(), 421, "4.7.0", conn=c)
        self.assertTrue(c.wait_closed(5))
        for h in held:
            self.assertReply(h.cmd("NOOP"), 250, conn=h)

    def test_max_errors(self):
        p = self.postino(max_errors=3)
        c = self.conn(p.port)
        self.assertReply(c.cmd("FOO"), 500, "5.5.2", conn=c)
        self.assertReply(c.cmd("NOOP"), 250, conn=c)  # successes do not reset the count
        self.assertReply(c.cmd("BAR"), 500, "5.5.2", conn=c)
        c.send(b"BAZ\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", conn=c)
        self.assertReply(c.read_reply(), 421, "4.7.0", conn=c)
        self.assertTrue(c.wait_closed(5), "the server must close after 421")

    def test_max_errors_pipelined(self):
        p = self.postino(max_errors=3)
        c = self.conn(p.port)
        c.send(b"FOO\r\nFOO\r\nFOO\r\nNOOP\r\nNOOP\r\n")
        replies, closed = c.replies_until_closed(5)
        self.assertEqual([r.code for r in replies], [500, 500, 500, 421],
                         f"got {replies}: nothing after the 421 may be answered")
        self.assertTrue(closed)

    def test_per_ip_limit_holds_over_all_workers(self):
        p = self.postino(workers=2, max_connections_per_ip=3)
        admitted, refused = [], []
        for i in range(8):
            c = Conn(p.submission_ports[i % 2], greet=False)
            self.addCleanup(c.close)
            r = c.read_reply()
            (admitted if r.code == 220 else refused).append(r)
        self.assertEqual(len(admitted), 3, f"admitted {admitted}, refused {refused}: want "
                                           f"exactly 3 over both workers")
        self.assertTrue(all(r.code == 421 and r.enhanced == "4.7.0" for r in refused),
                        f"refused: {refused}")

    def test_connection_slots_are_released_on_every_way_out(self):
        """Sessions that end in many ways; afterwards exactly max_connections_per_ip = 2
        concurrent connections are admitted again (no slot leaked, none released twice)."""
        p = self.postino(max_connections_per_ip=2, max_errors=2, idle_timeout=1,
                         tls_handshake_timeout=1)

        def quit_():
            c = self.conn(p.port)
            self.assertReply(c.cmd("QUIT"), 221, conn=c)
            c.wait_closed(5)

        def client_close_greeted():
            self.conn(p.port).close()

        def client_reset():
            c = self.conn(p.port)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()

        def client_close_in_data():
            c = self.login(p.port, USER, PW, tls=None)
            c.cmd(f"MAIL FROM:<{SENDER}>")
            c.cmd("RCPT TO:<x@dest.example>")
            self.assertReply(c.cmd("DATA"), 354, conn=c)
            c.send(b"From: " + SENDER.encode() + b"\r\n\r\nhalf")
            c.close()

        def client_close_in_auth_delay():
            c = self.conn(p.port)
            c.ehlo()
            c.send(f"AUTH PLAIN {plain_response(USER, 'wrong-password')}\r\n".encode())
            c.close()

        def tls_garbage():
            s = socket.create_connection((HOST, p.smtps_port), timeout=5)
            s.sendall(b"EHLO this is not TLS\r\n" * 10)
            try:
                s.recv(100)
            except OSError:
                pass
            s.close()

        def starttls_garbage():
            c = self.conn(p.port)
            c.ehlo()
            c.cmd("STARTTLS")
            c.send(b"\x16\x03\x01\x00\x05hello garbage")
            c.wait_closed(5)

        def tls_silent():
            s = socket.create_connection((HOST, p.smtps_port), timeout=5)
            try:
                s.recv(100)  # the handshake timer closes it
            except OSError:
                pass
            s.close()

        def line_too_long():
            c = self.conn(p.port)
            c.send(b"X" * 5000 + b"\r\n")
            c.wait_closed(5)

        def too_many_errors():
            c = self.conn(p.port)
            c.send(b"FOO\r\nBAR\r\n")
            c.wait_closed(5)

        def idle():
            c = self.conn(p.port)
            c.wait_closed(5)

        def queued_then_close():
            c = self.login(p.smtps_port, USER, PW, tls="implicit")
            self.submit(c, SENDER, ["x@dest.example"], make_message(from_addr=SENDER))
            c.close()

        for way in (quit_, client_close_greeted, client_reset, client_close_in_data,
                    client_close_in_auth_delay, tls_garbage, starttls_garbage, tls_silent,
                    line_too_long, too_many_errors, idle, queued_then_close):
            with self.subTest(way=way.__name__):
                way()
                # both slots come back (the server notices closes asynchronously)
                held = []

                def two_admitted():
                    while len(held) < 2:
                        c = Conn(p.port, greet=False)
                        r = c.read_reply()
                        if r.code != 220:
                            c.close()
                            return False
                        held.append(c)
                    return True
                try:
                    wait_for(two_admitted, 10, 0.1, f"2 connections to be admitted after "
                                                    f"{way.__name__}")
                    third = Conn(p.port, greet=False)
                    r = third.read_reply()
                    third.close()
                    self.assertReply(r, 421, "4.7.0")
                finally:
                    for c in held:
                        c.send(b"QUIT\r\n")
                        c.read_reply()
                        c.wait_closed(5)
                        c.close()

    def test_failed_auth_counts_towards_max_errors(self):
        p = self.postino(max_errors=3, auth_max_failures_user=100)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-1-password"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-2-password"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-3-password"), 535, "5.7.8", conn=c)
        self.assertReply(c.read_reply(), 421, "4.7.0", conn=c)
        self.assertTrue(c.wait_closed(5))

    def test_auth_waits_for_a_busy_pool(self):
        """sign_backlog: "past it, sessions wait" - two password checks at once on a pool with
        room for one must both be answered 235, not 454."""
        p = self.postino(sign_backlog=1)
        a = self.conn(p.port)
        b = self.conn(p.port)
        self.assertReply(a.ehlo(), 250, conn=a)
        self.assertReply(b.ehlo(), 250, conn=b)
        a.send(f"AUTH PLAIN {plain_response(USER, PW)}\r\n".encode())
        b.send(f"AUTH PLAIN {plain_response(OTHER, OTHER_PW)}\r\n".encode())
        self.assertReply(a.read_reply(), 235, "2.7.0", conn=a)
        self.assertReply(b.read_reply(), 235, "2.7.0", conn=b)

    # ---- AUTH failures

    def test_auth_failures_per_user_lock_the_user(self):
        p = self.postino(auth_max_failures_user=3)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        delays = []
        for i in range(3):
            t0 = time.monotonic()
            self.assertReply(c.auth_plain(USER, f"wrong-{i}-password"), 535, "5.7.8", conn=c)
            delays.append(time.monotonic() - t0)
        for got, want in zip(delays, (0.25, 0.5, 1.0)):
            self.assertGreaterEqual(got, want * 0.9, f"failure delays: got {delays}, want at "
                                                     f"least 0.25, 0.5, 1 s")
        # the 4th attempt for that user is refused even with the right password
        self.assertReply(c.auth_plain(USER, PW), 421, "4.7.0", conn=c)
        self.assertTrue(c.wait_closed(5), "the server must close after 421")
        c2 = self.conn(p.smtps_port, tls=True)
        self.assertReply(c2.ehlo(), 250, conn=c2)
        self.assertReply(c2.auth_login(USER, PW), 421, "4.7.0", conn=c2)
        # another user from the same IP is not locked
        c3 = self.conn(p.port)
        self.assertReply(c3.ehlo(), 250, conn=c3)
        self.assertReply(c3.auth_plain(OTHER, OTHER_PW), 235, "2.7.0", conn=c3)

    def test_auth_failures_per_ip_lock_the_ip(self):
        p = self.postino(auth_max_failures_ip=2)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-password-1"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain("nobody-here", "wrong-password-2"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(OTHER, OTHER_PW), 421, "4.7.0", conn=c)

    def test_auth_lock_ends_with_the_failure_window(self):
        p = self.postino(auth_max_failures_user=1, auth_failure_window=2)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-password-1"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(USER, PW), 421, "4.7.0", conn=c)
        ttl = self.redis.cmd("TTL", f"pst:authfail:user:{USER}")
        self.assertTrue(0 < ttl <= 2, f"TTL of the user's failure counter: got {ttl}, want 1..2")

        def unlocked():
            x = Conn(p.port)
            try:
                x.ehlo()
                r = x.auth_plain(USER, PW)
                if r.code not in (235, 421):
                    raise AssertionError(f"got {r}, want 235 or 421")
                return r.code == 235
            finally:
                x.close()
        wait_for(unlocked, 10, 0.2, "the lock to end after auth_failure_window = 2 s")

    def test_auth_success_resets_the_user_count(self):
        p = self.postino(auth_max_failures_user=2, auth_max_failures_ip=100)
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, "wrong-password-1"), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)
        c2 = self.conn(p.port)
        self.assertReply(c2.ehlo(), 250, conn=c2)
        self.assertReply(c2.auth_plain(USER, "wrong-password-2"), 535, "5.7.8", conn=c2)
        self.assertReply(c2.auth_plain(USER, PW), 235, "2.7.0", conn=c2)

    # ---- allowed networks

    def test_allowed_network_sends_without_auth(self):
        redis = self.dedicated_redis()  # this user would act for every loopback client
        p = self.dedicated_postino(redis=redis)  # auth_cleartext_loopback = no
        p.add_user("netuser", ["net.example"], "net-secret-123", allow_net=["127.0.0.0/8"])
        msg = make_message(from_addr="app@net.example")

        def mail_accepted():
            c = Conn(p.port)
            try:
                c.ehlo()
                return c.cmd("MAIL FROM:<app@net.example>").code == 250
            finally:
                c.close()
        # the workers reload allowed networks from Redis every few seconds
        wait_for(mail_accepted, 15, 0.2, "MAIL from the allowed network to be accepted")
        c = self.conn(p.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.cmd("MAIL FROM:<app@other.example>"), 553, "5.7.1", conn=c)
        qid = self.submit(c, "app@net.example", ["x@dest.example"], msg)
        info = redis.hgetall(f"pst:msg:{qid}")
        self.assertEqual(info.get("user"), b"netuser", f"pst:msg:{qid}: got {info}")
        # from the allowed network, the From: domain must still be owned
        self.assertReply(c.cmd("MAIL FROM:<app@net.example>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@dest.example>"), 250, conn=c)
        r354, final = c.data(dot_stuff(make_message(from_addr="app@other.example")))
        self.assertReply(final, 550, "5.7.1", conn=c)
        # and once the user is deleted the network loses its right
        p.ctl("user", "del", "netuser", check=True)

        def mail_refused():
            x = Conn(p.port)
            try:
                x.ehlo()
                return x.cmd("MAIL FROM:<app@net.example>").code == 530
            finally:
                x.close()
        wait_for(mail_refused, 15, 0.2, "MAIL from the network to need AUTH after user del")


if __name__ == "__main__":
    unittest.main()
