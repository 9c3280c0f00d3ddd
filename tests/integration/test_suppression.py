"""Per-user suppression lists (issue 5, Suppression), end to end on loopback: a real postino
delivers through a static route to a real SMTP sink (tests/tools/smtpsink --rcpt-by-name:
local part reject gets 550 5.1.1), a real redis-server holds the lists, and postinoctl
administers them. Nothing is sent beyond loopback.

What each test shows is in its docstring.
"""
import os
import re
import tempfile

from harness import wait_for
from test_delivery import USER, DeliveryTestCase, events, events_for

CSV_HEADER = "address,class,reason,source,created,expires"


def rcpt_commands(sink, address):
    """How many RCPT commands for address the sink has seen (its --verbose log)."""
    with open(sink.log_path, errors="replace") as f:
        return len(re.findall(rf'event=command text="RCPT TO:<{re.escape(address)}>',
                              f.read(), flags=re.IGNORECASE))


class SuppressionTest(DeliveryTestCase):

    def test_hard_bounce_suppresses_and_next_message_skips_the_address(self):
        """A sink refuses reject@ with 550 5.1.1: the bounce (class hard) puts the address on
        the user's list with the message as its source. The next message to reject@ and ok@
        is accepted; reject@ gets a suppressed event at submission and is never offered to
        the sink again (no new RCPT for it), while ok@ is delivered; postinoctl lists the
        entry and the counters and pst:stat agree."""
        s = self.sink(args=["--rcpt-by-name", "--verbose"])
        p = self.relay(**{"route x.example": s.address})
        [(q1, _m)] = self.send(p, ["ok@x.example", "reject@x.example"], subject="first")
        self.wait_gone([q1], 20)
        bounced = [e for e in events_for(self.redis, q1) if e["type"] == "bounced"]
        self.assertEqual([(e["rcpt"], e.get("class")) for e in bounced],
                         [("reject@x.example", "hard")], f"bounces of {q1}: {bounced}")
        entry = self.redis.cmd("HGET", f"pst:supp:{USER}", "reject@x.example")
        self.assertIsNotNone(entry, "reject@x.example is not on the user's list")
        self.assertRegex(entry.decode(), rf"^\d+ 0 hard {q1} 550 5\.1\.1",
                         "list entry: <created> <expires> <class> <source> <reason>")
        self.assertEqual(rcpt_commands(s, "reject@x.example"), 1)

        [(q2, _m)] = self.send(p, ["Reject@X.example", "ok@x.example"], subject="second")
        self.wait_gone([q2], 20)
        ev = events_for(self.redis, q2)
        got = sorted((e["rcpt"], e["type"]) for e in ev)
        self.assertEqual(got, [("Reject@X.example", "suppressed"), ("ok@x.example", "delivered")],
                         f"events of {q2}: {ev}")
        sup = [e for e in ev if e["type"] == "suppressed"][0]
        self.assertRegex(sup["reply"], r"^550 5\.7\.1 Recipient suppressed: hard since "
                                       r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual((sup["class"], sup["user"], sup["attempt"]), ("hard", USER, "0"))
        self.assertEqual(rcpt_commands(s, "reject@x.example"), 1,
                         "the sink saw reject@ again: the suppressed address was attempted")
        wait_for(lambda: s.count() == 2, 10, what="2 messages at the sink")
        env = [e for e, _b, _t in s.messages()][1]
        self.assertEqual(re.findall(r"RCPT TO:<([^>]+)>", env), ["ok@x.example"])

        stat = self.redis.hgetall("pst:stat")
        self.assertEqual(stat.get("recipients_suppressed_total"), b"1", f"pst:stat: {stat}")
        self.assertEqual(stat.get("recipients_received_total"), b"4", f"pst:stat: {stat}")
        listed = p.ctl("suppression", "list", USER, check=True).stdout
        self.assertRegex(listed, rf"(?m)^reject@x\.example class=hard since=\S+ expires=never "
                                 rf"source={q1} reason=\"550 5\.1\.1 ")
        self.assertQueueEmpty()

    def test_postinoctl_round_trip_and_submission(self):
        """postinoctl suppression add (an address with --reason and --expires, a whole
        domain), list, export, del, import of the export (the same list again), an import
        with bad lines (each reported as FILE:LINE, nothing imported), and a message whose
        every recipient is suppressed: accepted with 250, each recipient suppressed at
        submission, nothing left queued."""
        p = self.relay()
        ok = p.ctl("suppression", "add", USER, "Ann@Example.ORG", "--reason", "asked, twice",
                   "--expires", "10", check=True)
        self.assertEqual(ok.stdout, "Ann@Example.ORG suppressed for alice\n")
        p.ctl("suppression", "add", USER, "*@spam.example", check=True)
        listed = p.ctl("suppression", "list", USER, check=True).stdout
        self.assertRegex(listed, r"(?m)^\*@spam\.example class=manual since=\S+ expires=never "
                                 r"source=admin reason=\"\"$")
        self.assertRegex(listed, r"(?m)^ann@example\.org class=manual since=\S+ "
                                 r"expires=\d{4}-\S+Z source=admin reason=\"asked, twice\"$")
        self.assertTrue(listed.endswith("entries=2\n"), listed)

        exported = p.ctl("suppression", "export", USER, check=True).stdout
        lines = exported.splitlines()
        self.assertEqual(lines[0], CSV_HEADER)
        self.assertEqual(len(lines), 3, exported)
        self.assertTrue(lines[2].startswith('ann@example.org,manual,"asked, twice",admin,'),
                        lines[2])
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write(exported)
            path = f.name
        self.addCleanup(os.unlink, path)
        for addr in ("ANN@example.org", "*@spam.example"):
            p.ctl("suppression", "del", USER, addr, check=True)
        gone = p.ctl("suppression", "del", USER, "ann@example.org")
        self.assertEqual(gone.returncode, 1, f"del of a missing entry: {gone}")
        self.assertEqual(p.ctl("suppression", "list", USER, check=True).stdout, "entries=0\n")
        imp = p.ctl("suppression", "import", USER, path, check=True)
        self.assertIn("2 entries imported for alice", imp.stdout)
        self.assertEqual(p.ctl("suppression", "export", USER, check=True).stdout, exported)

        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write(CSV_HEADER + "\nnew@ok.example,hard,,,,\nnot an address,,,,,\n"
                    "x@ok.example,sometimes,,,,\n")
            bad = f.name
        self.addCleanup(os.unlink, bad)
        r = p.ctl("suppression", "import", USER, bad)
        self.assertEqual(r.returncode, 1, f"import with bad lines: {r}")
        self.assertIn(f"{bad}:3: bad address", r.stderr)
        self.assertIn(f"{bad}:4: bad class", r.stderr)
        self.assertNotIn(f"{bad}:2:", r.stderr)
        self.assertIn("nothing imported", r.stderr)
        self.assertEqual(self.redis.cmd("HEXISTS", f"pst:supp:{USER}", "new@ok.example"), 0)

        [(qid, _m)] = self.send(p, ["ann@example.org", "Someone@SPAM.example"])
        ev = [e for e in events(self.redis) if e.get("id") == qid]
        got = sorted((e["rcpt"], e["type"]) for e in ev)
        self.assertEqual(got, [("Someone@SPAM.example", "received"),
                               ("Someone@SPAM.example", "suppressed"),
                               ("ann@example.org", "received"),
                               ("ann@example.org", "suppressed")], f"events: {ev}")
        self.assertEqual(self.redis.cmd("EXISTS", f"pst:msg:{qid}", f"pst:body:{qid}",
                                        f"pst:rcpt:{qid}"), 0)
        stat = self.redis.hgetall("pst:stat")
        self.assertEqual((stat.get("messages_received_total"),
                          stat.get("recipients_suppressed_total")), (b"1", b"2"),
                         f"pst:stat: {stat}")
        self.assertQueueEmpty()


if __name__ == "__main__":
    import unittest
    unittest.main()
