#!/bin/bash
# The Debian package, as a user gets it: dpkg-buildpackage builds it from a copy of
# this source tree (without build directories), lintian finds no error or warning, it
# installs with 'apt-get install ./p11mtls_*.deb', installing turns nothing on, the
# demo's steps pass against the installed files only (tokens/demo --installed: the
# p11mtls on PATH, the provider and preload library at its built-in paths), and
# 'apt-get remove' then 'apt-get purge' leave nothing behind.
#
# Root only (it installs into this machine), and only on a machine where p11mtls is
# not installed already. Registered with -Dpackage_tests=true (.ci/run does).
source "$(dirname "$0")/../fixtures/lib.sh"
fx_workdir package-deb
[ "$(id -u)" -eq 0 ] || bail_out "the package test installs a package: run it as root"
if dpkg-query -W -f='${db:Status-Abbrev}' p11mtls 2>/dev/null | grep -q '^.[^n]'; then
    bail_out "p11mtls is installed already: the test would remove it (dpkg -P p11mtls first)"
fi
export DEBIAN_FRONTEND=noninteractive
plan 23

# apt and dpkg may be busy (another apt run): retry on the lock only.
apt_get() {
    local i out rc
    for i in $(seq 30); do
        out=$(apt-get -y -q -o DPkg::Lock::Timeout=60 "$@" 2>&1)
        rc=$?
        [ $rc -ne 0 ] && grep -q "Could not get lock" <<<"$out" && { sleep 5; continue; }
        printf '%s\n' "$out" >>"$WORK/apt.log"
        return $rc
    done
    printf '%s\n' "$out" >>"$WORK/apt.log"
    return 1
}

