"""`postinoctl domain check` and the daemon's DKIM DNS watcher (issue 3), against a real DNS
server: dnsmasq on loopback (harness.Dnsmasq), serving the TXT records each test publishes.

DomainCheckTest: one key store with a domain per set-up, one dnsmasq zone holding them all:
  every check passing (RSA and Ed25519 keys, SPF with the spf_include terms, DMARC p=reject);
  each failure alone (DKIM record missing, DKIM record with another key, two SPF records, SPF
  without the required include, no DMARC record, DMARC p=bogus, adkim=s for a subdomain that
  Postino signs with its parent's d=); a pending selector published (pass) and not yet
  published (fail, with the record to publish); an answer too big for UDP (TC, then TCP); a
  zone whose name server fails (dnsmasq forwards it to a server that answers SERVFAIL); a
  resolver that never answers (timeout) or is not there (connection refused); usage errors.
  Every FAIL line must carry the record to publish when there is one, and the exit code must
  be 0 only when every line is a PASS.

DkimWatchTest: postino running with dkim_dns_check_interval = 1; a rotated domain's new
selectors are published in dnsmasq, first with a wrong key (nothing happens but a warning),
then right: within a bounded time the log shows the activations, the next message submitted
is signed with the new selectors (read from Redis, pst:body:<id>), and after
dkim_retire_grace the replaced keys are retired.
"""
import os
import re
import shutil
import socket
import struct
import threading
import time
import unittest

from harness import (HOST, Dnsmasq, Postino, PostinoTestCase, ctl, make_message, wait_for)

SPF_INCLUDE = "include:_spf.postino.test ip4:192.0.2.10"
SPF_OK = f"v=spf1 mx {SPF_INCLUDE} -all"
DMARC_OK = "v=DMARC1; p=reject; rua=mailto:dmarc@postino.test"
PARENT = "strict.example"  # the config's dkim_domain: d= for domains without keys

RECORD_RE = re.compile(r'^(\S+?)\.?\s+IN\s+TXT\s+\(((?:\s*"[^"]*")+)\s*\)\s*$', re.M)
CREATED_RE = re.compile(r"^\S+: selector (\S+) created \((rsa|ed25519)[^,]*, (\w+)\)$", re.M)
LINE_RE = re.compile(r"^(PASS|FAIL) (dkim|spf|dmarc) ([^\s:]+)")
SIG_RE = re.compile(rb"^DKIM-Signature:((?:[^\r\n]*)(?:\r\n[ \t][^\r\n]*)*)\r\n", re.M)


def dkim_records(conf, domain):
    """{name: [strings]} of the records `postinoctl dkim show DOMAIN` says to publish."""
    p = ctl(conf, "dkim", "show", domain, check=True)
    return {m.group(1): re.findall(r'"([^"]*)"', m.group(2)) for m in RECORD_RE.finditer(p.stdout)}


def created(stdout):
    """{algorithm: (selector, state)} from keygen/rotate output."""
    return {m.group(2): (m.group(1), m.group(3)) for m in CREATED_RE.finditer(stdout)}


def publish_value(line):
    """The TXT value after "publish: NAME. IN TXT", its strings joined; None without one."""
    m = re.search(r"; publish: (\S+)\. IN TXT (.*)$", line)
    if m is None:
        return None
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
    return m.group(1), "".join(s.replace('\\"', '"').replace("\\\\", "\\") for s in strings)


def udp_answer(port, name):
    """(TC flag, [TXT values]) of a plain EDNS0 (1232 octets) UDP query: to check what dnsmasq
    sends before the resolver falls back to TCP."""
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    q = (struct.pack(">HHHHHH", 0x4d4d, 0x0100, 1, 0, 0, 1) + qname + struct.pack(">HH", 16, 1) +
         b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, (HOST, port))
        d = s.recv(65535)
    finally:
        s.close()
    tc = bool(d[2] & 0x02)
    at, texts = 12 + len(qname) + 4, []
    for _ in range(struct.unpack(">H", d[6:8])[0]):
        at += 2  # dnsmasq compresses owners to the question
        rtype, _c, _t, rdlen = struct.unpack(">HHIH", d[at:at + 10])
        at += 10
        r, at, k, parts = d[at:at + rdlen], at + rdlen, 0, []
        while k < len(r):
            parts.append(r[k + 1:k + 1 + r[k]])
            k += 1 + r[k]
        texts.append(b"".join(parts).decode())
    return tc, texts


