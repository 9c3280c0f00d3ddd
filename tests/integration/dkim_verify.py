#!/usr/bin/python3
"""dkim_verify.py: verifies every DKIM-Signature of one message with dkimpy (Debian
python3-dkim), the first of the two independent verifiers test_dkim.py uses (the second is
Mail::DKIM, dkim_verify.pl). No network: DNS answers come from a file.

    python3 dkim_verify.py RECORDS MESSAGE

RECORDS holds one TXT record a line, "NAME<TAB>STRING[<TAB>STRING...]" (NAME without the final
dot); the strings are joined as a resolver's answer would be. A name not in the file has no
record. MESSAGE is the message as stored (CRLF line ends).

Prints one JSON object: {"verifier": "dkimpy", "version": V, "signatures": [{"index", "a", "d",
"s", "result" ("pass" or "fail"), "detail"}...]}. Exit status 0 when the verifier ran (whatever
the results), 2 on a usage or I/O error or when dkimpy cannot be imported.

Run by test_dkim.py with an interpreter that has dkimpy: its own when it can import it, else
/usr/bin/python3 (Debian's, where python3-dkim installs it). Standard library and dkimpy only.
"""
import json
import sys


def main(argv):
    if len(argv) != 3:
        print("usage: dkim_verify.py RECORDS MESSAGE", file=sys.stderr)
        return 2
    try:
        import dkim
    except ImportError as e:
        print(f"dkim_verify.py: cannot import dkimpy with {sys.executable}: {e}",
              file=sys.stderr)
        return 2
    try:
        from importlib.metadata import version
        dkimpy_version = version("dkimpy")
    except Exception:  # noqa: BLE001 - the version is for the report only
        dkimpy_version = "unknown"

    records = {}
    try:
        with open(argv[1], "rb") as f:
            for line in f.read().splitlines():
                if not line or line.startswith(b"#"):
                    continue
                name, *strings = line.split(b"\t")
                records[name.lower().rstrip(b".")] = b"".join(strings)
        with open(argv[2], "rb") as f:
            message = f.read()
    except OSError as e:
        print(f"dkim_verify.py: {e}", file=sys.stderr)
        return 2

    lookups = []

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        key = name.lower().rstrip(b".")
        lookups.append(key.decode(errors="replace"))
        return records.get(key)

    out = {"verifier": "dkimpy", "version": dkimpy_version, "python": sys.executable,
           "signatures": []}
    count = sum(1 for name, _ in dkim.DKIM(message).headers
                if name.lower() == b"dkim-signature")
    for index in range(count):
        d = dkim.DKIM(message)
        entry = {"index": index}
        try:
            ok = d.verify(idx=index, dnsfunc=dnsfunc)
            entry["result"] = "pass" if ok else "fail"
            entry["detail"] = "verified" if ok else "signature or body hash does not match"
        except dkim.DKIMException as e:
            entry["result"] = "fail"
            entry["detail"] = f"{type(e).__name__}: {e}"
        fields = d.signature_fields or {}
        for tag in ("a", "d", "s"):
            value = fields.get(tag.encode())
            entry[tag] = value.decode(errors="replace") if value is not None else None
        out["signatures"].append(entry)
    out["lookups"] = lookups
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
