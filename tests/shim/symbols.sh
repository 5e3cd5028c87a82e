#!/bin/bash
# The preload library must not pull OpenSSL into every process, nor bind OpenSSL 1.1
# references: no DT_NEEDED on libssl/libcrypto, only libc-family undefined symbols,
# and exactly the four hooks exported, all under OPENSSL_3.0.0.
source "$P11M_SRCDIR/tests/fixtures/lib.sh"
lib=$P11M_PRELOAD
if readelf -d "$lib" | grep -qE 'lib(a|ub|t)san'; then
    skip_all "sanitizer build: the runtime adds its own dependencies and symbols"
fi
plan 4

needed=$(readelf -d "$lib" | awk '/NEEDED/ { print $NF }' | tr -d '[]' | sort | tr '\n' ' ')
like "no DT_NEEDED on OpenSSL ($needed)" "$needed" '^(libc\.so\.6 |ld-linux[^ ]* |libdl[^ ]* |libpthread[^ ]* )+$'

undef=$(nm -D --undefined-only "$lib" | awk '{ print $NF }' | grep -vE '@GLIBC_|^_ITM_|^__gmon_start__$|^__cxa_finalize' || true)
is "undefined symbols all come from glibc" "$undef" ""

exported=$(readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && ($4 == "FUNC" || $4 == "OBJECT") { print $8 }' | sort | tr '\n' ' ')
is "exports: the hooks, versioned OPENSSL_3.0.0" "$exported" \
    "OPENSSL_3.0.0 SSL_CTX_new@@OPENSSL_3.0.0 SSL_CTX_new_ex@@OPENSSL_3.0.0 SSL_CTX_set_cert_cb@@OPENSSL_3.0.0 SSL_set_cert_cb@@OPENSSL_3.0.0 "

# Loaded into a program without libssl, it must not bring libssl in.
maps=$(LD_PRELOAD=$lib /bin/cat /proc/self/maps)
if grep -qE 'libssl|libcrypto' <<<"$maps"; then
    fail "a program without OpenSSL stays without OpenSSL" "$(grep -E 'libssl|libcrypto' <<<"$maps")"
else
    ok "a program without OpenSSL stays without OpenSSL"
fi
finish
