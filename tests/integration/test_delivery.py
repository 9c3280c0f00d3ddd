"""Outbound delivery (issue 4), end to end on loopback: real postino workers lease from a real
redis-server, look up MX records in a real dnsmasq, and deliver to real SMTP sinks
(tests/tools/smtpsink) on 127.0.0.x addresses. Static routes and the test DNS server are the
only ways out: nothing is ever sent beyond loopback.

What each test shows is in its docstring. Times: retries and expiry are configured in seconds;
the promoter polls every second, so time checks allow that much slack and no less.
"""
import os
import re
import signal
import time
import unittest

from harness import (HOST, Dnsmasq, PostinoTestCase, Sink, free_port, make_message,
                     wait_for)

USER, PW = "alice", "alice-delivery-pw-1"
SENDER = "alice@example.com"
QID_RE = re.compile(rb"\(Postino\) with \S+ id ([0-9a-f]{16})")


def qid_of(delivered):
    m = QID_RE.search(delivered)
    return m.group(1).decode() if m else None


def events(redis):
    """pst:events as a list of dicts (stream order)."""
    out = []
    for _id, fields in redis.cmd("XRANGE", "pst:events", "-", "+") or []:
        f = [x.decode() if isinstance(x, bytes) else x for x in fields]
        out.append(dict(zip(f[0::2], f[1::2])))
    return out


def events_for(redis, qid, rcpt=None):
    """The delivery events of a message (its "received" events left out)."""
    return [e for e in events(redis) if e.get("id") == qid and e["type"] != "received" and
            (rcpt is None or e.get("rcpt") == rcpt)]


class DeliveryTestCase(PostinoTestCase):
    """Helpers: a redis-server per test, sinks and postinos stopped by pid at the end."""

    def setUp(self):
        self.redis = self.dedicated_redis()

    def sink(self, host=HOST, port=0, args=(), tls=False):
        s = Sink(host=host, port=port, args=args, tls=tls)
        self.addCleanup(s.cleanup)
        return s.start()

    def relay(self, **settings):
        base = {"delivery": "yes", "retry_jitter": 0, "outbound_idle_timeout": 1,
                "log_level": "info"}
        base.update(settings)
        p = self.dedicated_postino(redis=self.redis, **base)
        p.add_user(USER, ["example.com"], PW)
        return p

    def send(self, postino, rcpts, subject="delivery test", extra_headers=(), count=1):
        """Submits count messages from SENDER to rcpts over one session; returns
        [(queue id, submitted message bytes)]."""
        c = self.login(postino.port, USER, PW)
        out = []
        for i in range(count):
            m = make_message(from_addr=SENDER, to=rcpts[0], subject=f"{subject} {i}",
                             extra_headers=extra_headers,
                             body=f"Line one of message {i}.\r\n.dot line\r\nlast\r\n")
            out.append((self.submit(c, SENDER, rcpts, m), m))
        c.cmd("QUIT")
        return out

    def wait_gone(self, qids, timeout):
        """Waits until every message of qids is final (its keys removed)."""
        def gone():
            return all(self.redis.cmd("EXISTS", f"pst:msg:{q}") == 0 for q in qids)
        wait_for(gone, timeout, what=f"messages {qids} to reach a final state")

    def assertQueueEmpty(self):
        """No message, body, recipient, entry, lease or ready queue is left in Redis."""
        left = []
        for pattern in ("pst:msg:*", "pst:body:*", "pst:rcpt:*", "pst:ready:*", "pst:wait:*"):
            left += [k.decode() for k in self.redis.cmd("KEYS", pattern)]
        for key in ("pst:sched", "pst:leases", "pst:msgs", "pst:held"):
            n = self.redis.cmd("ZCARD", key)
            if n:
                left.append(f"{key} ({n})")
        n = self.redis.cmd("HLEN", "pst:lease")
        if n:
            left.append(f"pst:lease ({n})")
        self.assertEqual(left, [], "got keys left in Redis, want none once all is final")
        stat = self.redis.hgetall("pst:stat")
        self.assertEqual((stat.get("messages_queued"), stat.get("recipients_queued")),
                         (b"0", b"0"), f"pst:stat: got {stat}")


