#!/usr/bin/python3
"""vgcheck.py LOG: classify what valgrind memcheck reported in LOG.

Prints one line "errors=N known=K summary=<ERROR SUMMARY count>" and then the first
unexplained record. "known": a leak of the core's process-lifetime registries (token and
module entries) that valgrind sees as lost only because OpenSSL dlcloses p11mtls.so at
exit (reported; see tests/RELIABILITY.md). Everything else counts as an error.
Exit 0 when valgrind finished and found no unexplained error.
"""
import re
import sys

KNOWN = re.compile(r"by 0x[0-9A-F]+: (token_new|token_entry|module_load) \(")
text = open(sys.argv[1], errors="replace").read()
summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
records, cur = [], []
for line in text.splitlines():
    body = re.sub(r"^==\d+== ?", "", line)
    if body == "":
        if cur:
            records.append(cur)
        cur = []
    else:
        cur.append(body)
if cur:
    records.append(cur)

errors, known = [], 0
for rec in records:
    head = rec[0]
    is_leak = re.search(r"are (definitely|indirectly) lost in loss record", head)
    is_error = re.match(r"(Invalid |Conditional jump|Use of uninitialised|Syscall param|"
                        r"Mismatched free|Source and destination overlap|"
                        r"Argument .* of function)", head)
    if not (is_leak or is_error):
        continue
    if is_leak and any(KNOWN.search(l) for l in rec):
        known += 1
    elif is_leak and "indirectly" in head:
        continue  # counted with the block that owns it
    else:
        errors.append(rec)

print(f"errors={len(errors)} known={known} summary={summary.group(1) if summary else 'none'}")
if errors:
    print("\n".join(errors[0][:25]))
sys.exit(0 if summary and not errors else 1)
