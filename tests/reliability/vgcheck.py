#!/usr/bin/python3
"""vgcheck.py LOG: classify what valgrind memcheck reported in LOG.

Prints one line "errors=N summary=<ERROR SUMMARY count>" and then the first error record:
an invalid access, a use of uninitialised memory, a bad free, or a block "definitely
lost" (blocks "indirectly lost" are counted with the block that owns them). Leaks in
third-party code are suppressed before (valgrind.supp). Exit 0 when valgrind finished
and reported no error.
"""
import re
import sys

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

errors = []
for rec in records:
    head = rec[0]
    is_leak = re.search(r"are (definitely|indirectly) lost in loss record", head)
    is_error = re.match(r"(Invalid |Conditional jump|Use of uninitialised|Syscall param|"
                        r"Mismatched free|Source and destination overlap|"
                        r"Argument .* of function)", head)
    if not (is_leak or is_error):
        continue
    if is_leak and "indirectly" in head:
        continue  # counted with the block that owns it
    else:
        errors.append(rec)

print(f"errors={len(errors)} summary={summary.group(1) if summary else 'none'}")
if errors:
    print("\n".join(errors[0][:25]))
sys.exit(0 if summary and not errors else 1)
