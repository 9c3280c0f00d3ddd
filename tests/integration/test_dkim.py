"""DKIM signing end to end (issue 3): keys made with postinoctl, messages submitted over SMTP
(STARTTLS and implicit TLS), the stored message read back from Redis (pst:body:<id>), and every
DKIM-Signature checked by two independent verifiers that are given, as their only DNS, the TXT
records `postinoctl dkim show DOMAIN` prints:

  dkimpy     Debian python3-dkim, through dkim_verify.py run by an interpreter that can import
             it (this one, else /usr/bin/python3, where Debian installs it);
  Mail::DKIM Debian libmail-dkim-perl, through dkim_verify.pl (a resolver object that answers
             from a file). Debian 12's Mail::DKIM has no ed25519-sha256: when the installed one
             cannot verify it, the test output says so once and ed25519 signatures are checked
             by dkimpy alone, RSA ones by both.

Also checked on the signatures themselves: d= (the From: domain, or dkim_domain for a domain
without keys), s= (the selectors postinoctl made), c=relaxed/relaxed, no l=, x= - t= equal to
dkim_lifetime, and h= naming From, Subject, To, Date and the List-Unsubscribe pair once more
than they occur. Tampering (a header prepended after signing, a changed or lengthened body)
makes both verifiers fail. Policies: an unknown From domain is signed with dkim_domain by
default and refused (550 5.7.1 at the end of DATA, nothing queued) with dkim_unknown_domain =
refuse; dkim_algorithms = rsa gives one signature. Keys made, imported, rotated and activated
with postinoctl while postino runs are used without a restart.

Three classes, each with its own redis-server and postino (hostname mx.postino.test, so
dkim_domain is postino.test, whose keys postino makes at its first start)."""
import base64
import collections
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import HOSTNAME, SharedPostinoTestCase, dot_stuff, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PY_VERIFIER = os.path.join(HERE, "dkim_verify.py")
PERL_VERIFIER = os.path.join(HERE, "dkim_verify.pl")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-dkim puts dkimpy
OPENSSL = shutil.which("openssl") or "openssl"

USER, PW = "signer", "signer-secret-1"
SIGNED = "signed.example"      # keys made in setUpClass
NOKEYS = "nokeys.example"      # owned by the user, never given keys
LATE = "late.example"          # keys made while postino runs (hot reload)
IMPORTED = "imported.example"  # keys imported from PEM files made by openssl
ROTATED = "rotated.example"    # keygen, rotate, activate
RELAY_DOMAIN = HOSTNAME.split(".", 1)[1]  # dkim_domain by default: postino.test
LIFETIME = 3 * 86400  # dkim_lifetime in these tests (not the default 604800)

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
OVERSIGNED = ("from", "subject", "to", "date", "list-unsubscribe", "list-unsubscribe-post")
SIGNED_FIELDS = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "mime-version",
                 "content-type", "content-transfer-encoding", "list-unsubscribe",
                 "list-unsubscribe-post", "feedback-id")
RELOAD_TIMER = 2.0  # SERVER_DKIM_RELOAD_MS in relay/server.c
RELOAD_BOUND = 3 * RELOAD_TIMER  # a key change must sign the next messages within this
RECORD_RE = re.compile(r'^(\S+?)\.?\s+IN\s+TXT\s+\(((?:\s*"[^"]*")+)\s*\)\s*$', re.M)
CREATED_RE = re.compile(r"^\S+: selector (\S+) created \((rsa|ed25519)[^,]*, (\w+)\)$", re.M)
FIELD_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:((?:[^\r\n]*)(?:\r\n[ \t][^\r\n]*)*)\r\n", re.M)

_reported = set()  # notes printed once per run


def note_once(key, text):
    if key not in _reported:
        _reported.add(key)
        sys.stderr.write(f"\nnote: {text}\n")


# ---------------------------------------------------------------- the two verifiers