class RoutedDeliveryTest(DeliveryTestCase):

    def test_several_domains_and_sites_byte_exact_signed_then_removed(self):
        """Three messages to three domains on two sinks (two domains share a route, so one
        site): each sink gets the recipients of its domains with the right envelope, the
        message arrives exactly as submitted behind Postino's Received: and DKIM-Signature
        fields (X-Campaign-ID removed), both signatures verify, every recipient gets a
        delivered event with host, TLS version and campaign, and Redis is left empty."""
        from test_dkim import dkimpy_python, parse_records, run_verifiers
        dkimpy_python()
        s1 = self.sink(tls=True)
        s2 = self.sink()
        p = self.relay(workers=2, **{"route a.example": s1.address,
                                     "route b.example": s2.address,
                                     "route c.example": s2.address})
        keygen = p.ctl("dkim", "keygen", "example.com", check=True)
        records = parse_records(keygen.stdout)
        time.sleep(2.5)  # the workers reload keys every 2 s
        sent = self.send(p, ["x@a.example", "y@b.example"])
        sent += self.send(p, ["z@c.example", "w@a.example"])
        sent += self.send(p, ["v@b.example"], extra_headers=["X-Campaign-ID: spring-2026"])
        wait_for(lambda: s1.count() == 2 and s2.count() == 3, 20,
                 what="2 messages at sink 1 and 3 at sink 2")
        self.wait_gone([q for q, _ in sent], 10)
        submitted = {q: m for q, m in sent}
        want_env = {s1: {(sent[0][0], "x@a.example"), (sent[1][0], "w@a.example")},
                    s2: {(sent[0][0], "y@b.example"), (sent[1][0], "z@c.example"),
                         (sent[2][0], "v@b.example")}}
        for sink, want in want_env.items():
            got = set()
            for env, body, _t in sink.messages():
                q = qid_of(body)
                self.assertIn(q, submitted, f"delivered message without a known queue id: "
                                            f"{body[:300]!r}")
                self.assertTrue(env.startswith(f"MAIL FROM:<{SENDER}>"), f"envelope: {env!r}")
                for rc in re.findall(r"RCPT TO:<([^>]+)>", env):
                    got.add((q, rc))
                original = submitted[q].replace(b"X-Campaign-ID: spring-2026\r\n", b"")
                self.assertTrue(body.endswith(original),
                                f"got delivered message {body!r}, want it to end with the "
                                f"submitted one {original!r}")
                self.assertNotIn(b"X-Campaign-ID", body)
                py, _perl = run_verifiers(p.dir, body, records)
                results = [(s["a"], s["result"]) for s in py["signatures"]]
                self.assertEqual(results, [("rsa-sha256", "pass"), ("ed25519-sha256", "pass")],
                                 f"DKIM of the delivered message {q}: got {py['signatures']}")
            self.assertEqual(got, want, f"sink {sink.address}: got (id, rcpt) {got}, want {want}")
        delivered = [e for e in events(self.redis) if e["type"] == "delivered"]
        self.assertEqual(len(delivered), 5, f"delivered events: got {delivered}")
        by_rcpt = {e["rcpt"]: e for e in delivered}
        self.assertTrue(by_rcpt["x@a.example"]["tls"].startswith("TLSv1."),
                        f"TLS to sink 1: got event {by_rcpt['x@a.example']}")
        self.assertEqual(by_rcpt["y@b.example"]["tls"], "", "sink 2 offers no TLS")
        self.assertEqual(by_rcpt["v@b.example"]["campaign"], "spring-2026")
        self.assertTrue(by_rcpt["x@a.example"]["reply"].startswith("250 "))
        self.assertEqual(by_rcpt["x@a.example"]["host"], HOST)
        received = [e for e in events(self.redis) if e["type"] == "received"]
        self.assertEqual(sorted(e["rcpt"] for e in received), sorted(by_rcpt),
                         f"received events: {received}")
        # counters: minute, hour and day buckets agree, by all, user, domain and campaign
        for gran in ("m", "h", "d"):
            got = {}
            for key in self.redis.cmd("KEYS", f"pst:cnt:{gran}:*"):
                self.assertGreater(self.redis.cmd("TTL", key), 0, f"{key} has no expiry")
                for k, v in self.redis.hgetall(key.decode()).items():
                    got[k] = got.get(k, 0) + int(v)
            want = {"a|received": 5, "a|delivered": 5, f"u|delivered|{USER}": 5,
                    "d|delivered|a.example": 2, "d|delivered|b.example": 2,
                    "d|delivered|c.example": 1, "c|delivered|spring-2026": 1,
                    "c|received|spring-2026": 1}
            self.assertEqual({k: got.get(k) for k in want}, want,
                             f"pst:cnt:{gran}:* counters: got {got}")
        self.assertQueueEmpty()

    def test_retry_schedule_bounce_and_expiry(self):
        """One message to three recipients at one sink that accepts ok@, refuses reject@ (550
        5.1.1) and defers defer@ (450): ok@ is delivered, reject@ bounced at once, defer@ tried
        again after 1, 2, 2, ... s (retry_first 1, retry_max 2, no jitter) until max_queue_age
        (7 s), when it expires with 4.4.7; then the message is gone."""
        s = self.sink(args=["--rcpt-by-name"])
        p = self.relay(retry_first=1, retry_max=2, max_queue_age=7,
                       **{"route r.example": s.address})
        t0 = time.time()
        [(qid, _m)] = self.send(p, ["ok@r.example", "reject@r.example", "defer@r.example"])
        self.wait_gone([qid], 20)
        ev = events_for(self.redis, qid)
        kinds = {(e["rcpt"], e["type"]) for e in ev if e["type"] != "deferred"}
        self.assertEqual(kinds, {("ok@r.example", "delivered"), ("reject@r.example", "bounced"),
                                 ("defer@r.example", "expired")}, f"events: {ev}")
        bounced = [e for e in ev if e["type"] == "bounced"][0]
        self.assertTrue(bounced["reply"].startswith("550 5.1.1"), f"bounce: {bounced}")
        self.assertEqual(bounced.get("class"), "hard", f"bounce class: {bounced}")
        expired = [e for e in ev if e["type"] == "expired"][0]
        self.assertIn("4.4.7", expired["reply"])
        tries = [int(e["time"]) / 1000.0 for e in ev if e["rcpt"] == "defer@r.example"]
        gaps = [round(b - a, 2) for a, b in zip(tries, tries[1:])]
        want = [1] + [2] * (len(gaps) - 1)
        self.assertGreaterEqual(len(tries), 4, f"attempts of defer@: got times {tries}")
        for g, w in zip(gaps, want):
            self.assertTrue(w - 0.05 <= g <= w + 1.3,
                            f"gaps between attempts: got {gaps}, want about {want} "
                            "(+ up to 1 s of promotion poll)")
        age = tries[-1] - t0
        self.assertTrue(6.5 <= age <= 9.5, f"expired after {age:.1f} s, want about 7")
        self.assertEqual(s.stats()["messages"], 1)
        self.assertQueueEmpty()

    def test_site_down_defers_without_counting_an_attempt(self):
        """A route to a port where nothing listens: the site is marked down in Redis, the
        recipient deferred with the connection failure, and no attempt is counted."""
        port = free_port()
        p = self.relay(site_down_time=60, **{"route down.example": f"{HOST}:{port}"})
        [(qid, _m)] = self.send(p, ["x@down.example"])
        wait_for(lambda: events_for(self.redis, qid), 15, what="an event for the message")
        [e] = events_for(self.redis, qid)
        self.assertEqual(e["type"], "deferred", f"event: {e}")
        self.assertIn("4.4.1", e["reply"])
        self.assertEqual(e["attempt"], "0", f"attempts counted: got {e['attempt']}, want 0")
        ttl = self.redis.cmd("PTTL", f"pst:down:{HOST}:{port}")
        self.assertTrue(50000 < ttl <= 60000, f"pst:down TTL: got {ttl} ms, want about 60 s")
        state = self.redis.cmd("HGET", f"pst:rcpt:{qid}", "0").decode()
        self.assertTrue(state.startswith("deferred 0 "), f"recipient: got {state!r}")
        st = p.ctl("queue", "stats", check=True).stdout
        self.assertIn(f"{HOST}:{port}", st + self.redis.cmd("GET", f"pst:site:of:down.example")
                      .decode())


