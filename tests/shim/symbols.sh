#!/bin/bash
# The preload library must not pull OpenSSL into every process, nor bind OpenSSL 1.1
# references: no DT_NEEDED on libssl/libcrypto, only libc-family undefined symbols,
# and exactly the hooks exported, each under the version node of the library it stands
# in for (OpenSSL 3, GnuTLS, glibc's recv and read).
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
like "exports: the hooks, versioned OPENSSL_3.0.0, GNUTLS_3_4/GNUTLS_3_6_3, glibc's" "$exported" \
    "^GLIBC_[0-9.]+ GNUTLS_3_4 GNUTLS_3_6_3 OPENSSL_3.0.0 SSL_CTX_new@@OPENSSL_3.0.0 SSL_CTX_new_ex@@OPENSSL_3.0.0 SSL_CTX_set_cert_cb@@OPENSSL_3.0.0 SSL_connect@@OPENSSL_3.0.0 SSL_do_handshake@@OPENSSL_3.0.0 SSL_read@@OPENSSL_3.0.0 SSL_read_ex@@OPENSSL_3.0.0 SSL_set_cert_cb@@OPENSSL_3.0.0 gnutls_certificate_free_credentials@@GNUTLS_3_4 gnutls_certificate_set_retrieve_function2@@GNUTLS_3_4 gnutls_certificate_set_retrieve_function3@@GNUTLS_3_6_3 gnutls_certificate_set_retrieve_function@@GNUTLS_3_4 gnutls_credentials_set@@GNUTLS_3_4 gnutls_deinit@@GNUTLS_3_4 gnutls_handshake@@GNUTLS_3_4 gnutls_init@@GNUTLS_3_4 gnutls_reauth@@GNUTLS_3_6_3 gnutls_server_name_set@@GNUTLS_3_4 read@@GLIBC_[0-9.]+ recv@@GLIBC_[0-9.]+ $"

# Loaded into a program without libssl, it must not bring libssl in.
maps=$(LD_PRELOAD=$lib /bin/cat /proc/self/maps)
if grep -qE 'libssl|libcrypto' <<<"$maps"; then
    fail "a program without OpenSSL stays without OpenSSL" "$(grep -E 'libssl|libcrypto' <<<"$maps")"
else
    ok "a program without OpenSSL stays without OpenSSL"
fi
finish