# ---- build
src=$WORK/src/p11mtls
mkdir -p "$src"
if git -C "$P11M_SRCDIR" rev-parse --git-dir >/dev/null 2>&1; then
    # What the working tree has (committed or not), without ignored files and builds.
    # (--ignore-failed-read: files deleted but not committed yet)
    (cd "$P11M_SRCDIR" && git ls-files -z --cached --others --exclude-standard |
        tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -x -C "$src"
else
    tar -C "$P11M_SRCDIR" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -x -C "$src"
fi
(cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -b -us -uc) \
    >"$WORK/build.log" 2>&1
rc=$?
[ $rc -eq 0 ] || tail -n 30 "$WORK/build.log" | sed 's/^/# /'
is "dpkg-buildpackage -b -us -uc succeeds" "$rc" 0
debs=("$WORK"/src/p11mtls_*_"$(dpkg --print-architecture)".deb)
[ -f "${debs[0]}" ] || bail_out "no p11mtls .deb was built (see $WORK/build.log)"
deb=${debs[0]}
changes=("$WORK"/src/p11mtls_*.changes)

lint=$(lintian --fail-on error,warning "${changes[0]}" 2>&1)
rc=$?
is "lintian: no error or warning ($(grep -c '^[EWIN]:' <<<"$lint") tags shown)" \
    "$rc $(grep -E '^[EW]:' <<<"$lint" | tr '\n' ' ')" "0 "

# ---- what the package holds
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
modulesdir=$(pkg-config --variable=modulesdir libcrypto)
contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|')
want="/usr/bin/p11mtls $modulesdir/p11mtls.so /usr/lib/$multiarch/p11mtls/libp11mtls-preload.so
/etc/p11mtls/p11mtls.conf /etc/p11mtls/openssl-p11mtls.cnf /usr/share/man/man1/p11mtls.1.gz
/usr/share/man/man5/p11mtls.conf.5.gz /usr/share/man/man7/p11mtls-provider.7.gz
/usr/share/bash-completion/completions/p11mtls"
missing=
for f in $want; do grep -qxF "$f" <<<"$contents" || missing+="$f "; done
is "the package holds the tool, provider, preload library, examples, man pages, completion" \
    "$missing" ""
is "nothing under /usr/local" "$(grep '^/usr/local' <<<"$contents")" ""
deps=$(dpkg-deb -f "$deb" Depends)
like "Depends: libssl3 (from shlibdeps)" "$deps" "libssl3 \\(>= "
like "Depends: libp11-kit0 (from shlibdeps)" "$deps" "libp11-kit0 \\(>= "
like "Depends: p11-kit-modules" "$deps" "p11-kit-modules"
is "the configuration examples are conffiles" \
    "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | sort | tr '\n' ' ')" \
    "/etc/p11mtls/openssl-p11mtls.cnf /etc/p11mtls/p11mtls.conf "

# ---- install
sum() { { cat /etc/ld.so.preload 2>/dev/null; cat /etc/ssl/openssl.cnf; } | md5sum; }
before=$(sum)
apt_get install "$deb"
rc=$?
[ $rc -eq 0 ] || tail -n 20 "$WORK/apt.log" | sed 's/^/# /'
is "apt-get install ./$(basename "$deb")" "$rc" 0
trap 'apt_get purge p11mtls; fx_cleanup' EXIT # never leave it installed
is "installing turned nothing on: /etc/ld.so.preload and /etc/ssl/openssl.cnf unchanged" \
    "$(sum)" "$before"
files=$(dpkg -L p11mtls 2>/dev/null)
version=$(/usr/bin/p11mtls --version)
while read -r line; do diag "$line"; done <<<"$version"
paths=$(sed -nE 's/^(provider|preload|configuration): *//p' <<<"$version")
unowned=
for f in $paths; do grep -qxF "$f" <<<"$files" || unowned+="$f "; done
is "p11mtls --version names the installed provider, preload library and configuration" \
    "$(wc -l <<<"$paths") $unowned" "3 "
like "the provider loads by name from OpenSSL's modules directory" \
    "$(env -u OPENSSL_CONF -u OPENSSL_MODULES openssl list -providers -provider p11mtls 2>&1)" \
    "name: p11mtls PKCS#11 provider"
like "OPENSSL_CONF=/etc/p11mtls/openssl-p11mtls.cnf activates the installed provider" \
    "$(OPENSSL_CONF=/etc/p11mtls/openssl-p11mtls.cnf env -u OPENSSL_MODULES openssl list -providers 2>&1)" \
    "name: p11mtls PKCS#11 provider"
check "man finds p11mtls(1), p11mtls.conf(5), p11mtls-provider(7)" \
    man -w p11mtls p11mtls.conf p11mtls-provider
like "bash-completion loads the completion for p11mtls" \
    "$(bash -c 'source /usr/share/bash-completion/bash_completion
        __load_completion p11mtls; complete -p p11mtls' 2>&1)" "-F _p11mtls p11mtls"

# ---- the demo, with the installed files only
demo=$(cd "$WORK" && env -u P11MTLS_PROVIDER -u P11MTLS_PRELOAD -u P11MTLS_CONF \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin bash "$P11M_SRCDIR/tokens/demo" --installed 2>&1)
rc=$?
[ $rc -eq 0 ] || tail -n 40 <<<"$demo" | sed 's/^/# /'
like "tokens/demo --installed: every step passed" "$rc $(tail -n 1 <<<"$demo")" \
    "^0 [0-9]+ steps: 0 failed, 0 skipped"
like "... curl admitted through the installed shim" "$demo" "verify=SUCCESS dn=UID=demo-0001"
is "... no build-tree path in what it ran" \
    "$(grep -E '\$ |found:' <<<"$demo" | grep -F -e "$P11M_SRCDIR" -e "$P11M_BUILDDIR" -e "$WORK/src")" ""

# ---- remove, then purge
apt_get remove p11mtls
is "apt-get remove p11mtls: only the conffiles stay" \
    "$(dpkg-query -W -f='${db:Status-Abbrev}' p11mtls 2>&1 | cut -c1-2) $(find /etc/p11mtls -mindepth 1 -printf '%f\n' 2>&1 | sort | tr '\n' ' ')" \
    "rc openssl-p11mtls.cnf p11mtls.conf "
apt_get purge p11mtls
trap fx_cleanup EXIT
is "apt-get purge p11mtls: dpkg -L lists nothing" "$(dpkg -L p11mtls 2>/dev/null)" ""
check_not "... /etc/p11mtls is gone" test -e /etc/p11mtls
check_not "... /var/lib/p11mtls is gone" test -e /var/lib/p11mtls
left=
while read -r f; do
    [ -d "$f" ] || [ ! -e "$f" ] || left+="$f "
done <<<"$files"
is "... none of its $(wc -l <<<"$files") files is left" "$left" ""
finish
