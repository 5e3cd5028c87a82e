#!/bin/bash
# Paths agree: what 'p11mtls --version' names is where this build installs the
# provider, the preload library and the configuration (meson's own install plan), all
# under the one prefix; and the help texts, the generated conf/ examples and the man
# pages name the same paths.
# shellcheck source=../fixtures/lib.sh
source "$(dirname "$0")/../fixtures/lib.sh"
fx_workdir doc-paths
plan 9
version=$("$P11M_TOOL" --version)
field() { sed -n "s/^$1: *//p" <<<"$version"; }
prefix=$(field prefix) provider=$(field provider) preload=$(field preload)
conf=$(field configuration)
# The install plan: "build file": "destination" (json), one destination per line.
plan_of() {
    /usr/bin/python3 -c 'import json, sys
for src, dst in json.load(open(sys.argv[1])).items():
    if src.endswith("/" + sys.argv[2]): print(dst)' \
        "$P11M_BUILDDIR/meson-info/intro-installed.json" "$1"
}
is "--version: the provider is installed there" "$(plan_of provider/p11mtls.so)" "$provider"
is "--version: the preload library is installed there" \
    "$(plan_of shim/libp11mtls-preload.so)" "$preload"
is "--version: the configuration example is installed there" \
    "$(plan_of conf/p11mtls.conf)" "$conf"
outside=
while read -r dst; do
    case $dst in "$prefix"/* | /etc/*) ;; *) outside+="$dst " ;; esac
done < <(/usr/bin/python3 -c 'import json, sys
print("\n".join(json.load(open(sys.argv[1])).values()))' \
    "$P11M_BUILDDIR/meson-info/intro-installed.json")
# /etc only with the prefix /usr (meson's rule for sysconfdir).
[ "$prefix" = /usr ] || outside+=$(grep -o '"/etc/[^"]*"' \
    "$P11M_BUILDDIR/meson-info/intro-installed.json" | tr '\n' ' ')
is "every file is installed under the prefix $prefix" "$outside" ""
help=$("$P11M_TOOL" --help)
like "p11mtls --help names the provider, preload library and configuration" \
    "$(grep -cF -e "$provider" -e "$preload" -e "$conf" <<<"$help")" "^[3-9]"
like "p11mtls run --help names the preload library" "$("$P11M_TOOL" run --help)" "$preload"
like "p11mtls doctor --help names the configuration" "$("$P11M_TOOL" doctor --help)" "$conf"
c=$P11M_BUILDDIR/conf
is "conf/openssl-p11mtls.cnf loads the installed provider" \
    "$(sed -n 's/^module = //p' "$c/openssl-p11mtls.cnf")" "$provider"
missing=
for page in p11mtls.1 p11mtls.conf.5 p11mtls-provider.7; do
    grep -qF "$provider" "$P11M_BUILDDIR/man/$page.scd" || missing+="$page:provider "
done
grep -qF "$preload" "$P11M_BUILDDIR/man/p11mtls.conf.5.scd" || missing+="p11mtls.conf.5:preload "
grep -qF "$conf" "$P11M_BUILDDIR/man/p11mtls.conf.5.scd" || missing+="p11mtls.conf.5:configuration "
grep -qF "$preload" "$c/p11mtls.conf" || missing+="conf/p11mtls.conf:preload "
is "the man pages and conf/p11mtls.conf name the same paths" "$missing" ""
finish
