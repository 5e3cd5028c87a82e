#!/bin/bash
# tests/RELIABILITY.md stays true to the suite: every test it names is registered in this
# build, every reliability test is named there, every known issue the tests mark TODO is
# listed there, and the top README links to it.
source "$(dirname "$0")/common.sh"
doc=$P11M_SRCDIR/tests/RELIABILITY.md
[ -f "$doc" ] || bail_out "missing: $doc"
plan 4
out=$(/usr/bin/python3 - "$doc" "$P11M_BUILDDIR/meson-info/intro-tests.json" \
    "$P11M_SRCDIR/tests/reliability" <<'PY'
import glob, json, re, sys
doc = open(sys.argv[1]).read()
registered = {t["name"]: t["suite"] for t in json.load(open(sys.argv[2]))}
named = set(re.findall(r"`((?:reliability|fuzz|provider|shim|tool|fixtures)-[A-Za-z0-9_-]+)`", doc))
print("unregistered:", " ".join(sorted(n for n in named if n not in registered)))
ours = [n for n, s in registered.items() if "p11mtls:reliability" in s
        and not n.startswith("fuzz-long-")
        and n not in ("reliability-shellcheck", "reliability-doc", "reliability-soak")]
print("undocumented:", " ".join(sorted(n for n in ours if n not in named)))
reasons = set()
for f in glob.glob(sys.argv[3] + "/t-*.sh"):
    reasons |= set(re.findall(r'"([^"]*?) \(reported\)"', open(f).read()))
print("unlisted:", " | ".join(sorted(r for r in reasons if r not in doc)))
print("todo-count:", len(reasons))
PY
)
is "every test RELIABILITY.md names is registered" "$(sed -n 's/^unregistered: *//p' <<<"$out")" ""
is "every reliability test is named in RELIABILITY.md" "$(sed -n 's/^undocumented: *//p' <<<"$out")" ""
is "every known issue marked TODO is listed ($(sed -n 's/^todo-count: *//p' <<<"$out") found)" \
    "$(sed -n 's/^unlisted: *//p' <<<"$out")" ""
like "README links to it under ## Reliability" \
    "$(sed -n '/^## Reliability/,/^## /p' "$P11M_SRCDIR/README.md")" "tests/RELIABILITY.md"
finish