class SharedLimitsTest(DeliveryTestCase):

    def test_rate_holds_across_two_workers(self):
        """A site limited to 5 messages a second, two workers delivering 20 messages: in
        arrival order, any 6 consecutive messages span at least a second (50 ms slack for
        the trip from lease to sink), and all arrive."""
        s = self.sink()
        site = s.address
        p = self.relay(workers=2, **{"route rate.example": s.address,
                                     f"site {site}": "rate=5/s"})
        sent = self.send(p, ["r@rate.example"], count=10)
        sent += self.send(p, ["r@rate.example"], count=10)
        wait_for(lambda: s.count() == 20, 30, what="20 messages at the sink")
        times = sorted(t for _e, _b, t in s.messages())
        spans = [round(times[i + 5] - times[i], 3) for i in range(len(times) - 5)]
        self.assertTrue(all(x >= 0.95 for x in spans),
                        f"6 consecutive arrivals spanned {min(spans)} s at least, want >= 1 "
                        f"(5/s); spans {spans}")
        self.wait_gone([q for q, _ in sent], 10)

    def test_connection_cap_holds_across_two_workers(self):
        """A site capped at 2 connections, two workers, a slow sink and 30 messages: the sink
        never sees more than 2 connections at once, and every message arrives."""
        s = self.sink(args=["--delay-ms", "30"])
        p = self.relay(workers=2, **{"route cap.example": s.address,
                                     f"site {s.address}": "connections=2 messages=5"})
        sent = []
        for _ in range(3):
            sent += self.send(p, ["c@cap.example"], count=10)
        wait_for(lambda: s.count() == 30, 60, what="30 messages at the sink")
        st = s.stats()
        self.assertLessEqual(st["peak"], 2, f"sink tallies: {st}")
        self.assertGreaterEqual(st["sessions"], 6, f"5 messages per connection: {st}")
        self.wait_gone([q for q, _ in sent], 10)


