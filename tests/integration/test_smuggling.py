"""SMTP smuggling and STARTTLS injection, byte for byte over raw sockets.

An end-of-data imitation (bare CR or LF around a ".", or a NUL) followed by a second
transaction must be refused as one message: exactly one final 5xx reply to the DATA, no reply
to the smuggled commands, nothing queued. Commands ended by a bare LF or holding a bare CR get
500 and are not executed. Bytes pipelined after STARTTLS in cleartext are discarded.

One redis-server and one postino (auth_cleartext_loopback = yes) are shared by the class."""
import unittest

from harness import SharedPostinoTestCase, plain_response

USER, PW = "smug", "smug-secret-12"
OWNED = "owned.example"
SENDER = f"a@{OWNED}"

IMITATIONS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
              b"\r\n\x00.\r\n"]
FIRST = (f"From: <{SENDER}>\r\nTo: <x@y.example>\r\nSubject: first\r\n\r\nfirst part").encode()
SMUGGLED = (f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
            f"From: {SENDER}\r\n\r\nsmuggled\r\n").encode()
REAL_END = b"\r\n.\r\n"


class SmugglingTest(SharedPostinoTestCase):
    postino_settings = dict(auth_cleartext_loopback="yes", max_errors=1000)
    postino_users = ((USER, [OWNED], PW),)

    def counts(self):
        stat = self.redis.hgetall("pst:stat")
        return self.redis.msgs_count(), stat.get("messages_received_total")

    def open_transaction(self, tls):
        if tls:
            c = self.login(self.postino.smtps_port, USER, PW, tls="implicit")
        else:
            c = self.login(self.postino.port, USER, PW, tls=None)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@y.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)
        return c

    def smuggle(self, imitation, tls=False, pieces=False):
        """Sends FIRST, the imitation, SMUGGLED and the real end; then QUIT. Returns the
        replies read until the server closed."""
        c = self.open_transaction(tls)
        parts = [FIRST, imitation, SMUGGLED, REAL_END]
        if pieces:
            for p in parts:
                c.send(p)
        else:
            c.send(b"".join(parts))
        first = c.read_reply()
        c.send(b"QUIT\r\n")
        rest, closed = c.replies_until_closed(10)
        self.assertTrue(closed, f"the server did not close after QUIT\n{c.history()}")
        return c, [first] + rest

    def test_end_of_data_imitations_are_refused_as_one_message(self):
        for tls in (False, True):
            for pieces in (False, True):
                for imitation in IMITATIONS:
                    with self.subTest(imitation=imitation, tls=tls, separate_sends=pieces):
                        before = self.counts()
                        c, replies = self.smuggle(imitation, tls, pieces)
                        codes = [r.code for r in replies]
                        self.assertTrue(len(replies) == 2 and replies[0].code // 100 == 5 and
                                        replies[1].code == 221,
                                        f"got replies {codes} ({replies}), want one 5xx for "
                                        f"the DATA, then 221 for QUIT\n{c.history()}")
                        self.assertReply(replies[0], 550, "5.6.0", conn=c)
                        self.assertEqual(self.counts(), before,
                                         f"pst:msgs / messages_received_total changed: "
                                         f"nothing may be queued (imitation {imitation!r})")

    def test_control_a_real_end_of_data_runs_the_second_transaction(self):
        """Shows the check above can fail: with a real end, both messages are queued."""
        before = self.redis.msgs_count()
        c, replies = self.smuggle(REAL_END)
        codes = [r.code for r in replies]
        self.assertEqual(codes, [250, 250, 250, 354, 250, 221], f"got {replies}")
        self.assertEqual(self.redis.msgs_count(), before + 2)

    def test_bare_lf_in_data_as_line_end(self):
        before = self.counts()
        c = self.open_transaction(False)
        c.send(f"From: <{SENDER}>\nSubject: lf\n\nbody\n".encode() + REAL_END)
        self.assertReply(c.read_reply(), 550, "5.6.0", conn=c)
        self.assertEqual(self.counts(), before)
        self.assertReply(c.cmd("NOOP"), 250, conn=c)

    def test_bare_lf_ends_no_command(self):
        cases = [
            # (bytes sent in one packet, reply codes wanted)
            (b"NOOP\nQUIT\r\n", [500, 221]),
            (b"QUIT\nNOOP\r\n", [500, 250]),
            (b"RSET\nNOOP\r\n", [500, 250]),
            (f"MAIL FROM:<{SENDER}>\nRCPT TO:<x@y.example>\r\n".encode(), [500, 503]),
            (b"NOOP\n\r\nNOOP\r\n", [500, 500, 250]),  # the empty line is no command
        ]
        for data, want in cases:
            with self.subTest(data=data):
                c = self.login(self.postino.port, USER, PW, tls=None)
                c.send(data)
                got = [c.read_reply() for _ in want]
                self.assertEqual([r.code for r in got], want, f"got {got}\n{c.history()}")
                self.assertEqual(got[0].enhanced, "5.5.2", f"got {got[0]}")
                if want[-1] != 221:
                    # nothing more is answered, and the session is still usable
                    self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)

    def test_bare_cr_in_a_command(self):
        cases = [
            (b"NOOP\rQUIT\r\n", [500]),
            (b"NO\rOP\r\n", [500]),
            (b"\rNOOP\r\n", [500]),
            (f"MAIL FROM:<{SENDER}>\rRCPT TO:<x@y.example>\r\nRCPT TO:<x@y.example>\r\n"
             .encode(), [500, 503]),
        ]
        for data, want in cases:
            with self.subTest(data=data):
                c = self.login(self.postino.port, USER, PW, tls=None)
                c.send(data)
                got = [c.read_reply() for _ in want]
                self.assertEqual([r.code for r in got], want, f"got {got}\n{c.history()}")
                self.assertEqual(got[0].enhanced, "5.5.2", f"got {got[0]}")
                self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)

    def test_starttls_injection_is_discarded(self):
        injections = [b"NOOP\r\n", b"EHLO evil.example\r\n",
                      f"AUTH PLAIN {plain_response(USER, PW)}\r\n".encode(),
                      b"RSET\r\nNOOP\r\nNOOP\r\n"]
        for injected in injections:
            with self.subTest(injected=injected):
                c = self.conn(self.postino.port)
                self.assertReply(c.ehlo(), 250, conn=c)
                c.send(b"STARTTLS\r\n" + injected)
                self.assertReply(c.read_reply(), 220, "2.0.0", conn=c)
                c.tls_handshake()  # fails if any reply to the injection was sent in cleartext
                c.send(b"EHLO real.example\r\n")
                r = c.read_reply()
                self.assertTrue(r.code == 250 and len(r.lines) > 1 and
                                "Hello real.example" in r.lines[0],
                                f"first reply inside TLS: got {r}, want the EHLO reply (the "
                                f"injected {injected!r} must never be answered)\n{c.history()}")
                # the injected AUTH did not authenticate the TLS session
                self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 530, "5.7.0", conn=c)
                self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)


if __name__ == "__main__":
    unittest.main()
