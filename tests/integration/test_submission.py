"""Authenticated submission end to end: swaks and smtplib over STARTTLS (both submission ports)
and implicit TLS, AUTH PLAIN and LOGIN, what Redis holds afterwards (body byte for byte after
Postino's Received: header, recipients, schedule), sender checks, postinoctl users and queue.

One redis-server and one postino (default session settings: no AUTH in cleartext) are shared
by the class."""
import email.utils
import os
import re
import smtplib
import threading
import unittest

from harness import (HOST, HOSTNAME, SWAKS, Reply, SharedPostinoTestCase, b64,
                     client_tls_context, dot_stuff, make_message, plain_response, queue_id,
                     run_swaks, split_received)

ALICE, ALICE_PW = "alice", "alice-secret-1"
BOB, BOB_PW = "bob", "bob-secret-12"
CAROL, CAROL_PW = "carol", "carol-secret-1"  # --only-net 10.0.0.0/8


class SubmissionTest(SharedPostinoTestCase):
    postino_settings = dict(auth_max_failures_ip=1000)
    postino_users = ((ALICE, ["example.com", "Example.NET"], ALICE_PW),
                     (BOB, ["bob.test"], BOB_PW),
                     (CAROL, ["carol.test"], CAROL_PW, dict(only_net=["10.0.0.0/8"])))

    def setUp(self):
        # AUTH failures of earlier tests must not slow down (growing delays) or lock this one
        self.redis.clear_auth_failures()

    # ---- helpers

    def stored_body(self, qid):
        body = self.redis.cmd("GET", f"pst:body:{qid}")
        self.assertIsNotNone(body, f"got no pst:body:{qid} in Redis, want the message")
        return body

    def assert_stored(self, qid, sent, with_kw="ESMTPSA", rcpt=None, helo=None):
        """The stored body is Postino's Received: header naming qid, then sent byte for byte."""
        body = self.stored_body(qid)
        received, rest = split_received(body)
        self.assertIsNotNone(received, f"stored body does not start with Received:, got "
                                       f"{body[:200]!r}")
        rtext = received.decode(errors="replace")
        self.assertIn(f" id {qid}", rtext, f"Received: header {rtext!r} does not name the id")
        self.assertIn(f"by {HOSTNAME} (Postino) with {with_kw} id {qid}", rtext,
                      f"Received: got {rtext!r}, want 'by {HOSTNAME} (Postino) with {with_kw}'")
        self.assertIn("([127.0.0.1])", rtext)
        if helo is not None:
            self.assertTrue(rtext.startswith(f"Received: from {helo} "),
                            f"Received: got {rtext!r}, want from {helo}")
        if rcpt is not None:
            self.assertIn(f"for <{rcpt}>;", rtext)
        self.assertEqual(rest, sent, f"stored message after Received:\ngot  {rest!r}\n"
                                     f"want {sent!r}")
        info = self.redis.hgetall(f"pst:msg:{qid}")
        self.assertEqual(info.get("size"), str(len(body)).encode(),
                         f"pst:msg:{qid} size: got {info.get('size')}, want {len(body)}")
        return received

    def swaks(self, port, tls_flag, mech, message, rcpt="bob@dest.example"):
        path = os.path.join(self.postino.dir, f"msg-{self.id().rsplit('.', 1)[1]}.eml")
        with open(path, "wb") as f:
            f.write(message)
        p = run_swaks(["--server", HOST, "--port", str(port), tls_flag, "--auth", mech,
                       "--auth-user", ALICE, "--auth-password", ALICE_PW,
                       "--from", "alice@example.com", "--to", rcpt, "--helo", "swaks.example",
                       "--data", "@" + path, "--timeout", "20"])
        out = p.stdout + p.stderr
        m = re.search(r"^<~  (250 2\.0\.0 Ok: queued as [0-9a-f]{16})$", out, re.M)
        self.assertEqual(p.returncode, 0, f"swaks exit: got {p.returncode}, want 0\n{out}")
        self.assertIsNotNone(m, f"swaks: want '<~  250 2.0.0 Ok: queued as <16 hex>', got:\n{out}")
        return queue_id(m.group(1))

    def smtplib_session(self, port, implicit):
        if implicit:
            s = smtplib.SMTP_SSL(HOST, port, timeout=20, context=client_tls_context(),
                                 local_hostname="smtplib.example")
        else:
            s = smtplib.SMTP(HOST, port, timeout=20, local_hostname="smtplib.example")
        self.addCleanup(s.close)
        if not implicit:
            code, text = s.ehlo()
            self.assertEqual(code, 250, text)
            self.assertTrue(s.has_extn("starttls"), f"EHLO in cleartext: want STARTTLS, got "
                                                    f"{s.esmtp_features}")
            code, text = s.starttls(context=client_tls_context())
            self.assertEqual(code, 220, text)
        code, text = s.ehlo()
        self.assertEqual(code, 250, text)
        self.assertFalse(s.has_extn("starttls"), f"EHLO inside TLS: want no STARTTLS, got "
                                                 f"{s.esmtp_features}")
        self.assertEqual(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"],
                         f"EHLO inside TLS: features {s.esmtp_features}")
        return s

    def smtplib_submit(self, port, implicit, mech, message, rcpts=("bob@dest.example",)):
        s = self.smtplib_session(port, implicit)
        s.user, s.password = ALICE, ALICE_PW
        auth = s.auth_plain if mech == "PLAIN" else s.auth_login
        code, text = s.auth(mech, auth, initial_response_ok=(mech == "PLAIN"))
        self.assertTrue(code == 235 and text.startswith(b"2.7.0 "),
                        f"AUTH {mech}: got {code} {text!r}, want 235 2.7.0")
        code, text = s.mail("alice@example.com")
        self.assertEqual(code, 250, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            self.assertEqual(code, 250, text)
        code, text = s.data(message)
        reply = Reply(b"%d %s\r\n" % (code, text))
        qid = self.assertQueued(reply)
        s.quit()
        return qid

    # ---- the four clients x two mechanisms

    @unittest.skipUnless(SWAKS, "swaks is not installed")
    def test_swaks_starttls_first_port_auth_plain(self):
        msg = make_message(subject="swaks plain", body=b"hello from swaks")
        qid = self.swaks(self.postino.submission_ports[0], "--tls", "PLAIN", msg)
        # swaks always sends CRLF before the final ".": it belongs to the message
        self.assert_stored(qid, msg + b"\r\n", "ESMTPSA", "bob@dest.example", "swaks.example")

    @unittest.skipUnless(SWAKS, "swaks is not installed")
    def test_swaks_starttls_first_port_auth_login(self):
        msg = make_message(subject="swaks login", body=b"hello from swaks, LOGIN")
        qid = self.swaks(self.postino.submission_ports[0], "--tls", "LOGIN", msg)
        self.assert_stored(qid, msg + b"\r\n", "ESMTPSA", "bob@dest.example", "swaks.example")

    @unittest.skipUnless(SWAKS, "swaks is not installed")
    def test_swaks_implicit_tls_auth_plain(self):
        msg = make_message(subject="swaks tlsc plain", body=b"implicit TLS")
        qid = self.swaks(self.postino.smtps_port, "--tlsc", "PLAIN", msg)
        self.assert_stored(qid, msg + b"\r\n", "ESMTPSA", "bob@dest.example", "swaks.example")

    @unittest.skipUnless(SWAKS, "swaks is not installed")
    def test_swaks_implicit_tls_auth_login(self):
        msg = make_message(subject="swaks tlsc login", body=b"implicit TLS, LOGIN")
        qid = self.swaks(self.postino.smtps_port, "--tlsc", "LOGIN", msg)
        self.assert_stored(qid, msg + b"\r\n", "ESMTPSA", "bob@dest.example", "swaks.example")

    def test_smtplib_starttls_second_port_auth_plain(self):
        msg = make_message(subject="smtplib plain")
        qid = self.smtplib_submit(self.postino.submission_ports[1], False, "PLAIN", msg)
        self.assert_stored(qid, msg, "ESMTPSA", "bob@dest.example", "smtplib.example")

    def test_smtplib_starttls_second_port_auth_login(self):
        msg = make_message(subject="smtplib login")
        qid = self.smtplib_submit(self.postino.submission_ports[1], False, "LOGIN", msg)
        self.assert_stored(qid, msg, "ESMTPSA", "bob@dest.example", "smtplib.example")

    def test_smtplib_implicit_tls_auth_plain(self):
        msg = make_message(subject="smtps plain")
        qid = self.smtplib_submit(self.postino.smtps_port, True, "PLAIN", msg)
        self.assert_stored(qid, msg, "ESMTPSA", "bob@dest.example", "smtplib.example")

    def test_smtplib_implicit_tls_auth_login(self):
        msg = make_message(subject="smtps login")
        qid = self.smtplib_submit(self.postino.smtps_port, True, "LOGIN", msg)
        self.assert_stored(qid, msg, "ESMTPSA", "bob@dest.example", "smtplib.example")

    def test_auth_login_with_initial_response(self):
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        r = c.cmd(f"AUTH LOGIN {b64(ALICE)}")
        self.assertReply(r, 334, conn=c, text="UGFzc3dvcmQ6")
        self.assertReply(c.cmd(b64(ALICE_PW)), 235, "2.7.0", conn=c)

    def test_auth_plain_without_initial_response(self):
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        r = c.cmd("AUTH PLAIN")
        self.assertEqual(r.raw, b"334 \r\n", f"got {r.raw!r}, want b'334 \\r\\n'")
        self.assertReply(c.cmd(plain_response(ALICE, ALICE_PW)), 235, "2.7.0", conn=c)

    # ---- the stored message

    def test_stored_body_is_received_header_then_message_exactly(self):
        msg = make_message(subject="exact", body=b"one\r\ntwo  \r\n\tthree\r\n\r\nend\r\n")
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", ["rcpt@dest.example"], msg)
        received = self.assert_stored(qid, msg, "ESMTPSA", "rcpt@dest.example", "client.example")
        self.assertRegex(received.decode(), r"\(TLSv1\.[23] [A-Z0-9_-]+\)",
                         "Received: should record the TLS version and cipher")
        date = received.decode().rsplit(";", 1)[1].strip()
        self.assertIsNotNone(email.utils.parsedate_to_datetime(date),
                             f"Received: date {date!r} is not an RFC 5322 date")

    def test_message_id_and_date_added_when_missing(self):
        msg = make_message(subject="no id no date", message_id=False, date=False)
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", ["rcpt@dest.example"], msg)
        _, rest = split_received(self.stored_body(qid))
        m = re.match(rb"Message-ID: <([^<>@\s]+@[^<>@\s]+)>\r\nDate: ([^\r\n]+)\r\n", rest)
        self.assertIsNotNone(m, f"want Message-ID: and Date: added after Received:, got "
                                f"{rest[:300]!r}")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(m.group(2).decode()),
                             f"added Date: {m.group(2)!r} is not an RFC 5322 date")
        self.assertEqual(rest[m.end():], msg, "the message after the added fields must be "
                                              "exactly what was sent")

    def test_only_the_missing_field_is_added(self):
        for has_id, has_date in ((True, False), (False, True)):
            with self.subTest(message_id=has_id, date=has_date):
                msg = make_message(subject="one missing", message_id=has_id, date=has_date)
                c = self.login(self.postino.port, ALICE, ALICE_PW)
                qid = self.submit(c, "alice@example.com", ["rcpt@dest.example"], msg)
                _, rest = split_received(self.stored_body(qid))
                added = rest[:len(rest) - len(msg)]
                self.assertEqual(rest[len(added):], msg)
                want = b"Date: " if has_id else b"Message-ID: <"
                self.assertTrue(added.startswith(want) and added.count(b"\r\n") == 1,
                                f"added fields: got {added!r}, want one {want!r} line")

    def test_message_id_and_date_not_added_when_present_in_other_case(self):
        msg = (b"FROM: alice@example.com\r\nTo: x@dest.example\r\nmessage-id: <a@b.example>\r\n"
               b"DATE: Mon, 02 Nov 2026 10:00:00 +0000\r\nSubject: case\r\n\r\nbody\r\n")
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", ["x@dest.example"], msg)
        self.assert_stored(qid, msg)

    def test_8bit_and_dot_lines_survive_exactly_raw(self):
        body = (b"caf\xc3\xa9 \xff\xfe\x80\x7f binary-ish\r\n"
                b".\r\n"
                b"..\r\n"
                b".leading dot\r\n"
                b"..two leading dots\r\n"
                b" .space then dot\r\n"
                b"\tindented\r\n"
                b"trailing spaces   \r\n"
                b"\r\n"
                b"." + b"x" * 900 + b"\r\n"
                b"last line\r\n")
        msg = make_message(subject="8bit", body=body)
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", ["rcpt@dest.example"], msg,
                          mail_params=" BODY=8BITMIME")
        self.assert_stored(qid, msg)
        info = self.redis.hgetall(f"pst:msg:{qid}")
        self.assertEqual(info.get("8bit"), b"1", f"pst:msg:{qid} 8bit: got {info}")

    def test_8bit_and_dot_lines_survive_exactly_smtplib(self):
        body = b".\r\n..\r\n.x\r\n\xe2\x82\xac \xa0\xff\r\n.\r\nend\r\n"
        msg = make_message(subject="8bit smtplib", body=body)
        qid = self.smtplib_submit(self.postino.smtps_port, True, "PLAIN", msg)
        self.assert_stored(qid, msg)

    def test_large_message_exactly(self):
        lines = [(f"{i:07d} " + "abcdefghij" * 9 + "\xe9").encode("latin-1") + b"\r\n"
                 for i in range(30000)]
        body = b"".join(lines)  # about 3 MB, under the default 25M limit
        msg = make_message(subject="large", body=body)
        c = self.login(self.postino.smtps_port, ALICE, ALICE_PW, tls="implicit")
        c.timeout = 60
        qid = self.submit(c, "alice@example.com", ["big@dest.example"], msg)
        self.assert_stored(qid, msg)
        info = self.redis.hgetall(f"pst:msg:{qid}")
        self.assertGreaterEqual(int(info["size"]), len(msg), f"pst:msg size: got {info}")

    def test_concurrent_sessions(self):
        """Eight clients at once, five messages each, over STARTTLS and implicit TLS: every
        message is queued once, under its own id, byte for byte."""
        results, errors = {}, []
        lock = threading.Lock()

        def client(n):
            try:
                if n % 2:
                    s = smtplib.SMTP_SSL(HOST, self.postino.smtps_port, timeout=30,
                                         context=client_tls_context())
                else:
                    s = smtplib.SMTP(HOST, self.postino.submission_ports[n % 4 // 2], timeout=30)
                    s.starttls(context=client_tls_context())
                try:
                    s.login(ALICE, ALICE_PW)
                    for k in range(5):
                        msg = make_message(subject=f"client {n} message {k}",
                                           body=f"body {n}/{k}\r\n".encode())
                        s.mail("alice@example.com")
                        s.rcpt(f"c{n}@dest.example")
                        code, text = s.data(msg)
                        with lock:
                            results[(n, k)] = (code, text.decode(errors="replace"), msg)
                    s.quit()
                finally:
                    s.close()
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                with lock:
                    errors.append(f"client {n}: {e!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running after 120 s")
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 40)
        ids = set()
        for key, (code, text, msg) in sorted(results.items()):
            qid = self.assertQueued(Reply(b"%d %s\r\n" % (code, text.encode())))
            ids.add(qid)
            self.assert_stored(qid, msg, rcpt=f"c{key[0]}@dest.example")
        self.assertEqual(len(ids), 40, "every message gets its own id")

    # ---- what Redis holds

    def test_redis_records_message_recipients_and_schedule(self):
        msg = make_message(subject="records")
        rcpts = ["one@dest.example", "two@DEST.example", "three@other.example"]
        before = self.redis.hgetall("pst:stat")
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", rcpts, msg)
        body = self.stored_body(qid)
        received, _ = split_received(body)
        self.assertNotIn(b"for <", received, "Received: names no recipient when there are "
                                             "several")
        info = self.redis.hgetall(f"pst:msg:{qid}")
        want = {"sender": b"alice@example.com", "user": b"alice", "client": b"127.0.0.1",
                "helo": b"client.example", "rcpts": b"3", "open": b"3"}
        got = {k: info.get(k) for k in want}
        self.assertEqual(got, want, f"pst:msg:{qid}: got {info}")
        rc = self.redis.hgetall(f"pst:rcpt:{qid}")
        self.assertEqual(sorted(rc), ["0", "1", "2"], f"pst:rcpt:{qid}: got {rc}")
        for i, addr in enumerate(rcpts):
            m = re.match(rb"^queued 0 (\d+) (.+)$", rc[str(i)])
            self.assertIsNotNone(m, f"pst:rcpt:{qid} {i}: got {rc[str(i)]!r}, "
                                    f"want 'queued 0 <ms> {addr}'")
            self.assertEqual(m.group(2).decode(), addr)
        sched = self.redis.cmd("ZRANGE", "pst:sched", "0", "-1")
        mine = sorted(x.decode() for x in sched if x.startswith(qid.encode()))
        self.assertEqual(mine, [f"{qid}:dest.example", f"{qid}:other.example"],
                         "pst:sched: one entry per recipient domain (lowercased)")
        self.assertIsNotNone(self.redis.cmd("ZSCORE", "pst:msgs", qid), "pst:msgs lacks the id")
        after = self.redis.hgetall("pst:stat")
        self.assertEqual(int(after["messages_received_total"]) -
                         int(before.get("messages_received_total", 0)), 1)
        self.assertEqual(int(after["recipients_received_total"]) -
                         int(before.get("recipients_received_total", 0)), 3)

    def test_thousand_recipients(self):
        """max_recipients defaults to 1000: all of them are stored, one schedule entry per
        domain; the 1001st gets 452 4.5.3."""
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.com>"), 250, conn=c)
        rcpts = [f"r{i}@d{i % 600}.example" for i in range(1000)]
        c.send("".join(f"RCPT TO:<{r}>\r\n" for r in rcpts).encode() +
               b"RCPT TO:<one-too-many@dest.example>\r\n")
        got = [c.read_reply() for _ in range(1001)]
        self.assertEqual(sum(1 for r in got[:1000] if r.last == "250 2.1.5 Ok"), 1000)
        self.assertReply(got[1000], 452, "4.5.3", conn=c)
        r354, final = c.data(dot_stuff(make_message(subject="many")))
        qid = self.assertQueued(final, conn=c)
        rc = self.redis.hgetall(f"pst:rcpt:{qid}")
        self.assertEqual(len(rc), 1000)
        self.assertEqual([rc[str(i)].split(b" ", 3)[3].decode() for i in range(1000)], rcpts)
        sched = [x for x in self.redis.cmd("ZRANGE", "pst:sched", "0", "-1")
                 if x.startswith(qid.encode() + b":")]
        self.assertEqual(len(sched), 600, "one pst:sched entry per recipient domain")
        info = self.redis.hgetall(f"pst:msg:{qid}")
        self.assertEqual((info.get("rcpts"), info.get("open")), (b"1000", b"1000"))

    def test_queue_show_and_cat(self):
        msg = make_message(subject="queue show")
        rcpts = ["first@dest.example", "second@dest.example"]
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        qid = self.submit(c, "alice@example.com", rcpts, msg)
        c2 = self.login(self.postino.port, ALICE, ALICE_PW)
        quoted = '"john smith"@dest.example'
        qid2 = self.submit(c2, "alice@example.com", [quoted], msg)
        self.assertEqual(self.redis.hgetall(f"pst:rcpt:{qid2}")["0"].split(b" ", 3)[3],
                         quoted.encode(), "a quoted local part with a space is kept whole")
        p = self.postino.ctl("queue", "show", "--limit", "100000")
        self.assertEqual(p.returncode, 0, f"queue show: {p.stderr}")
        lines = p.stdout.splitlines()
        idx = [i for i, ln in enumerate(lines) if ln.startswith(qid + " ")]
        self.assertEqual(len(idx), 1, f"queue show: want one line for {qid}, got:\n{p.stdout}")
        head = lines[idx[0]]
        self.assertRegex(head, rf"^{qid} received=\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ user=alice "
                               rf"from=alice@example\.com size=\d+ rcpts=2$")
        for k, addr in enumerate(rcpts):
            self.assertRegex(lines[idx[0] + 1 + k],
                             rf"^  {re.escape(addr)} state=queued attempts=0 next=\S+$")
        self.assertRegex(lines[-1], r"^messages=\d+ recipients=\d+$")
        i2 = lines.index(next(ln for ln in lines if ln.startswith(qid2 + " ")))
        self.assertRegex(lines[i2 + 1], rf"^  {re.escape(quoted)} state=queued attempts=0 ")
        p = self.postino.ctl("queue", "cat", qid, binary=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, self.stored_body(qid), "queue cat prints the stored body")

    # ---- refusals

    def test_wrong_password_and_unknown_user_get_the_same_535(self):
        replies = []
        for user, pw in ((ALICE, "wrong-password"), ("nosuchuser", "whatever-pass")):
            c = self.conn(self.postino.smtps_port, tls=True)
            self.assertReply(c.ehlo(), 250, conn=c)
            r = c.auth_plain(user, pw)
            self.assertReply(r, 535, "5.7.8", conn=c)
            replies.append(r.raw)
            # the session goes on: a right password still works afterwards
            self.assertReply(c.auth_plain(BOB, BOB_PW), 235, "2.7.0", conn=c)
        self.assertEqual(replies[0], replies[1], "unknown user and wrong password must not be "
                                                 "told apart")

    def test_wrong_password_auth_login(self):
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_login(ALICE, "not-the-password"), 535, "5.7.8", conn=c)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0", conn=c)

    def test_only_net_user_cannot_auth_from_elsewhere(self):
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(CAROL, CAROL_PW), 535, "5.7.8", conn=c)

    def test_mail_from_domain_not_owned(self):
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        for sender in ("alice@bob.test", "alice@sub.example.com", "alice@example.co"):
            with self.subTest(sender=sender):
                self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 553, "5.7.1", conn=c)
        # domains are compared without case, and every owned domain works
        self.assertReply(c.cmd("MAIL FROM:<alice@EXAMPLE.net>"), 250, "2.1.0", conn=c)

    def test_null_sender_refused(self):
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        self.assertReply(c.cmd("MAIL FROM:<>"), 553, "5.7.1", conn=c)

    def _data_refused(self, message, code, enhanced, sender="alice@example.com"):
        before = self.redis.msgs_count()
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@dest.example>"), 250, conn=c)
        r354, final = c.data(dot_stuff(message))
        self.assertReply(r354, 354, conn=c)
        self.assertReply(final, code, enhanced, conn=c)
        self.assertEqual(self.redis.msgs_count(), before, "a refused message must not be queued")
        # the session stays usable
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)
        return final

    def test_from_header_domain_not_owned(self):
        self._data_refused(make_message(from_addr="alice@bob.test"), 550, "5.7.1")

    def test_from_header_missing(self):
        self._data_refused(make_message(from_addr=None), 550, "5.6.0")

    def test_two_from_headers(self):
        msg = make_message(extra_headers=["From: <alice@example.com>"])
        self._data_refused(msg, 550, "5.6.0")

    def test_from_with_two_addresses_needs_sender(self):
        msg = (b"From: alice@example.com, other@example.com\r\nTo: x@dest.example\r\n"
               b"Subject: two\r\n\r\nbody\r\n")
        self._data_refused(msg, 550, "5.6.0")
        c = self.login(self.postino.port, ALICE, ALICE_PW)
        msg2 = (b"From: alice@example.com, other@example.com\r\nSender: alice@example.com\r\n"
                b"To: x@dest.example\r\nSubject: two\r\n\r\nbody\r\n")
        self.submit(c, "alice@example.com", ["x@dest.example"], msg2)

    def test_sender_header_domain_not_owned(self):
        msg = make_message(extra_headers=["Sender: <someone@bob.test>"])
        self._data_refused(msg, 550, "5.7.1")

    def test_mail_without_auth_inside_tls(self):
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0", conn=c)

    def test_no_auth_in_cleartext(self):
        c = self.conn(self.postino.port)
        r = c.ehlo()
        self.assertReply(r, 250, conn=c)
        self.assertFalse(any(t.upper().startswith("AUTH") for t in r.texts),
                         f"EHLO in cleartext (auth_cleartext_loopback = no): got {r}, want no AUTH")
        self.assertIn("STARTTLS", r.texts)
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 538, "5.7.11", conn=c)
        self.assertReply(c.cmd("AUTH LOGIN"), 538, "5.7.11", conn=c)
        self.assertReply(c.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0", conn=c)

    def test_starttls_starts_the_session_over(self):
        c = self.conn(self.postino.port)
        self.assertReply(c.ehlo(), 250, conn=c)
        c.starttls()
        # no greeting after STARTTLS, and the client must say EHLO again
        self.assertReply(c.cmd("MAIL FROM:<alice@example.com>"), 503, "5.5.1", conn=c)
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 503, "5.5.1", conn=c)
        r = c.ehlo("again.example")
        self.assertReply(r, 250, conn=c)
        self.assertNotIn("STARTTLS", r.texts, f"EHLO inside TLS: got {r}, want no STARTTLS")
        self.assertIn("AUTH PLAIN LOGIN", r.texts, f"EHLO inside TLS: got {r}, want AUTH")
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", conn=c)
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 235, "2.7.0", conn=c)
        qid = self.submit(c, "alice@example.com", ["x@dest.example"], make_message())
        received, _ = split_received(self.stored_body(qid))
        self.assertTrue(received.startswith(b"Received: from again.example "),
                        f"Received: should name the EHLO given after STARTTLS, got {received!r}")

    def test_second_auth_in_a_session_refused(self):
        c = self.login(self.postino.smtps_port, ALICE, ALICE_PW, tls="implicit")
        self.assertReply(c.auth_plain(ALICE, ALICE_PW), 503, "5.5.1", conn=c)

    # ---- users through postinoctl

    def test_postinoctl_user_lifecycle(self):
        name = "dave"
        pw = self.postino.add_user(name, ["dave.example"])  # generated password
        self.assertRegex(pw, r"^[A-Za-z0-9]{12,}$", "generated password")
        p = self.postino.ctl("user", "list", check=True)
        self.assertRegex(p.stdout, r"(?m)^dave domains=dave\.example allow_nets= only_nets=$",
                         f"user list: got {p.stdout!r}")
        self.assertRegex(p.stdout, r"(?m)^alice domains=example\.com,example\.net allow_nets= "
                                   r"only_nets=$", f"user list: got {p.stdout!r}")
        self.assertRegex(p.stdout, r"(?m)^carol domains=carol\.test allow_nets= "
                                   r"only_nets=10\.0\.0\.0/8$", f"user list: got {p.stdout!r}")
        names = [ln.split()[0] for ln in p.stdout.splitlines() if ln.strip()]
        self.assertEqual(names, sorted(names), "user list is sorted by name")
        p = self.postino.ctl("user", "add", name, "--domain", "dave.example",
                             "--password", "another-one")
        self.assertEqual(p.returncode, 1, f"adding an existing user: got {p.returncode} "
                                          f"{p.stderr!r}, want 1")
        c = self.login(self.postino.smtps_port, name, pw, tls="implicit")
        self.submit(c, "dave@dave.example", ["x@dest.example"],
                    make_message(from_addr="dave@dave.example"))
        c.close()
        r = self.postino.ctl("user", "passwd", name, check=True)  # a generated password
        m = re.search(r"password: (\S+)", r.stdout)
        self.assertIsNotNone(m, f"user passwd without --password: got {r.stdout!r}")
        c = self.login(self.postino.smtps_port, name, m.group(1), tls="implicit")
        c.close()
        self.postino.ctl("user", "passwd", name, "--password", "new-password-1", check=True)
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(name, pw), 535, "5.7.8", conn=c)
        self.assertReply(c.auth_plain(name, "new-password-1"), 235, "2.7.0", conn=c)
        c.close()
        p = self.postino.ctl("user", "del", name, check=True)
        self.assertIn("deleted", p.stdout)
        p = self.postino.ctl("user", "list", check=True)
        self.assertNotRegex(p.stdout, r"(?m)^dave ", "user list after del")
        c = self.conn(self.postino.smtps_port, tls=True)
        self.assertReply(c.ehlo(), 250, conn=c)
        self.assertReply(c.auth_plain(name, "new-password-1"), 535, "5.7.8", conn=c)
        p = self.postino.ctl("user", "del", name)
        self.assertEqual(p.returncode, 1, f"deleting a missing user: got {p.returncode}")

    def test_postinoctl_refuses_bad_input(self):
        cases = [
            (["user", "add", "eve"], 2),                                   # no --domain
            (["user", "add", "eve", "--domain", "bad domain"], 2),
            (["user", "add", "eve", "--domain", "e.example", "--password", "short"], 2),
            (["user", "add", "eve", "--domain", "e.example", "--allow-net", "10.0.0.0/99"], 2),
            (["user", "add", "e/ve", "--domain", "e.example"], 2),
            (["frobnicate"], 2),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                p = self.postino.ctl(*args)
                self.assertEqual(p.returncode, want, f"postinoctl {args}: got {p.returncode} "
                                                     f"({p.stderr.strip()!r}), want {want}")
        self.assertEqual(self.redis.cmd("EXISTS", "pst:user:eve"), 0, "no user may be written")


if __name__ == "__main__":
    unittest.main()