class DnsDeliveryTest(DeliveryTestCase):
    """MX records from a real dnsmasq: sinks listen on one port on several 127.0.0.x
    addresses (outbound_port)."""

    def test_mx_preference_fallback_implicit_null_nxdomain_and_required_tls(self):
        port = free_port()
        mx1 = self.sink(host="127.0.0.2", port=port)
        mx2 = self.sink(host="127.0.0.3", port=port)
        implicit = self.sink(host="127.0.0.5", port=port)
        notls = self.sink(host="127.0.0.6", port=port, args=["--no-starttls"], tls=True)
        dns = Dnsmasq(local=["test"], extra=[
            "mx-host=pref.test,mx1.pref.test,10", "mx-host=pref.test,mx2.pref.test,20",
            "host-record=mx1.pref.test,127.0.0.2", "host-record=mx2.pref.test,127.0.0.3",
            "mx-host=fall.test,mx1.fall.test,10", "mx-host=fall.test,mx2.fall.test,20",
            "host-record=mx1.fall.test,127.0.0.4", "host-record=mx2.fall.test,127.0.0.3",
            "host-record=implicit.test,127.0.0.5",
            "dns-rr=null.test,15,000000",  # MX 0 "." (RFC 7505)
            "mx-host=tls.test,mx.tls.test,10", "host-record=mx.tls.test,127.0.0.6",
        ])
        dns.start()
        self.addCleanup(dns.stop)
        p = self.relay(dns_resolver=dns.address, outbound_port=port, retry_first=60,
                       **{"site mx.tls.test": "tls=required"})
        sent = {}
        for domain in ("pref", "fall", "implicit", "null", "nothere", "tls"):
            [(qid, _m)] = self.send(p, [f"u@{domain}.test"])
            sent[domain] = qid
        wait_for(lambda: all(events_for(self.redis, q) for q in sent.values()), 30,
                 what="an event for every message")
        got = {d: [(e["type"], e["reply"][:60]) for e in events_for(self.redis, q)]
               for d, q in sent.items()}
        for domain, sink in (("pref", mx1), ("fall", mx2), ("implicit", implicit)):
            self.assertEqual(got[domain][0][0], "delivered", f"{domain}.test: {got[domain]}")
            ids = [qid_of(b) for _e, b, _t in sink.messages()]
            self.assertIn(sent[domain], ids, f"{domain}.test at sink {sink.address}: got {ids}")
        self.assertNotIn(sent["fall"], [qid_of(b) for _e, b, _t in mx1.messages()])
        self.assertEqual(mx1.count() + mx2.count() + implicit.count(), 3)
        self.assertEqual(got["null"][0][0], "bounced", f"null MX: {got['null']}")
        self.assertIn("5.1.10", got["null"][0][1])
        self.assertEqual(got["nothere"][0][0], "bounced", f"NXDOMAIN: {got['nothere']}")
        self.assertIn("5.1.2", got["nothere"][0][1])
        self.assertEqual(got["tls"][0][0], "deferred", f"TLS required: {got['tls']}")
        self.assertIn("4.7.4", got["tls"][0][1])
        self.assertEqual(notls.count(), 0, "no message may go in cleartext to tls.test")
        site = self.redis.cmd("GET", "pst:site:of:pref.test")
        self.assertEqual(site, b"mx1.pref.test,mx2.pref.test")


