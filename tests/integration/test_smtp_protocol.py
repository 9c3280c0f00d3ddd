"""The SMTP session byte for byte over raw sockets: EHLO keywords, command order, PIPELINING,
enhanced status codes, and the limits on recipients, size, Received: headers, line lengths and
NUL octets.

One redis-server and one postino are shared by the class, with AUTH allowed in cleartext from
loopback (auth_cleartext_loopback = yes), max_recipients = 3, max_message_size = 64K and
max_received_headers = 5 (and max_errors = 1000: these tests collect many 5xx replies on
purpose; the max_errors limit has its own test in test_limits.py)."""
import re
import unittest

from harness import (HOSTNAME, SharedPostinoTestCase, b64, dot_stuff, make_message,
                     plain_response, split_received)

USER, PW = "proto", "proto-secret-1"
SENDER = "proto@proto.example"
MAX_SIZE = 64 * 1024
ENHANCED_RE = re.compile(r"^(\d)\d\d[ -](\d)\.\d{1,3}\.\d{1,3}( |$)")


class ProtocolTest(SharedPostinoTestCase):
    postino_settings = dict(auth_cleartext_loopback="yes", max_recipients=3,
                            max_message_size="64K", max_received_headers=5,
                            auth_max_failures_ip=1000, max_errors=1000)
    postino_users = ((USER, ["proto.example"], PW),)

    def setUp(self):
        self.redis.clear_auth_failures()

    def session(self):
        """An authenticated cleartext session (AUTH allowed on loopback)."""
        return self.login(self.postino.port, USER, PW, tls=None)

    def transaction(self, c, rcpts=("r@dest.example",), mail_params=""):
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>{mail_params}"), 250, "2.1.0", conn=c)
        for r in rcpts:
            self.assertReply(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)

    def msg(self, **kw):
        kw.setdefault("from_addr", SENDER)
        return make_message(**kw)

    # ---- greeting, EHLO, HELO

    def test_greeting_and_ehlo_keywords(self):
        c = self.conn(self.postino.port)
        self.assertRegex(c.greeting.last, rf"^220 {re.escape(HOSTNAME)} ESMTP")
        r = c.ehlo("kw.example")
        self.assertReply(r, 250, conn=c)
        self.assertTrue(r.lines[0].startswith(f"250-{HOSTNAME} "), f"got {r}")
        want = ["SIZE 65536", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS",
                "AUTH PLAIN LOGIN", "SMTPUTF8"]
        self.assertEqual(r.texts[1:], want, f"EHLO keywords in cleartext on loopback: got {r}")
        c.starttls()
        r = c.ehlo("kw.example")
        self.assertEqual(r.texts[1:], [k for k in want if k != "STARTTLS"],
                         f"EHLO keywords inside TLS: got {r}")

    def test_helo(self):
        c = self.conn(self.postino.port)
        r = c.cmd("HELO old.example")
        self.assertEqual(r.lines, [f"250 {HOSTNAME}"], f"HELO: got {r}")
        self.assertReply(c.cmd("HELO"), 501, "5.5.4", conn=c)
        self.assertReply(c.cmd("EHLO"), 501, "5.5.4", conn=c)
        # HELO sessions may still authenticate and send
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)
        qid = self.submit(c, SENDER, ["h@dest.example"], self.msg())
        received, _ = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
        self.assertIn(b" with SMTP id ", received, f"Received: after HELO: got {received!r}")

    def test_received_with_keyword_in_cleartext(self):
        c = self.session()
        qid = self.submit(c, SENDER, ["k@dest.example"], self.msg())
        received, rest = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
        self.assertIn(f"with ESMTPA id {qid}".encode(), received,
                      f"Received: in cleartext with AUTH: got {received!r}")
        self.assertNotIn(b"TLS", received)

    # ---- command order

    def test_commands_in_the_wrong_order(self):
        c = self.conn(self.postino.port)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1", conn=c)  # before EHLO
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 503, "5.5.1", conn=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", conn=c)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", conn=c)
        self.assertReply(c.auth_plain(USER, PW), 503, "5.5.1", conn=c)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 503, "5.5.1", conn=c)  # before MAIL
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", conn=c)  # before MAIL
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", conn=c)  # before RCPT
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1", conn=c)  # nested
        self.assertReply(c.auth_plain(USER, PW), 503, "5.5.1", conn=c)  # inside a transaction
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)

    def test_rset_noop_vrfy_help_unknown(self):
        c = self.session()
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)
        self.assertReply(c.cmd("noop with an argument"), 250, "2.0.0", conn=c)
        self.assertReply(c.cmd("VRFY someone"), 252, "2.5.0", conn=c)
        r = c.cmd("HELP")
        self.assertReply(r, 214, "2.0.0", conn=c)
        self.assertIn("EHLO", r.last)
        self.assertReply(c.cmd("EXPN list"), 502, "5.5.1", conn=c)
        self.assertReply(c.cmd("BDAT 10 LAST"), 502, "5.5.1", conn=c)
        self.assertReply(c.cmd("FROBNICATE now"), 500, "5.5.2", conn=c)
        self.assertReply(c.cmd("MAILFROM:<x@y>"), 500, "5.5.2", conn=c)
        # RSET ends a transaction: RCPT then needs a new MAIL
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 503, "5.5.1", conn=c)
        # RSET keeps the authentication
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        r = c.cmd("QUIT")
        self.assertReply(r, 221, "2.0.0", conn=c)
        self.assertTrue(c.wait_closed(5), "the server must close after 221")

    def test_commands_are_case_insensitive(self):
        c = self.conn(self.postino.port)
        self.assertReply(c.cmd("ehlo lower.example"), 250, conn=c)
        self.assertReply(c.cmd(f"auth plain {plain_response(USER, PW)}"), 235, "2.7.0", conn=c)
        self.assertReply(c.cmd(f"mail from:<{SENDER}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("Rcpt To: <a@dest.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("rset"), 250, "2.0.0", conn=c)
        self.assertReply(c.cmd(f"MAIL FROM: <{SENDER}>  "), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>   "), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("data"), 354, conn=c)
        c.send(dot_stuff(self.msg()) + b".\r\n")
        self.assertQueued(c.read_reply(), conn=c)

    def test_syntax_errors(self):
        c = self.session()
        cases = [
            ("MAIL FROM:alice", 501, "5.1.7"),
            ("MAIL FROM:<no-at-sign>", None, None),
            ("MAIL FROM:<proto@proto.example> FOO=BAR", 555, "5.5.4"),
            ("MAIL FROM:<proto@proto.example> SIZE=abc", 501, "5.5.4"),
            ("MAIL TO:<proto@proto.example>", 501, "5.5.2"),
        ]
        for line, code, enh in cases:
            with self.subTest(line=line):
                r = c.cmd(line)
                if code is None:
                    self.assertEqual(r.code // 100, 5, f"{line}: got {r}, want a 5xx")
                else:
                    self.assertReply(r, code, enh, conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        for line in ("RCPT TO:<nodomain>", "RCPT TO:x@dest.example", "RCPT FROM:<x@dest.example>",
                     "RCPT TO:<x@dest.example> NOTIFY=NEVER BOGUS=1"):
            with self.subTest(line=line):
                r = c.cmd(line)
                self.assertEqual(r.code // 100, 5, f"{line}: got {r}, want a 5xx")
        # none of them was taken as a recipient
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", conn=c)

    # ---- PIPELINING

    def test_pipelined_commands_get_replies_in_order(self):
        c = self.session()
        before = self.redis.msgs_count()
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<p1@dest.example>\r\n"
               f"RCPT TO:<p2@dest.example>\r\nDATA\r\n")
        got = [c.read_reply() for _ in range(4)]
        want = [(250, "2.1.0"), (250, "2.1.5"), (250, "2.1.5"), (354, None)]
        self.assertEqual([(r.code, r.enhanced) for r in got], want, f"got {got}")
        c.send(dot_stuff(self.msg(subject="pipelined")) + b".\r\n")
        qid = self.assertQueued(c.read_reply(), conn=c)
        self.assertEqual(self.redis.msgs_count(), before + 1)
        rc = self.redis.hgetall(f"pst:rcpt:{qid}")
        self.assertEqual(len(rc), 2, f"pst:rcpt:{qid}: got {rc}")

    def test_pipelined_group_with_a_failure_keeps_the_order(self):
        c = self.conn(self.postino.port)
        c.send(f"EHLO pipe.example\r\nAUTH PLAIN {plain_response(USER, PW)}\r\n")
        self.assertReply(c.read_reply(), 250, conn=c)
        self.assertReply(c.read_reply(), 235, "2.7.0", conn=c)
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<bad address>\r\nRCPT TO:<ok@dest.example>\r\n"
               f"NOOP\r\nRSET\r\nVRFY x\r\n")
        got = [c.read_reply() for _ in range(6)]
        self.assertEqual([r.code for r in got], [250, 501, 250, 250, 250, 252], f"got {got}")

    def test_commands_pipelined_after_the_end_of_data(self):
        c = self.session()
        before = self.redis.msgs_count()
        m1 = self.msg(subject="first of two")
        m2 = self.msg(subject="second of two")
        self.transaction(c)
        # RFC 2920: the end of data may be followed by the next transaction in one packet
        c.send(m1 + b".\r\n" + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<b@dest.example>\r\n"
               f"DATA\r\n".encode())
        got = [c.read_reply() for _ in range(4)]
        self.assertEqual([r.code for r in got], [250, 250, 250, 354], f"got {got}")
        q1 = self.assertQueued(got[0], conn=c)
        c.send(m2 + b".\r\nNOOP\r\nQUIT\r\n")
        q2 = self.assertQueued(c.read_reply(), conn=c)
        self.assertReply(c.read_reply(), 250, "2.0.0", conn=c)
        self.assertReply(c.read_reply(), 221, "2.0.0", conn=c)
        self.assertTrue(c.wait_closed(5))
        self.assertEqual(self.redis.msgs_count(), before + 2)
        for qid, m in ((q1, m1), (q2, m2)):
            _, rest = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
            self.assertEqual(rest, m)

    def test_many_pipelined_commands(self):
        """More commands in one packet than one read event handles (the per-event budget)."""
        c = self.session()
        n = 1000
        c.send(b"NOOP\r\n" * n + b"RSET\r\n")
        got = [c.read_reply() for _ in range(n + 1)]
        self.assertEqual(sum(1 for r in got[:n] if r.last == "250 2.0.0 Ok"), n)
        self.assertReply(got[n], 250, "2.0.0", conn=c)

    def test_client_that_does_not_read_its_replies(self):
        """Replies pile up past the output limit; the server pauses reading, then resumes."""
        c = self.session()
        n = 40000  # 280 KB of replies
        c.sock.settimeout(30)
        c.send(b"NOOP\r\n" * n)
        c.send(b"QUIT\r\n")
        replies, closed = c.replies_until_closed(60)
        self.assertEqual(len(replies), n + 1, f"got {len(replies)} replies, want {n + 1}; "
                                              f"last {replies[-1:]}")
        self.assertEqual(replies[-1].code, 221)
        self.assertTrue(closed)

    def test_ehlo_resets_a_transaction(self):
        c = self.session()
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 250, conn=c)
        self.assertReply(c.ehlo("again.example"), 250, conn=c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", conn=c)
        # still authenticated
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)

    def test_ehlo_argument(self):
        c = self.conn(self.postino.port)
        for arg, want in (("[127.0.0.1]", 250), ("[IPv6:::1]", 250), ("a.example", 250),
                          ("two words", 501), ("[300.1.1.1]", 501), ("[127.0.0.1", 501),
                          ("x" * 256, 501)):
            with self.subTest(arg=arg):
                r = c.cmd(f"EHLO {arg}")
                self.assertEqual(r.code, want, f"EHLO {arg!r}: got {r}, want {want}")

    def test_received_header_stays_well_formed_whatever_the_ehlo(self):
        """The EHLO argument is peer text that ends up in the Received: header: either it is
        refused (501), or the header stays well formed - RFC 5322 3.6.7 "Received:"
        *received-token ";" date-time: no ";" before the one that leads to the date, and
        balanced comments."""
        for helo in ("a;b.example", "x(y.example", "x)y.example", "semi;colon)(.example"):
            with self.subTest(helo=helo):
                c = self.conn(self.postino.port)
                r = c.cmd(f"EHLO {helo}")
                if r.code == 501:
                    continue
                self.assertReply(r, 250, conn=c)
                self.assertReply(c.auth_plain(USER, PW), 235, conn=c)
                qid = self.submit(c, SENDER, ["r@dest.example"], self.msg())
                received, _ = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
                value = re.sub(r"\r\n[ \t]", " ", received.decode()[len("Received:"):])
                tokens, _, date = value.rstrip("\r\n").rpartition(";")
                depth, balanced = 0, True
                for ch in tokens:
                    depth += {"(": 1, ")": -1}.get(ch, 0)
                    balanced = balanced and depth >= 0
                self.assertTrue(";" not in tokens and balanced and depth == 0,
                                f"EHLO {helo!r} was accepted and gave a malformed Received: "
                                f"header {received!r}")

    def test_starttls_forgets_a_cleartext_authentication(self):
        c = self.session()
        c.starttls()
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 530, "5.7.0", conn=c)
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)
        qid = self.submit(c, SENDER, ["t@dest.example"], self.msg())
        received, _ = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
        self.assertIn(b"with ESMTPSA", received)

    def test_message_size_boundary(self):
        """max_message_size counts the message octets (after dot-unstuffing): exactly the
        limit is accepted, one more octet is refused."""
        c = self.session()
        for size, want in ((MAX_SIZE, 250), (MAX_SIZE + 1, 552)):
            with self.subTest(octets=size):
                msg = self.msg(body=b"")
                rest = size - len(msg)
                lines = []
                while rest > 1000:
                    take = min(1000, rest - 2)
                    lines.append(b"." + b"z" * (take - 3) + b"\r\n")
                    rest -= take
                lines.append(b"q" * (rest - 2) + b"\r\n")
                msg += b"".join(lines)
                self.assertEqual(len(msg), size)
                self.transaction(c)
                c.send(dot_stuff(msg) + b".\r\n")
                r = c.read_reply()
                if want == 250:
                    qid = self.assertQueued(r, conn=c)
                    _, stored = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
                    self.assertEqual(stored, msg)
                else:
                    self.assertReply(r, 552, "5.3.4", conn=c)

    def test_commands_pipelined_after_auth(self):
        """Commands sent in the same packet as AUTH wait for the password check, then run."""
        for label, pw, want in (("right password", PW, [235, 250, 250, 354]),
                                ("wrong password", "wrong-password", [535, 530, 503, 503])):
            for round_ in (1, 2):  # the second round may be answered from the AUTH cache
                with self.subTest(case=label, round=round_):
                    self.redis.clear_auth_failures()
                    c = self.conn(self.postino.port)
                    self.assertReply(c.ehlo(), 250, conn=c)
                    c.send(f"AUTH PLAIN {plain_response(USER, pw)}\r\nMAIL FROM:<{SENDER}>\r\n"
                           f"RCPT TO:<a@dest.example>\r\nDATA\r\n".encode())
                    got = [c.read_reply() for _ in want]
                    self.assertEqual([r.code for r in got], want, f"got {got}")
                    if want[-1] == 354:
                        c.send(dot_stuff(self.msg()) + b".\r\n")
                        self.assertQueued(c.read_reply(), conn=c)

    def test_message_in_the_same_packet_as_data(self):
        c = self.session()
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@dest.example>\r\nDATA\r\n".encode() +
               dot_stuff(self.msg(subject="eager")) + b".\r\nNOOP\r\n")
        got = [c.read_reply() for _ in range(5)]
        self.assertEqual([r.code for r in got], [250, 250, 354, 250, 250], f"got {got}")
        self.assertQueued(got[3], conn=c)

    def test_auth_plain_authorization_identity(self):
        c = self.conn(self.postino.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.cmd(f"AUTH PLAIN {b64(f'other{chr(0)}{USER}{chr(0)}{PW}')}"), 501,
                         "5.5.2", conn=c)
        self.assertReply(c.cmd(f"AUTH PLAIN {b64(f'{USER}{chr(0)}{USER}{chr(0)}{PW}')}"), 235,
                         "2.7.0", conn=c)

    def test_every_reply_carries_an_enhanced_status_code(self):
        """RFC 2034: every 2xx/4xx/5xx reply but the greeting and the EHLO/HELO replies."""
        c = self.conn(self.postino.port)
        lines = ["EHLO enh.example", "NOOP", "VRFY x", "HELP", "EXPN x", "FOO", "RSET",
                 "MAIL FROM:<x@elsewhere.example>", f"AUTH PLAIN {plain_response(USER, 'bad')}",
                 f"AUTH PLAIN {plain_response(USER, PW)}", "AUTH LOGIN",
                 "MAIL FROM:<x@elsewhere.example>", "RCPT TO:<x@dest.example>", "DATA",
                 f"MAIL FROM:<{SENDER}> SIZE=999999999", f"MAIL FROM:<{SENDER}>",
                 "RCPT TO:<bad>", "RCPT TO:<a@dest.example>", "DATA"]
        replies = []
        for line in lines:
            replies.append((line, c.cmd(line)))
        c.send(dot_stuff(self.msg(from_addr="x@elsewhere.example")) + b".\r\n")
        replies.append(("<data, From: not owned>", c.read_reply()))
        replies.append(("MAIL", c.cmd(f"MAIL FROM:<{SENDER}>")))
        replies.append(("RCPT", c.cmd("RCPT TO:<a@dest.example>")))
        replies.append(("DATA", c.cmd("DATA")))
        c.send(dot_stuff(self.msg()) + b".\r\n")
        replies.append(("<data>", c.read_reply()))
        replies.append(("STARTTLS", c.cmd("STARTTLS")))
        c.tls_handshake()
        replies.append(("EHLO", c.cmd("EHLO enh.example")))
        replies.append(("QUIT", c.cmd("QUIT")))
        checked = 0
        for line, r in replies:
            if line.startswith("EHLO") or r.code // 100 == 3:
                continue
            checked += 1
            for ln in r.lines:
                m = ENHANCED_RE.match(ln)
                self.assertIsNotNone(m, f"{line!r}: got {ln!r}, want an enhanced status code")
                self.assertEqual(m.group(1), m.group(2),
                                 f"{line!r}: got {ln!r}, want the enhanced class to match the "
                                 f"reply code")
        self.assertGreaterEqual(checked, 20)

    # ---- limits

    def test_max_recipients(self):
        c = self.session()
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        for i in range(3):
            self.assertReply(c.cmd(f"RCPT TO:<r{i}@dest.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("RCPT TO:<r3@dest.example>"), 452, "4.5.3", conn=c)
        self.assertReply(c.cmd("RCPT TO:<r4@dest.example>"), 452, "4.5.3", conn=c)
        r354, final = c.data(dot_stuff(self.msg()))
        qid = self.assertQueued(final, conn=c)
        rc = self.redis.hgetall(f"pst:rcpt:{qid}")
        self.assertEqual(sorted(v.split(b" ", 3)[3] for v in rc.values()),
                         [b"r0@dest.example", b"r1@dest.example", b"r2@dest.example"],
                         f"only the accepted recipients are queued: got {rc}")

    def test_size_parameter(self):
        c = self.session()
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE={MAX_SIZE + 1}"), 552, "5.3.4", conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=99999999999"), 552, "5.3.4", conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE={MAX_SIZE}"), 250, "2.1.0", conn=c)

    def test_body_over_max_message_size(self):
        c = self.session()
        before = self.redis.msgs_count()
        self.transaction(c)
        line = b"y" * 900 + b"\r\n"
        big = self.msg(body=line * (MAX_SIZE // len(line) + 2))
        self.assertGreater(len(big), MAX_SIZE)
        c.send(big + b".\r\n")
        self.assertReply(c.read_reply(), 552, "5.3.4", conn=c)
        self.assertEqual(self.redis.msgs_count(), before, "an oversized message is not queued")
        # just under the limit is fine, on the same session
        self.transaction(c)
        small = self.msg(body=line * 60)
        self.assertLess(len(small), MAX_SIZE)
        c.send(small + b".\r\n")
        self.assertQueued(c.read_reply(), conn=c)

    def test_too_many_received_headers(self):
        c = self.session()
        hops = [f"Received: from hop{i}.example by relay{i}.example; "
                f"Mon, 02 Nov 2026 10:00:0{i} +0000" for i in range(6)]
        before = self.redis.msgs_count()
        self.transaction(c)
        c.send(self.msg(extra_headers=hops) + b".\r\n")
        self.assertReply(c.read_reply(), 554, "5.4.6", conn=c)
        self.assertEqual(self.redis.msgs_count(), before)
        # exactly max_received_headers is allowed, and "Received:" in the body does not count
        self.transaction(c)
        body = b"".join(h.encode() + b"\r\n" for h in hops)
        c.send(self.msg(extra_headers=hops[:5], body=body) + b".\r\n")
        self.assertQueued(c.read_reply(), conn=c)

    def test_overlong_command_line_closes(self):
        c = self.session()
        c.send(b"NOOP " + b"a" * 4995 + b"\r\n")
        r = c.read_reply()
        self.assertReply(r, 500, "5.5.2", conn=c)
        self.assertTrue(c.wait_closed(5), "the server must close after a line too long")

    def test_command_line_at_the_limit(self):
        c = self.session()
        # 4096 octets before CRLF are allowed (AUTH responses need long lines)
        r = c.cmd(b"NOOP " + b"a" * (4096 - 5))
        self.assertReply(r, 250, "2.0.0", conn=c)
        c.send(b"NOOP " + b"a" * (4097 - 5) + b"\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", conn=c)
        self.assertTrue(c.wait_closed(5), "the server must close after a line too long")

    def test_nul_in_command(self):
        c = self.session()
        for line in (b"NO\x00OP", b"NOOP\x00", b"MAIL FROM:<proto@proto.example>\x00"):
            with self.subTest(line=line):
                self.assertReply(c.cmd(line), 500, "5.5.2", conn=c)
        # nothing was executed: no transaction was started
        self.assertReply(c.cmd("RCPT TO:<a@dest.example>"), 503, "5.5.1", conn=c)

    def test_nul_in_data_refused(self):
        c = self.session()
        before = self.redis.msgs_count()
        stat = self.redis.hgetall("pst:stat").get("messages_received_total")
        self.transaction(c)
        c.send(self.msg(body=b"before\r\nnul \x00 here\r\nafter\r\n") + b".\r\n")
        self.assertReply(c.read_reply(), 550, "5.6.0", conn=c)
        self.assertEqual(self.redis.msgs_count(), before, "nothing may be queued")
        self.assertEqual(self.redis.hgetall("pst:stat").get("messages_received_total"), stat)
        self.assertReply(c.cmd("NOOP"), 250, conn=c)

    def test_long_lines_in_data(self):
        c = self.session()
        for n, want in ((998, 250), (999, 550), (1000, 550), (5000, 550)):
            with self.subTest(octets_before_crlf=n):
                before = self.redis.msgs_count()
                self.transaction(c)
                c.send(self.msg(body=b"short\r\n" + b"L" * n + b"\r\nend\r\n") + b".\r\n")
                r = c.read_reply()
                if want == 250:
                    qid = self.assertQueued(r, conn=c)
                    body = self.redis.cmd("GET", f"pst:body:{qid}")
                    self.assertIn(b"\r\n" + b"L" * n + b"\r\n", body)
                else:
                    self.assertReply(r, 550, "5.6.0", conn=c)
                    self.assertEqual(self.redis.msgs_count(), before)

    def test_auth_cancel_and_bad_responses(self):
        c = self.conn(self.postino.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.cmd("AUTH PLAIN"), 334, conn=c)
        self.assertReply(c.cmd("*"), 501, "5.0.0", conn=c)
        self.assertReply(c.cmd("AUTH PLAIN not-base64!"), 501, "5.5.2", conn=c)
        self.assertReply(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4", conn=c)
        self.assertReply(c.cmd("AUTH LOGIN"), 334, conn=c)
        self.assertReply(c.cmd("*"), 501, "5.0.0", conn=c)
        self.assertReply(c.auth_plain(USER, PW), 235, "2.7.0", conn=c)

    def test_smtputf8(self):
        c = self.session()
        rcpt = "usér@dést.example"
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        self.assertReply(c.cmd(f"RCPT TO:<{rcpt}>".encode()), 553, "5.6.7", conn=c)
        self.assertReply(c.cmd("RSET"), 250, conn=c)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SMTPUTF8"), 250, conn=c)
        self.assertReply(c.cmd(f"RCPT TO:<{rcpt}>".encode()), 250, "2.1.5", conn=c)
        msg = self.msg(subject="ütf8", to=rcpt)
        r354, final = c.data(msg)
        qid = self.assertQueued(final, conn=c)
        self.assertEqual(self.redis.hgetall(f"pst:msg:{qid}").get("utf8"), b"1")
        received, rest = split_received(self.redis.cmd("GET", f"pst:body:{qid}"))
        self.assertIn(b"with UTF8SMTPA", received)
        self.assertEqual(rest, msg)


if __name__ == "__main__":
    unittest.main()
