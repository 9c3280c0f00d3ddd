"""Promise 1, "250 means durable", against a real redis-server that is stopped, paused, killed,
out of memory or read-only under a running postino.

Each test has its own redis-server (appendonly yes, appendfsync always) and its own postino
with redis = unix:<that socket> and redis_timeout = 1000 ms: a submission must end with 451 /
452 (never 250, never a hang) while Redis cannot take it, the session must stay usable, and
submissions must get 250 again once Redis is back. A message acknowledged with 250 must survive
kill -9 of redis-server."""
import time
import unittest

from harness import (PostinoTestCase, dot_stuff, make_message, queue_id, split_received,
                     wait_for)

USER, PW = "dur", "dur-secret-123"
SENDER = "dur@dur.example"
REDIS_TIMEOUT_S = 1.0
MARGIN_S = 2.0


class RedisDurabilityTest(PostinoTestCase):
    def setUp(self):
        self.redis = self.dedicated_redis()
        self.postino = self.dedicated_postino(redis=self.redis, redis_timeout=1000,
                                              auth_cleartext_loopback="yes")
        self.postino.add_user(USER, ["dur.example"], PW)

    def session(self):
        return self.login(self.postino.port, USER, PW, tls=None)

    def open_data(self, c):
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<x@dest.example>"), 250, "2.1.5", conn=c)
        self.assertReply(c.cmd("DATA"), 354, conn=c)

    def attempt(self, c, msg):
        """One whole transaction on c; returns the final reply (or the first failing one)."""
        r = c.cmd(f"MAIL FROM:<{SENDER}>")
        if r.code != 250:
            return r
        r = c.cmd("RCPT TO:<x@dest.example>")
        if r.code != 250:
            return r
        r354, final = c.data(dot_stuff(msg))
        return final if final is not None else r354

    def end_data_expect(self, c, code, enhanced, deadline_s):
        """Sends the end of data; asserts the reply and that it came within deadline_s."""
        t0 = time.monotonic()
        c.send(b".\r\n")
        r = c.read_reply(timeout=deadline_s + 5)
        elapsed = time.monotonic() - t0
        self.assertReply(r, code, enhanced, conn=c)
        self.assertLessEqual(elapsed, deadline_s, f"{r} came after {elapsed:.2f} s, want within "
                                                  f"{deadline_s} s")
        return elapsed

    def assert_recovers(self, c, msg, what):
        """Polls (bounded) whole transactions on c until one gets 250; returns the id."""
        replies = []

        def queued():
            r = self.attempt(c, msg)
            replies.append(r)
            if r.code // 100 == 5:
                raise AssertionError(f"got {r}: a 5xx while Redis recovers")
            if r.code != 250:
                self.assertReply(c.cmd("RSET"), 250, conn=c)
            return queue_id(r)
        try:
            return wait_for(queued, 20, 0.2, what)
        except AssertionError as e:
            self.fail(f"{e}; replies: {replies[-5:]}\n{c.history()}")

    def assert_stored(self, qid, msg):
        body = self.redis.cmd("GET", f"pst:body:{qid}")
        self.assertIsNotNone(body, f"pst:body:{qid} missing")
        received, rest = split_received(body)
        self.assertIn(f"id {qid}".encode(), received)
        self.assertEqual(rest, msg)

    def test_redis_stopped_gives_451_then_recovers_after_restart(self):
        msg = make_message(from_addr=SENDER, subject="redis down")
        c = self.session()
        self.open_data(c)
        c.send(dot_stuff(msg))
        self.redis.stop()
        self.end_data_expect(c, 451, "4.3.0", REDIS_TIMEOUT_S + MARGIN_S)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", conn=c)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", conn=c)
        # AUTH needs Redis too: a temporary failure, not 535 and not a hang
        c2 = self.conn(self.postino.port)
        self.assertReply(c2.ehlo(), 250, conn=c2)
        t0 = time.monotonic()
        r = c2.auth_plain(USER, PW)
        self.assertReply(r, 454, "4.7.0", conn=c2)
        self.assertLessEqual(time.monotonic() - t0, REDIS_TIMEOUT_S + MARGIN_S)
        # a whole transaction while Redis is down: 451 again
        r = self.attempt(c, msg)
        self.assertReply(r, 451, "4.3.0", conn=c)
        self.redis.restart()
        qid = self.assert_recovers(c, msg, "a submission to get 250 after Redis restarted")
        self.assert_stored(qid, msg)
        self.assertEqual(self.redis.msgs_count(), 1, "only the last attempt was queued")
        self.assertReply(c2.auth_plain(USER, PW), 235, "2.7.0", conn=c2)

    def test_redis_paused_gives_451_within_redis_timeout_then_recovers(self):
        msg = make_message(from_addr=SENDER, subject="redis paused")
        c = self.session()
        self.open_data(c)
        c.send(dot_stuff(msg))
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        self.end_data_expect(c, 451, "4.3.0", REDIS_TIMEOUT_S + MARGIN_S)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", conn=c)
        c2 = self.conn(self.postino.port)
        self.assertReply(c2.ehlo(), 250, conn=c2)
        t0 = time.monotonic()
        self.assertReply(c2.auth_plain(USER, PW), 454, "4.7.0", conn=c2)
        self.assertLessEqual(time.monotonic() - t0, REDIS_TIMEOUT_S + MARGIN_S)
        self.redis.resume()
        qid = self.assert_recovers(c, msg, "a submission to get 250 after SIGCONT")
        self.assert_stored(qid, msg)
        # the timed-out commit may or may not have reached Redis, but nothing else was added
        self.assertLessEqual(self.redis.msgs_count(), 2)

    def test_message_acknowledged_with_250_survives_kill9(self):
        c = self.session()
        sent = {}
        for i in range(5):
            msg = make_message(from_addr=SENDER, subject=f"durable {i}",
                               body=f"message number {i}\r\n".encode())
            r = self.attempt(c, msg)
            sent[self.assertQueued(r, conn=c)] = msg
        # kill -9 right after the last 250: only the AOF (appendfsync always) can keep them
        self.redis.kill9()
        self.redis.restart()
        for qid, msg in sent.items():
            self.assert_stored(qid, msg)
            rc = self.redis.hgetall(f"pst:rcpt:{qid}")
            self.assertRegex(rc.get("0", b"").decode(), r"^queued 0 \d+ x@dest\.example$",
                             f"pst:rcpt:{qid} after kill -9: got {rc}")
            self.assertEqual(self.redis.hgetall(f"pst:msg:{qid}").get("rcpts"), b"1")
            self.assertIsNotNone(self.redis.cmd("ZSCORE", "pst:msgs", qid))
        self.assertEqual(self.redis.msgs_count(), 5)
        # and postino reconnects to the restarted Redis
        self.assertReply(c.cmd("RSET"), 250, conn=c)
        self.assert_recovers(c, make_message(from_addr=SENDER), "250 after kill -9 + restart")

    def test_redis_out_of_memory_gives_452_and_writes_nothing(self):
        c = self.session()
        keys_before = self.redis.cmd("DBSIZE")
        self.redis.cmd("CONFIG", "SET", "maxmemory", "1")
        self.addCleanup(lambda: self.redis.proc.poll() is None and
                        self.redis.cmd("CONFIG", "SET", "maxmemory", "0"))
        r = self.attempt(c, make_message(from_addr=SENDER, subject="oom"))
        self.assertReply(r, 452, "4.3.1", conn=c)
        self.assertEqual(self.redis.cmd("DBSIZE"), keys_before,
                         "a refused commit must write nothing")
        self.assertReply(c.cmd("RSET"), 250, conn=c)
        self.redis.cmd("CONFIG", "SET", "maxmemory", "0")
        self.assert_recovers(c, make_message(from_addr=SENDER), "250 once memory is available")

    def test_script_cache_flushed_under_postino(self):
        """SCRIPT FLUSH (or a Redis that lost its scripts): the next requests still work."""
        c = self.session()
        self.assertQueued(self.attempt(c, make_message(from_addr=SENDER)), conn=c)
        self.redis.cmd("SCRIPT", "FLUSH")
        msg = make_message(from_addr=SENDER, subject="after flush")
        qid = self.assertQueued(self.attempt(c, msg), conn=c)
        self.assert_stored(qid, msg)
        self.redis.cmd("SCRIPT", "FLUSH")
        c2 = self.login(self.postino.port, USER, PW, tls=None)  # the user lookup script
        self.assertReply(c2.cmd("NOOP"), 250, conn=c2)

    def test_redis_read_only_gives_451(self):
        c = self.session()
        # a replica of a master that does not exist (port 1): writes get READONLY
        self.redis.cmd("REPLICAOF", "127.0.0.1", "1")
        self.addCleanup(lambda: self.redis.proc.poll() is None and
                        self.redis.cmd("REPLICAOF", "NO", "ONE"))
        r = self.attempt(c, make_message(from_addr=SENDER, subject="readonly"))
        self.assertReply(r, 451, "4.3.0", conn=c)
        self.assertEqual(self.redis.msgs_count(), 0)
        self.assertReply(c.cmd("RSET"), 250, conn=c)
        self.redis.cmd("REPLICAOF", "NO", "ONE")
        self.assert_recovers(c, make_message(from_addr=SENDER), "250 once Redis is writable")


if __name__ == "__main__":
    unittest.main()
