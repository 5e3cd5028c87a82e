#!/bin/bash
# The man pages document what the code accepts, no more and no less: every command and
# option of 'p11mtls --help' in p11mtls(1), every key shim/conf.c accepts in
# p11mtls.conf(5), every parameter of provider/provider.c in p11mtls-provider(7), every
# P11MTLS_* environment variable; and the conf/ examples use only documented keys.
# The lists come from the code (see docs.py), so a new command, option or key fails
# here until it is documented. The pages also render without groff warnings.
# shellcheck source=../fixtures/lib.sh
source "$(dirname "$0")/../fixtures/lib.sh"
fx_workdir doc-man
plan 28
out=$(/usr/bin/python3 "$P11M_SRCDIR/tests/doc/docs.py" "$P11M_TOOL" "$P11M_SRCDIR" \
    "$P11M_BUILDDIR") || bail_out "docs.py failed"
diag "$(grep '^count ' <<<"$out" | tr '\n' ';')"
agree() { # NAME: nothing listed after the colon
    local line
    line=$(grep -F -m1 "$1:" <<<"$out")
    [ -n "$line" ] || { fail "$1 (not checked: docs.py printed no such line)"; return; }
    line=${line#"$1:"}
    is "$1" "${line# }" ""
}
found() { # NAME: the extraction found something (else the checks above prove nothing)
    local n
    n=$(sed -n "s/^count $1: //p" <<<"$out")
    check "found $1 in the code (${n:-0})" test "${n:-0}" -gt 0
}
found commands
found options
agree "man1 commands undocumented"
agree "man1 commands that do not exist"
agree "man1 options undocumented"
agree "man1 options that do not exist"
agree "man1 global options undocumented"
found "conf main keys"
found "conf identity keys"
found "conf rule keys"
for s in main identity rule; do
    agree "man5 $s keys undocumented"
    agree "man5 $s keys that do not exist"
done
agree "conf.c keys not named in man5"
found "provider parameters"
agree "man7 parameters undocumented"
agree "man7 parameters that do not exist"
for s in main identity rule; do
    agree "conf/p11mtls.conf $s keys undocumented"
done
agree "conf/p11mtls.conf provider_params undocumented"
agree "conf/openssl-p11mtls.cnf keys undocumented"
agree "environment variables undocumented"
agree "unsubstituted @VARIABLES@"
# Rendering: groff's own warnings (bad requests, unknown escapes), all pages.
warnings=
for page in "$P11M_BUILDDIR"/man/*.[157]; do
    w=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1) || w+=" (groff failed)"
    [ -z "$w" ] || warnings+="${page##*/}: $w "
done
is "the man pages render without groff warnings" "$warnings" ""
finish