@functools.lru_cache(maxsize=None)
def dkimpy_python():
    """An interpreter that can import dkimpy (and PyNaCl, for ed25519): this one when it can,
    else Debian's /usr/bin/python3. Raises AssertionError, with what to install, when neither
    can (not cached: the next call looks again)."""
    if importlib.util.find_spec("dkim") is not None and \
            importlib.util.find_spec("nacl") is not None:
        return sys.executable
    if os.access(SYSTEM_PYTHON, os.X_OK):
        p = subprocess.run([SYSTEM_PYTHON, "-c", "import dkim, nacl"], capture_output=True,
                           text=True, timeout=30)
        if p.returncode == 0:
            return SYSTEM_PYTHON
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
    else:
        why = f"{SYSTEM_PYTHON} not found"
    raise AssertionError(f"dkimpy is needed: {sys.executable} cannot import it and {why}; "
                         "install python3-dkim (deploy/install-deps.sh)")


def perl_check():
    p = subprocess.run(["perl", "-MMail::DKIM::Verifier", "-MNet::DNS", "-e", "1"],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError("Mail::DKIM is needed: install libmail-dkim-perl "
                             f"(deploy/install-deps.sh); perl said: {p.stderr.strip()[:300]}")


def parse_records(text):
    """{name: [character-strings]} of the zone-file TXT records in postinoctl's output.
    Asserts that each string fits DNS's 255-octet limit."""
    out = {}
    for m in RECORD_RE.finditer(text):
        strings = re.findall(r'"([^"]*)"', m.group(2))
        for s in strings:
            if len(s.encode()) > 255:
                raise AssertionError(f"TXT string of {m.group(1)}: got {len(s.encode())} "
                                     f"octets, want at most 255: {s!r}")
        out[m.group(1).lower()] = strings
    return out


def run_verifiers(folder, message, records):
    """Runs both verifiers at once on message with records as their DNS. Returns (dkimpy, perl):
    dkimpy's JSON object, and {"version", "ed25519", "signatures": [{index, a, d, s, result,
    detail}], "overall": {result, detail}} from Mail::DKIM's lines."""
    fd, msg_path = tempfile.mkstemp(prefix="msg-", suffix=".eml", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(message)
    fd, rec_path = tempfile.mkstemp(prefix="records-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w") as f:
        for name, strings in records.items():
            f.write("\t".join([name] + strings) + "\n")
    try:
        procs = {
            "dkimpy": subprocess.Popen([dkimpy_python(), PY_VERIFIER, rec_path, msg_path],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL),
            "perl": subprocess.Popen(["perl", PERL_VERIFIER, rec_path, msg_path],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL),
        }
        outs = {}
        for name, p in procs.items():
            try:
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate(timeout=10)
                raise AssertionError(f"the {name} verifier did not finish within 60 s")
            if p.returncode != 0:
                raise AssertionError(f"the {name} verifier: exit {p.returncode}, want 0; "
                                     f"stderr={err.decode(errors='replace')[-1000:]!r}")
            outs[name] = out.decode(errors="replace")
    finally:
        os.unlink(msg_path)
        os.unlink(rec_path)
    py = json.loads(outs["dkimpy"])
    perl = {"signatures": [], "overall": None, "raw": outs["perl"]}
    for line in outs["perl"].splitlines():
        m = re.match(r"^mail-dkim version=(\S+) net-dns=(\S+) ed25519=(yes|no)$", line)
        if m:
            perl.update(version=m.group(1), net_dns=m.group(2), ed25519=m.group(3) == "yes")
            continue
        m = re.match(r"^signature index=(\d+) a=(\S*) d=(\S*) s=(\S*) result=(\S*) detail=(.*)$",
                     line)
        if m:
            perl["signatures"].append(dict(zip(("index", "a", "d", "s", "result", "detail"),
                                               (int(m.group(1)),) + m.groups()[1:])))
            continue
        m = re.match(r"^overall result=(\S*) detail=(.*)$", line)
        if m:
            perl["overall"] = {"result": m.group(1), "detail": m.group(2)}
    if "version" not in perl or perl["overall"] is None:
        raise AssertionError(f"dkim_verify.pl printed no version or overall line: {outs['perl']!r}")
    return py, perl


# ---------------------------------------------------------------- reading signed messages


def header_fields(message):
    """[(lowercase name, raw value)] of the header section, in order."""
    end = message.find(b"\r\n\r\n")
    head = message[:end + 2] if end >= 0 else message
    return [(m.group(1).decode().lower(), m.group(2)) for m in FIELD_RE.finditer(head)]


def signature_tags(message):
    """The DKIM-Signature fields of message, top to bottom, as {tag: value} with every
    whitespace octet removed (FWS is allowed anywhere in the tags read here)."""
    out = []
    for name, value in header_fields(message):
        if name != "dkim-signature":
            continue
        tags = {}
        for part in re.sub(rb"\s+", b"", value).decode().split(";"):
            if part:
                k, _, v = part.partition("=")
                tags[k] = v
        out.append(tags)
    return out


def reloads(postino):
    """How many times the workers have reloaded the key store (log lines) so far."""
    return postino.run_log().count("event=dkim_reload ")


def wait_reloaded(postino, since, timeout=10.0):
    """Waits until every worker logged a reload after `since` (a count from reloads())."""
    wait_for(lambda: reloads(postino) >= since + postino.workers, timeout,
             what=f"postino to reload its DKIM keys (event=dkim_reload after {since})")


def key_change(postino, *args):
    """Runs `postinoctl dkim ARGS...` (checked) and waits until postino has reloaded its keys.
    Every change is waited for in this way, so that no reload of an earlier change can still be
    on its way when the count is read. Returns postinoctl's stdout."""
    since = reloads(postino)
    out = postino.ctl("dkim", *args, check=True).stdout
    wait_reloaded(postino, since)
    return out


def created_selectors(ctl_stdout):
    """{algorithm ("rsa"/"ed25519"): (selector, state)} from keygen/rotate/import output."""
    return {m.group(2): (m.group(1), m.group(3)) for m in CREATED_RE.finditer(ctl_stdout)}


def public_key_of(pem_path, algorithm):
    """The p= value of a PEM private key, computed with openssl (independently of Postino):
    base64 of the SubjectPublicKeyInfo for RSA, of the raw 32-octet key for Ed25519."""
    p = subprocess.run([OPENSSL, "pkey", "-in", pem_path, "-pubout", "-outform", "DER"],
                       capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"openssl pkey -pubout: exit {p.returncode}: {p.stderr!r}")
    der = p.stdout
    return base64.b64encode(der if algorithm == "rsa" else der[-32:]).decode()


def full_message(from_addr, subject="DKIM test", extra_headers=(), body=None, to=None):
    """A message with every field Postino signs (and one it does not), CRLF line ends."""
    to = to or "Someone <someone@dest.example>"
    if body is None:
        body = (b"Hello,\r\n\r\nThis message is signed.  Twice, by default.\t \r\n"
                b".a line that starts with a dot\r\n"
                b"trailing spaces   \r\n\r\n\r\n")
    lines = [
        f"From: Sender Name <{from_addr}>",
        f"To: {to}",
        "Cc: other@dest.example",
        f"Subject: {subject}",
        "Date: Mon, 02 Nov 2026 10:00:00 +0000",
        f"Message-ID: <{time.monotonic_ns()}.{os.getpid()}@client.example>",
        f"Reply-To: <reply@{from_addr.split('@')[1]}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        f"List-Unsubscribe: <https://{from_addr.split('@')[1]}/u/1234>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Feedback-ID: 1234:campaign:postino",
        "X-Mailer: not signed",
    ] + list(extra_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class DkimTestCase(SharedPostinoTestCase):
    """The shared redis-server and postino of SharedPostinoTestCase, with the checks and the
    helpers below. Class set-up also makes sure both verifiers can run, and gives SIGNED keys
    of both algorithms (cls.keygen_stdout: what keygen printed), waiting for postino to load
    them."""

    @classmethod
    def prepare_class(cls):
        dkimpy_python()
        perl_check()
        cls.keygen_stdout = key_change(cls.postino, "keygen", SIGNED)

    def send(self, message, sender, rcpts=("someone@dest.example",), tls="starttls",
             mail_params=""):
        """Submits message (login as USER); returns (queue id, stored message, t window)."""
        port = self.postino.smtps_port if tls == "implicit" else self.postino.port
        c = self.login(port, USER, PW, tls=tls)
        before = int(time.time())
        qid = self.submit(c, sender, list(rcpts), message, mail_params=mail_params)
        after = int(time.time()) + 1
        c.cmd("QUIT")
        stored = self.redis.cmd("GET", f"pst:body:{qid}")
        self.assertIsNotNone(stored, f"pst:body:{qid}: got nothing, want the stored message")
        return qid, stored, (before, after)

    def records(self, *domains):
        """The TXT records `postinoctl dkim show` prints for domains, merged."""
        out = {}
        for d in domains:
            p = self.postino.ctl("dkim", "show", d, check=True)
            recs = parse_records(p.stdout)
            self.assertTrue(recs, f"dkim show {d}: got no records in {p.stdout!r}")
            out.update(recs)
        return out

    def verify(self, message, domains):
        py, perl = run_verifiers(self.postino.dir, message, self.records(*domains))
        note_once("versions",
                  f"DKIM verifiers: dkimpy {py.get('version')} ({py.get('python')}); "
                  f"Mail::DKIM {perl['version']} (Net::DNS {perl['net_dns']}), ed25519-sha256 "
                  f"support in Mail::DKIM: {'yes' if perl['ed25519'] else 'no'}")
        if not perl["ed25519"]:
            note_once("perl-ed25519",
                      f"Mail::DKIM {perl['version']} cannot verify ed25519-sha256 (no "
                      "Mail::DKIM::Algorithm::ed25519_sha256): ed25519 signatures are verified "
                      "by dkimpy only, rsa-sha256 ones by dkimpy and Mail::DKIM")
        return py, perl

    def report(self, py, perl):
        return (f"\ndkimpy: {json.dumps(py['signatures'])}\nMail::DKIM:\n{perl['raw']}")

    def assertVerifies(self, message, domains, algorithms=ALGORITHMS):
        """Both verifiers pass every signature (Mail::DKIM: every one it supports); there are
        as many signatures as algorithms, in that order. Returns the verifiers' results."""
        py, perl = self.verify(message, domains)
        got = [s["a"] for s in py["signatures"]]
        self.assertEqual(got, list(algorithms),
                         f"signatures (dkimpy): got a= {got}, want {list(algorithms)}"
                         + self.report(py, perl))
        bad = [s for s in py["signatures"] if s["result"] != "pass"]
        self.assertFalse(bad, f"dkimpy: got failures {bad}, want every signature to pass"
                         + self.report(py, perl))
        got = [s["a"] for s in perl["signatures"]]
        self.assertEqual(got, list(algorithms),
                         f"signatures (Mail::DKIM): got a= {got}, want {list(algorithms)}"
                         + self.report(py, perl))
        for s in perl["signatures"]:
            if s["a"] == "ed25519-sha256" and not perl["ed25519"]:
                continue
            self.assertEqual(s["result"], "pass",
                             f"Mail::DKIM, signature {s['index']} ({s['a']} d={s['d']} "
                             f"s={s['s']}): got {s['result']} ({s['detail']}), want pass"
                             + self.report(py, perl))
        self.assertEqual(perl["overall"]["result"], "pass",
                         f"Mail::DKIM overall: got {perl['overall']}, want pass"
                         + self.report(py, perl))
        return py, perl

    def assertFailsVerification(self, message, domains, what):
        """Neither verifier passes any signature of message."""
        py, perl = self.verify(message, domains)
        self.assertTrue(py["signatures"], f"{what}: dkimpy found no signature")
        passed = [s for s in py["signatures"] if s["result"] == "pass"]
        self.assertFalse(passed, f"{what}: dkimpy got pass for {passed}, want fail"
                         + self.report(py, perl))
        self.assertTrue(perl["signatures"], f"{what}: Mail::DKIM found no signature")
        passed = [s for s in perl["signatures"] if s["result"] == "pass"]
        self.assertFalse(passed, f"{what}: Mail::DKIM got pass for {passed}, want fail"
                         + self.report(py, perl))
        self.assertNotEqual(perl["overall"]["result"], "pass",
                            f"{what}: Mail::DKIM overall: got {perl['overall']}, want no pass")
        return py, perl

    def assertTags(self, stored, d, window, algorithms=ALGORITHMS, selectors=None):
        """The tags of every signature: v, a, c, d, s, t, x, no l, and h= with the fields
        present and the oversigned ones once more. selectors: {a: s} wanted."""
        sigs = signature_tags(stored)
        self.assertEqual([s.get("a") for s in sigs], list(algorithms),
                         f"a= of the DKIM-Signature fields: got {[s.get('a') for s in sigs]}, "
                         f"want {list(algorithms)}\n{stored[:3000]!r}")
        counts = collections.Counter(n for n, _ in header_fields(stored))
        for tags in sigs:
            where = f"{tags.get('a')} signature {tags}"
            self.assertEqual(tags.get("v"), "1", f"v=: {where}")
            self.assertEqual(tags.get("c"), "relaxed/relaxed", f"c=: got {tags.get('c')}, "
                                                               f"want relaxed/relaxed; {where}")
            self.assertEqual(tags.get("d"), d, f"d=: got {tags.get('d')}, want {d}; {where}")
            self.assertNotIn("l", tags, f"l= present, want none: {where}")
            if selectors is not None:
                self.assertEqual(tags.get("s"), selectors[tags["a"]],
                                 f"s=: got {tags.get('s')}, want {selectors[tags['a']]}; {where}")
            t, x = int(tags.get("t", "-1")), int(tags.get("x", "-1"))
            self.assertTrue(window[0] <= t <= window[1],
                            f"t=: got {t}, want between {window[0]} and {window[1]}; {where}")
            self.assertEqual(x - t, LIFETIME, f"x= - t=: got {x - t}, want dkim_lifetime "
                                              f"{LIFETIME}; {where}")
            h = [n.lower() for n in tags.get("h", "").split(":")]
            for name in OVERSIGNED:
                self.assertEqual(h.count(name), counts[name] + 1,
                                 f"h= names {name} {h.count(name)} times, want "
                                 f"{counts[name] + 1} ({counts[name]} present + 1); h={h}")
            for name in SIGNED_FIELDS:
                if counts[name]:
                    self.assertIn(name, h, f"h= lacks {name}, present in the message; h={h}")
            self.assertNotIn("x-mailer", h, f"h= names a field not in the signed list: {h}")
        return sigs


# ---------------------------------------------------------------- default policy, both algorithms


class DkimSigningTest(DkimTestCase):
    """Default policy (dkim_unknown_domain = sign, dkim_algorithms = both), dkim_lifetime set."""

    postino_settings = dict(dkim_lifetime=LIFETIME)
    postino_users = ((USER, [SIGNED, NOKEYS, LATE, IMPORTED, ROTATED], PW),)

    @classmethod
    def prepare_class(cls):
        super().prepare_class()
        cls.selectors = created_selectors(cls.keygen_stdout)

    def signed_selectors(self):
        return {"rsa-sha256": self.selectors["rsa"][0],
                "ed25519-sha256": self.selectors["ed25519"][0]}

    def test_keygen_made_active_keys_and_printed_the_records_show_prints(self):
        self.assertEqual(sorted(self.selectors), ["ed25519", "rsa"],
                         f"keygen made: got {self.selectors}, want one rsa and one ed25519 key\n"
                         f"{self.keygen_stdout}")
        for alg, (sel, state) in self.selectors.items():
            self.assertEqual(state, "active", f"{alg} selector {sel}: got {state}, want active")
        printed = parse_records(self.keygen_stdout)
        shown = self.records(SIGNED)
        self.assertEqual(printed, shown, f"keygen printed {printed}, dkim show prints {shown}")
        for alg, (sel, _) in self.selectors.items():
            name = f"{sel}._domainkey.{SIGNED}"
            self.assertIn(name, shown, f"dkim show: got {sorted(shown)}, want {name}")
            self.assertTrue("".join(shown[name]).startswith(f"v=DKIM1; k={alg}; p="),
                            f"record {name}: got {shown[name]}")

    def test_signed_over_starttls_and_implicit_tls_both_verifiers_pass(self):
        for tls in ("starttls", "implicit"):
            with self.subTest(tls=tls):
                msg = full_message(f"news@{SIGNED}", subject=f"over {tls}")
                qid, stored, window = self.send(msg, f"bounce@{SIGNED}", tls=tls)
                self.assertTrue(stored.endswith(msg),
                                f"stored message does not end with the one sent: got "
                                f"{stored[-300:]!r}")
                self.assertTags(stored, SIGNED, window, selectors=self.signed_selectors())
                self.assertVerifies(stored, [SIGNED])

    def test_header_prepended_after_signing_fails_both_verifiers(self):
        msg = full_message(f"news@{SIGNED}")
        _, stored, _ = self.send(msg, f"bounce@{SIGNED}")
        self.assertVerifies(stored, [SIGNED])
        for added in (b"Subject: a second subject\r\n", b"From: <ceo@" + SIGNED.encode() + b">\r\n",
                      b"To: <more@dest.example>\r\n", b"Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n",
                      b"List-Unsubscribe: <https://evil.example/u>\r\n"):
            with self.subTest(prepended=added):
                self.assertFailsVerification(added + stored, [SIGNED], f"prepended {added!r}")

    def test_body_changed_after_signing_fails_both_verifiers(self):
        msg = full_message(f"news@{SIGNED}", body=b"Pay invoice 100 EUR.\r\nThanks.\r\n")
        _, stored, _ = self.send(msg, f"bounce@{SIGNED}")
        self.assertVerifies(stored, [SIGNED])
        changed = {
            "a changed byte": stored.replace(b"100 EUR", b"900 EUR"),
            "a line appended (no l=)": stored + b"P.S. also this\r\n",
            "a signed header's value changed": stored.replace(b"Subject: DKIM test",
                                                              b"Subject: DKIM tests"),
        }
        for what, message in changed.items():
            with self.subTest(what=what):
                self.assertNotEqual(message, stored, f"{what}: the test changed nothing")
                self.assertFailsVerification(message, [SIGNED], what)

    def test_unknown_from_domain_is_signed_with_dkim_domain(self):
        msg = full_message(f"news@{NOKEYS}")
        _, stored, window = self.send(msg, f"bounce@{NOKEYS}")
        relay = {}  # {a=: selector} of the keys postino made for dkim_domain at start
        listing = self.postino.ctl("dkim", "list", check=True).stdout
        for m in re.finditer(rf"^{re.escape(RELAY_DOMAIN)} +(\S+) +(rsa|ed25519)\b.* active ",
                             listing, re.M):
            relay[f"{m.group(2)}-sha256"] = m.group(1)
        self.assertEqual(sorted(relay), sorted(ALGORITHMS),
                         f"dkim list: got active keys {relay} for {RELAY_DOMAIN}, want one of "
                         f"each algorithm, made by postino at start\n{listing}")
        self.assertTags(stored, RELAY_DOMAIN, window, selectors=relay)
        self.assertVerifies(stored, [RELAY_DOMAIN])

    def test_d_follows_the_from_header_not_mail_from(self):
        cases = ((f"news@{SIGNED}", f"bounce@{NOKEYS}", SIGNED),
                 (f"news@{NOKEYS}", f"bounce@{SIGNED}", RELAY_DOMAIN),
                 (f"news@{SIGNED.upper()}", f"bounce@{SIGNED}", SIGNED))
        for from_addr, sender, want in cases:
            with self.subTest(from_header=from_addr, mail_from=sender):
                _, stored, window = self.send(full_message(from_addr), sender)
                got = [t.get("d", "").lower() for t in signature_tags(stored)]
                self.assertEqual(got, [want, want], f"d= for From: {from_addr}, MAIL FROM "
                                                    f"{sender}: got {got}, want {want}")
                self.assertVerifies(stored, [want])

    def test_8bit_body_and_long_header_lines_verify(self):
        long_subject = "long " + "x" * 900  # one unfolded line of ~920 octets
        many_to = ",\r\n\t".join(f"Person {i} <person{i}@dest.example>" for i in range(40))
        body = ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u20ac 100\r\n".encode() +
                b"latin-1 octets: \xe9\xe8\xff\r\n" + b"y" * 990 + b"\r\n" +
                b"  indented line with trailing tab\t\r\n")
        msg = full_message(f"news@{SIGNED}", subject=long_subject, to=many_to, body=body,
                           extra_headers=["X-Long: " + "z" * 950,
                                          "Comments: folded\r\n   with  spaces \r\n\tand tabs"])
        for line in msg.split(b"\r\n"):
            self.assertLessEqual(len(line), 998, "the test's own message breaks RFC 5322")
        # and UTF-8 in signed header fields (RFC 6532), with SMTPUTF8
        utf8 = full_message(f"news@{SIGNED}", subject="Cr\u00e8me br\u00fbl\u00e9e \u2013 " +
                            "\u00e9" * 300, to="J\u00fcrgen M\u00fcller <jm@dest.example>",
                            body=body)
        for what, message, params in (("8-bit body, long lines", msg, " BODY=8BITMIME"),
                                      ("UTF-8 header fields", utf8, " SMTPUTF8 BODY=8BITMIME")):
            with self.subTest(what=what):
                _, stored, window = self.send(message, f"bounce@{SIGNED}", mail_params=params)
                self.assertTrue(stored.endswith(message),
                                "stored message differs from the one sent")
                self.assertTags(stored, SIGNED, window)
                self.assertVerifies(stored, [SIGNED])

    def test_several_recipients(self):
        rcpts = [f"r{i}@dest{i % 3}.example" for i in range(7)]
        msg = full_message(f"news@{SIGNED}", to=", ".join(f"<{r}>" for r in rcpts[:4]))
        qid, stored, window = self.send(msg, f"bounce@{SIGNED}", rcpts=rcpts)
        info = self.redis.hgetall(f"pst:msg:{qid}")
        self.assertEqual(info.get("rcpts"), str(len(rcpts)).encode(),
                         f"pst:msg:{qid} rcpts: got {info.get('rcpts')}, want {len(rcpts)}")
        self.assertTags(stored, SIGNED, window)
        self.assertVerifies(stored, [SIGNED])

    def test_keys_made_while_running_sign_within_the_reload_period(self):
        msg = full_message(f"news@{LATE}")
        _, stored, _ = self.send(msg, f"bounce@{LATE}")
        got = [t.get("d") for t in signature_tags(stored)]
        self.assertEqual(got, [RELAY_DOMAIN] * 2,
                         f"before keygen: got d= {got}, want the fallback {RELAY_DOMAIN}")
        since = reloads(self.postino)
        p = self.postino.ctl("dkim", "keygen", LATE, check=True)
        start = time.monotonic()
        made = created_selectors(p.stdout)
        while True:
            _, stored, window = self.send(full_message(f"news@{LATE}"), f"bounce@{LATE}")
            elapsed = time.monotonic() - start
            domains = [t.get("d") for t in signature_tags(stored)]
            if domains == [LATE, LATE]:
                break
            self.assertEqual(domains, [RELAY_DOMAIN] * 2, f"got d= {domains} while waiting")
            self.assertLess(elapsed, RELOAD_BOUND,
                            f"messages still signed with d={RELAY_DOMAIN} {elapsed:.1f} s after "
                            f"keygen {LATE} (timer {RELOAD_TIMER} s): want d={LATE} within "
                            f"{RELOAD_BOUND} s")
            time.sleep(0.1)
        wait_reloaded(self.postino, since)  # its log line, for the key changes of other tests
        self.assertTags(stored, LATE, window, selectors={"rsa-sha256": made["rsa"][0],
                                                          "ed25519-sha256": made["ed25519"][0]})
        self.assertVerifies(stored, [LATE])

    def test_imported_pem_keys_sign_with_their_selectors(self):
        tmp = tempfile.mkdtemp(prefix="pst-dkim-import-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        keys = {"rsa": ("old-provider-2020", ["-algorithm", "RSA", "-pkeyopt",
                                              "rsa_keygen_bits:2048"]),
                "ed25519": ("old-provider-ed", ["-algorithm", "ED25519"])}
        for alg, (selector, gen_args) in keys.items():
            pem = os.path.join(tmp, f"{alg}.pem")
            g = subprocess.run([OPENSSL, "genpkey"] + gen_args + ["-out", pem],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(g.returncode, 0, f"openssl genpkey {alg}: {g.stderr}")
            out = key_change(self.postino, "import", IMPORTED, "--selector", selector, "--key",
                             pem)
            self.assertEqual(created_selectors(out).get(alg), (selector, "active"),
                             f"dkim import {alg}: got {out!r}")
            name = f"{selector}._domainkey.{IMPORTED}"
            record = "".join(self.records(IMPORTED).get(name, []))
            want = public_key_of(pem, alg)
            self.assertEqual(record, f"v=DKIM1; k={alg}; p={want}",
                             f"record of {name}: got {record!r}, want the key's public half "
                             "as openssl computes it")
        _, stored, window = self.send(full_message(f"news@{IMPORTED}"), f"bounce@{IMPORTED}")
        self.assertTags(stored, IMPORTED, window,
                        selectors={"rsa-sha256": keys["rsa"][0],
                                   "ed25519-sha256": keys["ed25519"][0]})
        self.assertVerifies(stored, [IMPORTED])

    def test_rotated_keys_sign_only_once_activated(self):
        old = created_selectors(key_change(self.postino, "keygen", ROTATED))

        def signed_by(want, step):
            _, stored, window = self.send(full_message(f"news@{ROTATED}"), f"bounce@{ROTATED}")
            self.assertTags(stored, ROTATED, window, selectors={
                "rsa-sha256": want["rsa"], "ed25519-sha256": want["ed25519"]})
            with self.subTest(step=step):
                self.assertVerifies(stored, [ROTATED])

        selectors = {alg: old[alg][0] for alg in ("rsa", "ed25519")}
        signed_by(selectors, "before rotate")
        out = key_change(self.postino, "rotate", ROTATED)
        new = created_selectors(out)
        self.assertEqual({a: s[1] for a, s in new.items()},
                         {"rsa": "pending", "ed25519": "pending"},
                         f"dkim rotate: got {out!r}, want a pending key of each algorithm")
        signed_by(selectors, "rotated, nothing activated")
        for alg in ("rsa", "ed25519"):
            key_change(self.postino, "activate", ROTATED, "--selector", new[alg][0])
            selectors[alg] = new[alg][0]
            signed_by(selectors, f"{alg} activated")


# ---------------------------------------------------------------- dkim_unknown_domain = refuse


class DkimRefuseUnknownDomainTest(DkimTestCase):
    postino_settings = dict(dkim_lifetime=LIFETIME, dkim_unknown_domain="refuse")
    postino_users = ((USER, [SIGNED, NOKEYS], PW),)

    def queue_state(self):
        stat = self.redis.hgetall("pst:stat")
        return {"pst:msgs": self.redis.msgs_count(),
                "pst:body:*": len(self.redis.cmd("KEYS", "pst:body:*") or []),
                "messages_received_total": stat.get("messages_received_total")}

    def test_unknown_domain_gets_550_at_end_of_data_and_nothing_is_queued(self):
        before = self.queue_state()
        c = self.login(self.postino.port, USER, PW)
        self.assertReply(c.cmd(f"MAIL FROM:<bounce@{NOKEYS}>"), 250, "2.1.0", conn=c)
        self.assertReply(c.cmd("RCPT TO:<someone@dest.example>"), 250, "2.1.5", conn=c)
        r354, final = c.data(dot_stuff(full_message(f"news@{NOKEYS}")))
        self.assertReply(r354, 354, conn=c)
        self.assertReply(final, 550, "5.7.1", conn=c)
        after = self.queue_state()
        self.assertEqual(after, before, f"queue after the refusal: got {after}, want {before}")
        # the session goes on, and a domain with keys is signed and queued
        msg = full_message(f"news@{SIGNED}")
        qid = self.submit(c, f"bounce@{SIGNED}", ["someone@dest.example"], msg)
        stored = self.redis.cmd("GET", f"pst:body:{qid}")
        self.assertIsNotNone(stored, f"pst:body:{qid}: got nothing")
        self.assertVerifies(stored, [SIGNED])


# ---------------------------------------------------------------- dkim_algorithms = rsa


class DkimRsaOnlyTest(DkimTestCase):
    """SIGNED has an ed25519 key too: it must stay unused."""

    postino_settings = dict(dkim_lifetime=LIFETIME, dkim_algorithms="rsa")
    postino_users = ((USER, [SIGNED, NOKEYS], PW),)

    def test_one_rsa_signature(self):
        for domain in (SIGNED, NOKEYS):
            with self.subTest(from_domain=domain):
                _, stored, window = self.send(full_message(f"news@{domain}"),
                                              f"bounce@{domain}")
                d = SIGNED if domain == SIGNED else RELAY_DOMAIN
                self.assertTags(stored, d, window, algorithms=["rsa-sha256"])
                self.assertVerifies(stored, [d], algorithms=["rsa-sha256"])


if __name__ == "__main__":
    unittest.main()