class CrashRecoveryTest(DeliveryTestCase):

    def test_worker_killed_mid_transaction_everything_delivered(self):
        """kill -9 of the only worker while the sink holds the reply to a final dot: the
        master starts a new worker, the dead worker's lease expires (lease_timeout 10 s) and
        every message is delivered; a message seen twice by the sink can only be one that was
        in flight at the kill."""
        s = self.sink(args=["--stall-data", "3"])
        p = self.relay(lease_timeout=10, **{"route crash.example": s.address})
        sent = self.send(p, ["k@crash.example"], count=4)
        wait_for(lambda: s.count() >= 1, 15, what="a message at the sink")
        [pid] = p.worker_pids()
        in_flight = {qid_of(b) for _e, b, _t in s.messages()}
        os.kill(pid, signal.SIGKILL)
        self.wait_gone([q for q, _ in sent], 60)
        ids = [qid_of(b) for _e, b, _t in s.messages()]
        self.assertEqual(set(ids), {q for q, _ in sent}, f"delivered ids: {ids}")
        dups = {q for q in ids if ids.count(q) > 1}
        self.assertTrue(dups <= in_flight, f"duplicates {dups}, want only those in flight at the "
                                           f"kill ({in_flight})")
        self.assertQueueEmpty()

    def test_redis_restarted_during_delivery_nothing_lost(self):
        """40 messages through a slow sink; Redis is restarted (stopped and started again on
        its append-only file) while they are being delivered: every message arrives."""
        s = self.sink(args=["--delay-ms", "20"])
        p = self.relay(**{"route rr.example": s.address,
                          f"site {s.address}": "connections=2"})
        sent = self.send(p, ["r@rr.example"], count=40)
        wait_for(lambda: s.count() >= 5, 30, what="5 messages at the sink")
        self.redis.stop()
        time.sleep(1)
        self.redis.restart()
        self.wait_gone([q for q, _ in sent], 90)
        ids = {qid_of(b) for _e, b, _t in s.messages()}
        self.assertEqual(ids, {q for q, _ in sent},
                         f"missing: {({q for q, _ in sent}) - ids}")


class BackPressureTest(DeliveryTestCase):

    def test_queue_limit_answers_452(self):
        """max_queued_recipients 2 and no delivery: two messages are queued, the third gets
        452 4.3.1 at the end of DATA, and once the relay has sampled the queue, MAIL itself
        gets 452 4.3.1."""
        p = self.dedicated_postino(redis=self.redis, max_queued_recipients=2)
        p.add_user(USER, ["example.com"], PW)
        self.send(p, ["a@q.example"], count=2)
        c = self.login(p.port, USER, PW)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, conn=c)
        self.assertReply(c.cmd("RCPT TO:<b@q.example>"), 250, conn=c)
        r354, final = c.data(make_message(from_addr=SENDER))
        self.assertReply(final, 452, "4.3.1", conn=c)
        time.sleep(1.5)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 452, "4.3.1", conn=c)


class QueueAdminTest(DeliveryTestCase):

    def test_hold_release_retry_delete_and_stats(self):
        """postinoctl queue hold|release|retry|delete by id and domain, and stats, on a
        relay that does not deliver."""
        p = self.dedicated_postino(redis=self.redis)
        p.add_user(USER, ["example.com"], PW)
        [(q1, _)] = self.send(p, ["a@one.example", "b@two.example"])
        [(q2, _)] = self.send(p, ["c@two.example"])
        st = p.ctl("queue", "stats", check=True).stdout
        self.assertRegex(st, r"scheduled=3 .*messages=2 recipients=3", st)
        r = p.ctl("queue", "hold", q1, check=True)
        self.assertIn("2 held", r.stdout)
        self.assertRegex(p.ctl("queue", "stats", check=True).stdout, r"held=2")
        r = p.ctl("queue", "release", q1, check=True)
        self.assertIn("2 released", r.stdout)
        r = p.ctl("queue", "retry", "--domain", "TWO.example", check=True)
        self.assertIn("two.example: 2 entries due now", r.stdout)
        r = p.ctl("queue", "delete", q2, check=True)
        self.assertIn("1 recipients deleted", r.stdout)
        self.assertEqual(self.redis.cmd("EXISTS", f"pst:msg:{q2}"), 0)
        r = p.ctl("queue", "delete", "ffffffffffffffff")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no such message", r.stderr)
        r = p.ctl("queue", "hold", "--bogus", "x")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