class FailingDns:
    """A UDP "name server" on loopback that answers every query with SERVFAIL (answer=True)
    or never answers (answer=False). A thread, stopped by stop()."""

    def __init__(self, answer=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if not self.answer or len(data) < 17:
                continue
            end = 12
            while end < len(data) and data[end] != 0:
                end += 1 + data[end]
            reply = (data[:2] + bytes([0x81 | (data[2] & 0x01), 0x82]) +
                     struct.pack(">HHHH", 1, 0, 0, 0) + data[12:end + 5])
            self.sock.sendto(reply, peer)

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


class DomainCheckTest(PostinoTestCase):
    GOOD = "good.example"
    NODKIM = "nodkim.example"
    WRONGKEY = "wrongkey.example"
    TWOSPF = "twospf.example"
    NOINCLUDE = "noinclude.example"
    NODMARC = "nodmarc.example"
    BOGUS = "bogus.example"
    PENDING = "pending.example"
    UNPUBLISHED = "unpublished.example"
    BIG = "big.example"
    SUB_STRICT = "a.strict.example"   # no keys: signed with d=strict.example
    SUB_RELAXED = "b.strict.example"  # no keys either, its own record says adkim=r
    BROKEN = "servfail.example"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.failing = FailingDns(answer=True)
        cls.dns = Dnsmasq()
        cls.postino = Postino(dns_resolver=cls.dns.address, dns_timeout=500,
                              spf_include=SPF_INCLUDE, dkim_domain=PARENT)
        try:
            cls._prepare()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def _cleanup(cls):
        for step in (cls.dns.cleanup, cls.postino.cleanup, cls.failing.stop):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - the others must run too
                print(f"cleanup: {e!r}")

    @classmethod
    def tearDownClass(cls):
        cls._cleanup()
        super().tearDownClass()

    @classmethod
    def keygen(cls, domain, *args):
        return ctl(cls.postino.conf, "dkim", "keygen", domain, *args, check=True).stdout

    @classmethod
    def _prepare(cls):
        os.makedirs(cls.postino.data_dir, mode=0o700)
        cls.postino.write_config()
        conf = cls.postino.conf
        full = [cls.GOOD, cls.NODKIM, cls.WRONGKEY, cls.TWOSPF, cls.NOINCLUDE, cls.NODMARC,
                cls.BOGUS, cls.PENDING, cls.UNPUBLISHED, cls.BIG, PARENT, cls.BROKEN]
        for d in full:
            cls.keygen(d)
        cls.pending = created(ctl(conf, "dkim", "rotate", cls.PENDING, check=True).stdout)
        cls.unpublished = created(ctl(conf, "dkim", "rotate", cls.UNPUBLISHED,
                                      check=True).stdout)
        cls.records = {d: dkim_records(conf, d) for d in full}
        txt = []

        def publish(domain, dkim=True, spf=(SPF_OK,), dmarc=(DMARC_OK,)):
            if dkim:
                txt.extend(cls.records[domain].items())
            txt.extend((domain, v) for v in spf)
            txt.extend((f"_dmarc.{domain}", v) for v in dmarc)

        publish(cls.GOOD)
        publish(cls.NODKIM, dkim=False)
        # the RSA record of WRONGKEY carries GOOD's RSA key
        good_rsa = [v for n, v in cls.records[cls.GOOD].items() if "k=rsa" in "".join(v)][0]
        for name, strings in cls.records[cls.WRONGKEY].items():
            txt.append((name, good_rsa if "k=rsa" in "".join(strings) else strings))
        publish(cls.WRONGKEY, dkim=False)
        publish(cls.TWOSPF, spf=(SPF_OK, "v=spf1 a:other.example ~all"))
        publish(cls.NOINCLUDE, spf=("v=spf1 mx ip4:192.0.2.10 -all",))
        publish(cls.NODMARC, dmarc=())
        publish(cls.BOGUS, dmarc=("v=DMARC1; p=bogus",))
        publish(cls.PENDING)  # active and pending selectors
        # UNPUBLISHED: only the active selectors
        pending_names = {f"{s}._domainkey.{cls.UNPUBLISHED}" for s, _ in cls.unpublished.values()}
        txt.extend((n, v) for n, v in cls.records[cls.UNPUBLISHED].items()
                   if n not in pending_names)
        publish(cls.UNPUBLISHED, dkim=False)
        # BIG: the SPF record first, then six more of 250 octets: over 1232 octets in all
        txt.extend(cls.records[cls.BIG].items())
        txt.append((cls.BIG, SPF_OK))
        txt.extend((cls.BIG, f"filler-{i}-" + "x" * 240) for i in range(6))
        txt.append((f"_dmarc.{cls.BIG}", DMARC_OK))
        publish(PARENT, dmarc=("v=DMARC1; p=quarantine; adkim=s",))
        txt.append((cls.SUB_STRICT, SPF_OK))  # no _dmarc.a.strict.example: the parent's
        txt.append((cls.SUB_RELAXED, SPF_OK))
        txt.append((f"_dmarc.{cls.SUB_RELAXED}", "v=DMARC1; p=reject; adkim=r"))
        cls.dns.set_records(txt, local=["example"],
                            servers={cls.BROKEN: f"{HOST}#{cls.failing.port}"})
        cls.dns.start()

    def check(self, domain, conf=None, timeout=60):
        """Runs domain check; returns (exit code, {(check, name): (status, line)}, stdout)."""
        p = ctl(conf or self.postino.conf, "domain", "check", domain, timeout=timeout)
        lines = {}
        for line in p.stdout.splitlines():
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, f"domain check {domain}: line {line!r} is not PASS/FAIL "
                                    f"<check> <name>\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
            lines[(m.group(2), m.group(3))] = (m.group(1), line)
        return p.returncode, lines, p.stdout + p.stderr

    def assertStatuses(self, domain, want, want_exit, conf=None):
        code, lines, out = self.check(domain, conf)
        got = {k: v[0] for k, v in lines.items()}
        self.assertEqual(got, want, f"domain check {domain}: got statuses {got}, want {want}\n"
                                    f"output:\n{out}")
        self.assertEqual(code, want_exit, f"domain check {domain}: exit code got {code}, want "
                                          f"{want_exit}\noutput:\n{out}")
        return lines

    def want_all(self, domain, status="PASS", **override):
        """{(check, name): status} for every check of a fully keyed domain."""
        want = {("dkim", n): status for n in self.records.get(domain, {})}
        want[("spf", domain)] = status
        want[("dmarc", f"_dmarc.{domain}")] = status
        for key, value in override.items():
            kind, _, name = key.partition(":")
            want[(kind, name)] = value
        return want

    def assertPublish(self, line, name, value):
        got = publish_value(line)
        self.assertEqual(got, (name, value), f"record to publish in {line!r}: got {got}, want "
                                             f"{(name, value)}")

    # ---- passing

    def test_all_pass(self):
        lines = self.assertStatuses(self.GOOD, self.want_all(self.GOOD), 0)
        algs = sorted(re.search(r"\((rsa|ed25519)\)$", line).group(1)
                      for (kind, _), (_, line) in lines.items() if kind == "dkim")
        self.assertEqual(algs, ["ed25519", "rsa"], f"dkim lines: {lines}")
        dmarc = lines[("dmarc", f"_dmarc.{self.GOOD}")][1]
        self.assertIn("p=reject", dmarc)
        self.assertIn("relaxed alignment", dmarc)

    def test_pending_selector_published_passes(self):
        lines = self.assertStatuses(self.PENDING, self.want_all(self.PENDING), 0)
        for alg, (sel, state) in self.pending.items():
            self.assertEqual(state, "pending")
            line = lines[("dkim", f"{sel}._domainkey.{self.PENDING}")][1]
            self.assertIn(f"({alg}, pending)", line)

    def test_answer_over_tcp_when_udp_is_truncated(self):
        tc, texts = udp_answer(self.dns.port, self.BIG)
        self.assertTrue(tc and SPF_OK not in texts,
                        f"precondition: dnsmasq's UDP answer for {self.BIG} should be "
                        f"truncated and lack the SPF record; got TC={tc}, {len(texts)} records")
        self.assertStatuses(self.BIG, self.want_all(self.BIG), 0)

    def test_subdomain_relaxed_alignment_passes(self):
        code, lines, out = self.check(self.SUB_RELAXED)
        status, line = lines[("dmarc", f"_dmarc.{self.SUB_RELAXED}")]
        self.assertEqual(status, "PASS", out)
        self.assertIn(f"d={PARENT} aligns with", line)
        self.assertEqual(lines[("dkim", self.SUB_RELAXED)][0], "FAIL", out)  # no keys
        self.assertEqual(code, 1, out)

    # ---- failing

    def test_missing_dkim_records(self):
        lines = self.assertStatuses(self.NODKIM, self.want_all(self.NODKIM, **{
            f"dkim:{n}": "FAIL" for n in self.records[self.NODKIM]}), 1)
        for name, strings in self.records[self.NODKIM].items():
            line = lines[("dkim", name)][1]
            self.assertIn(": no record;", line)
            self.assertPublish(line, name, "".join(strings))

    def test_dkim_record_with_another_key(self):
        rsa = [n for n, v in self.records[self.WRONGKEY].items() if "k=rsa" in "".join(v)][0]
        lines = self.assertStatuses(self.WRONGKEY, self.want_all(self.WRONGKEY, **{
            f"dkim:{rsa}": "FAIL"}), 1)
        line = lines[("dkim", rsa)][1]
        self.assertIn("p= is another key", line)
        self.assertPublish(line, rsa, "".join(self.records[self.WRONGKEY][rsa]))

    def test_two_spf_records(self):
        lines = self.assertStatuses(self.TWOSPF, self.want_all(self.TWOSPF, **{
            f"spf:{self.TWOSPF}": "FAIL"}), 1)
        line = lines[("spf", self.TWOSPF)][1]
        self.assertIn("2 SPF records", line)
        name, value = publish_value(line)
        self.assertEqual(name, self.TWOSPF)
        self.assertTrue(value.startswith("v=spf1 ") and "a:other.example" in value and
                        "include:_spf.postino.test" in value and value.endswith("all"),
                        f"merged record: got {value!r}")

    def test_spf_without_the_include(self):
        lines = self.assertStatuses(self.NOINCLUDE, self.want_all(self.NOINCLUDE, **{
            f"spf:{self.NOINCLUDE}": "FAIL"}), 1)
        line = lines[("spf", self.NOINCLUDE)][1]
        self.assertIn("lacks include:_spf.postino.test", line)
        self.assertNotIn("lacks include:_spf.postino.test ip4", line)  # that one is there
        self.assertPublish(line, self.NOINCLUDE,
                           "v=spf1 mx ip4:192.0.2.10 include:_spf.postino.test -all")

    def test_no_dmarc_record(self):
        name = f"_dmarc.{self.NODMARC}"
        lines = self.assertStatuses(self.NODMARC, self.want_all(self.NODMARC, **{
            f"dmarc:{name}": "FAIL"}), 1)
        line = lines[("dmarc", name)][1]
        self.assertIn(": no record", line)
        self.assertTrue(publish_value(line)[1].startswith("v=DMARC1; p=none"), line)

    def test_dmarc_bogus_policy(self):
        name = f"_dmarc.{self.BOGUS}"
        lines = self.assertStatuses(self.BOGUS, self.want_all(self.BOGUS, **{
            f"dmarc:{name}": "FAIL"}), 1)
        line = lines[("dmarc", name)][1]
        self.assertIn("p=bogus is not none, quarantine or reject", line)
        self.assertPublish(line, name, "v=DMARC1; p=none")

    def test_strict_alignment_for_a_subdomain_signed_by_its_parent(self):
        code, lines, out = self.check(self.SUB_STRICT)
        status, line = lines.get(("dmarc", f"_dmarc.{PARENT}"), (None, None))
        self.assertEqual(status, "FAIL", f"want a FAIL line for _dmarc.{PARENT}:\n{out}")
        self.assertIn("adkim=s (strict alignment)", line)
        self.assertIn(f"d={PARENT}", line)
        self.assertPublish(line, f"_dmarc.{PARENT}", "v=DMARC1; p=quarantine; adkim=r")
        self.assertEqual(code, 1, out)
        # the parent itself signs with its own d=: strict alignment holds there
        self.assertStatuses(PARENT, self.want_all(PARENT), 0)

    def test_pending_selector_not_published(self):
        lines = self.assertStatuses(self.UNPUBLISHED, self.want_all(self.UNPUBLISHED, **{
            f"dkim:{s}._domainkey.{self.UNPUBLISHED}": "FAIL"
            for s, _ in self.unpublished.values()}), 1)
        for alg, (sel, _) in self.unpublished.items():
            name = f"{sel}._domainkey.{self.UNPUBLISHED}"
            line = lines[("dkim", name)][1]
            self.assertIn(f"({alg}, pending): no record yet", line)
            self.assertPublish(line, name, "".join(self.records[self.UNPUBLISHED][name]))

    def test_servfail_is_a_fail_with_a_reason(self):
        before = self.failing.queries
        lines = self.assertStatuses(self.BROKEN, self.want_all(self.BROKEN, status="FAIL"), 1)
        for _, line in lines.values():
            self.assertIn("lookup failed (servfail)", line)
            self.assertNotIn("publish:", line)
        self.assertGreater(self.failing.queries, before, "dnsmasq never asked the failing server")

    def resolver_conf(self, server, timeout_ms):
        """A copy of the config using another dns_resolver."""
        path = os.path.join(self.postino.dir, f"resolver-{time.monotonic_ns()}.conf")
        text = re.sub(r"(?m)^dns_resolver = .*$", f"dns_resolver = {server}",
                      self.postino.config_text())
        text = re.sub(r"(?m)^dns_timeout = .*$", f"dns_timeout = {timeout_ms}", text)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_timeout_is_a_fail_with_a_reason(self):
        silent = FailingDns(answer=False)
        self.addCleanup(silent.stop)
        conf = self.resolver_conf(f"{HOST}:{silent.port}", 200)
        start = time.monotonic()
        lines = self.assertStatuses(self.GOOD, self.want_all(self.GOOD, status="FAIL"), 1,
                                    conf=conf)
        elapsed = time.monotonic() - start
        for _, line in lines.values():
            self.assertIn("lookup failed (timeout)", line)
            self.assertIn("after 2 attempts of 200 ms", line)
        # 4 lookups of 2 attempts of 0.2 s, and postinoctl's start
        self.assertLess(elapsed, 6.0, f"domain check took {elapsed:.1f} s")
        self.assertEqual(silent.queries, 8, "queries the silent server got")

    def test_no_server_is_a_fail_with_a_reason(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now: ICMP port unreachable
        conf = self.resolver_conf(f"{HOST}:{port}", 1000)
        lines = self.assertStatuses(self.GOOD, self.want_all(self.GOOD, status="FAIL"), 1,
                                    conf=conf)
        for _, line in lines.values():
            self.assertIn("lookup failed (network)", line)

    def test_usage_errors(self):
        for args in (["domain"], ["domain", "check"], ["domain", "check", "not a domain"],
                     ["domain", "check", "a.example", "b.example"], ["domain", "frob", "x.y"],
                     ["domain", "check", "localhost"]):
            p = ctl(self.postino.conf, *args)
            self.assertEqual(p.returncode, 2, f"postinoctl {' '.join(args)}: exit code got "
                                              f"{p.returncode}, want 2; stderr {p.stderr!r}")
            self.assertEqual(p.stdout, "", f"postinoctl {' '.join(args)}: stdout")
            self.assertIn("domain check DOMAIN", p.stderr)

    def test_a_domain_without_keys_says_how_to_make_them(self):
        code, lines, out = self.check(self.SUB_RELAXED)
        status, line = lines[("dkim", self.SUB_RELAXED)]
        self.assertEqual(status, "FAIL")
        self.assertIn(f"postinoctl dkim keygen {self.SUB_RELAXED}", line)


class DkimWatchTest(PostinoTestCase):
    DOMAIN = "watch.example"
    USER, PW = "watcher", "watcher-secret-1"
    GRACE = 3

    def setUp(self):
        self.dns = Dnsmasq(local=[self.DOMAIN])
        self.addCleanup(self.dns.cleanup)
        self.dns.start()
        redis = self.dedicated_redis()
        self.redis = redis
        self.postino = self.dedicated_postino(redis, dns_resolver=self.dns.address,
                                              dns_timeout=500, dkim_dns_check_interval=1,
                                              dkim_retire_grace=self.GRACE)
        self.postino.add_user(self.USER, [self.DOMAIN], self.PW)

    def signing_selectors(self):
        """{a=: s=} of the signatures on a message submitted now, read back from Redis."""
        c = self.login(self.postino.port, self.USER, self.PW)
        qid = self.submit(c, f"bounce@{self.DOMAIN}", ["someone@dest.example"],
                          make_message(from_addr=f"news@{self.DOMAIN}"))
        c.cmd("QUIT")
        c.close()
        stored = self.redis.cmd("GET", f"pst:body:{qid}")
        self.assertIsNotNone(stored, f"pst:body:{qid}")
        out = {}
        for m in SIG_RE.finditer(stored):
            tags = dict(t.strip().split("=", 1) for t in
                        re.sub(r"\s+", "", m.group(1).decode()).split(";") if "=" in t)
            if tags.get("d") == self.DOMAIN:
                out[tags["a"]] = tags["s"]
        return out

    def wait_signed_by(self, want, what, timeout=15.0):
        last = {}

        def signed():
            nonlocal last
            last = self.signing_selectors()
            return last == want

        try:
            wait_for(signed, timeout, interval=0.5, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}: last message signed by {last}, want {want}") from None

    def test_rotation_activates_once_published_and_retires_after_grace(self):
        made = created(self.postino.ctl("dkim", "keygen", self.DOMAIN, check=True).stdout)
        old = {alg: sel for alg, (sel, _) in made.items()}
        self.wait_signed_by({"rsa-sha256": old["rsa"], "ed25519-sha256": old["ed25519"]},
                            "messages signed with the first keys")
        rotated = created(self.postino.ctl("dkim", "rotate", self.DOMAIN, check=True).stdout)
        new = {alg: sel for alg, (sel, state) in rotated.items() if state == "pending"}
        self.assertEqual(sorted(new), ["ed25519", "rsa"], f"dkim rotate: {rotated}")
        records = dkim_records(self.postino.conf, self.DOMAIN)
        name = {alg: f"{sel}._domainkey.{self.DOMAIN}" for alg, sel in new.items()}
        old_name = {alg: f"{sel}._domainkey.{self.DOMAIN}" for alg, sel in old.items()}

        # the new RSA selector published with the old key: no activation, a warning
        self.dns.restart(txt=[(old_name["rsa"], records[old_name["rsa"]]),
                              (old_name["ed25519"], records[old_name["ed25519"]]),
                              (name["rsa"], records[old_name["rsa"]])], local=[self.DOMAIN])
        wait_for(lambda: re.search(rf"event=dkim_selector_pending domain={self.DOMAIN} "
                                   rf"selector={new['rsa']} reason=\"p= is another key",
                                   self.postino.run_log()), 15.0,
                 what="the watcher to warn about the wrong key")
        self.assertNotIn("event=dkim_selector_activated", self.postino.run_log())
        self.assertEqual(self.signing_selectors(),
                         {"rsa-sha256": old["rsa"], "ed25519-sha256": old["ed25519"]},
                         "signatures while the new records are wrong or missing")

        # the right records: both activated, the old keys retiring, then retired
        self.dns.restart(txt=list(records.items()), local=[self.DOMAIN])
        for alg in ("rsa", "ed25519"):
            wait_for(lambda alg=alg: re.search(
                rf"event=dkim_selector_activated domain={self.DOMAIN} selector={new[alg]} "
                rf"algorithm={alg}", self.postino.run_log()), 15.0,
                what=f"the activation of {new[alg]} in the log")
            self.assertRegex(self.postino.run_log(),
                             rf"event=dkim_selector_retiring domain={self.DOMAIN} "
                             rf"selector={old[alg]} algorithm={alg} from=active")
        self.wait_signed_by({"rsa-sha256": new["rsa"], "ed25519-sha256": new["ed25519"]},
                            "messages signed with the new keys")
        for alg in ("rsa", "ed25519"):
            wait_for(lambda alg=alg: re.search(
                rf"event=dkim_selector_retired domain={self.DOMAIN} selector={old[alg]} ",
                self.postino.run_log()), self.GRACE + 10.0,
                what=f"{old[alg]} to be retired after the grace period")
        listing = self.postino.ctl("dkim", "list", check=True).stdout
        for alg in ("rsa", "ed25519"):
            self.assertRegex(listing, rf"(?m)^{re.escape(self.DOMAIN)}\s+{old[alg]}\s.*retired")
            self.assertRegex(listing, rf"(?m)^{re.escape(self.DOMAIN)}\s+{new[alg]}\s.*active")
        # and postinoctl agrees: the published records pass
        check = self.postino.ctl("domain", "check", self.DOMAIN)
        self.assertRegex(check.stdout, rf"(?m)^PASS dkim {re.escape(name['rsa'])} \(rsa\)$")
        self.assertRegex(check.stdout,
                         rf"(?m)^PASS dkim {re.escape(name['ed25519'])} \(ed25519\)$")


if __name__ == "__main__":
    unittest.main()
