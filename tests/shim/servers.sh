#!/bin/bash
# Where the shim must stay out of the way: programs without TLS, server contexts
# (nginx started with the shim preloaded; a server and a client in one python
# process), programs with their own certificate callback (chained, not evicted), and
# broken configurations (one error line, then the program runs as without the shim,
# unless the file asks for fail-closed).
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-servers
sh_need_provider
fx_token
fx_ca
fx_nginx_start plain off # asks for no client certificate at all
PLAIN=$FX_NGINX_PORT
fx_nginx_start optional optional
OPT=$FX_NGINX_PORT

# -- no TLS, no trace: not even the configuration is read
SH_LOG_LEVEL=debug sh_token_conf "$WORK/shim.conf" p256 "*"
sh_client true sh_shim /bin/true
is "/bin/true runs with the shim" "$SH_RC $(cat "$SH_OUT")" "0 "
sh_client version sh_shim openssl version
like "openssl version (libssl, no context) runs" "$SH_RC $(cat "$SH_OUT")" "^0 OpenSSL 3"
is "neither wrote a log" "$(cat "$WORK/shim.log" 2>/dev/null)" ""

# -- nginx with the shim preloaded serves and verifies clients as before
sh_token_conf "$WORK/nginx-shim.conf" p256 "*"
sed -i "s|^log = .*|log = file:$WORK/nginx-shim.log|; s|^log_level = .*|log_level = debug|" \
    "$WORK/nginx-shim.conf"
# lib.sh keeps preloads away from servers; this one server gets the shim on purpose.
FX__SERVER_ENV=(env -u OPENSSL_CONF -u OPENSSL_MODULES
    "LD_PRELOAD=${P11M_ASAN_PRELOAD:+$P11M_ASAN_PRELOAD:}$P11M_PRELOAD"
    "P11MTLS_CONF=$WORK/nginx-shim.conf" "P11MTLS_PROVIDER=$P11M_PROVIDER")
fx_nginx_start shimmed on
NS=$FX_NGINX_PORT
FX__SERVER_ENV=(env -u LD_PRELOAD -u OPENSSL_CONF -u OPENSSL_MODULES)
like "nginx runs with the shim preloaded" \
    "$(tr '\0' ' ' <"/proc/$(awk '$2 == "shimmed" { print $1 }' "$WORK/.servers")/environ")" \
    "LD_PRELOAD=([^ ]*:)?$P11M_PRELOAD( |$)"
sh_client nginx-soft sh_curl --cert "$FX_SOFT_CLIENT_CERT" --key "$FX_SOFT_CLIENT_KEY" \
    "https://localhost:$NS/"
like "shimmed nginx verifies a software client certificate" "$(cat "$SH_OUT")" \
    "^verify=SUCCESS dn=UID=soft-client,CN=soft-client"
sh_client nginx-none sh_curl "https://localhost:$NS/"
like "shimmed nginx still refuses a client without a certificate" "$(cat "$SH_OUT")" \
    "400 No required SSL certificate was sent"
sh_token_conf "$WORK/shim.conf" p256 localhost
sh_client nginx-device sh_shim sh_curl "https://localhost:$NS/"
like "shimmed nginx verifies the shim's client" "$(cat "$SH_OUT")" \
    "^verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
sh_log_new >/dev/null
like "the server side made no decisions (only the config was read)" \
    "$(grep -v 'debug: config:' "$WORK/nginx-shim.log" || echo nothing-else)" "^nothing-else$"

# -- a server and a client in one process: only the client is touched
for kind in generic server-only; do
    sh_client "inprocess-$kind" sh_shim "$SH_PY" "$SH_DIR/inprocess.py" "$kind" \
        "$FX_SERVER_FULLCHAIN" "$FX_SERVER_KEY" "$FX_CA_CHAIN" "$FX_CA_ROOT"
    like "one process, $kind server context: server cert unchanged, client presents the device" \
        "$(tr '\n' ' ' <"$SH_OUT")" \
        "^client saw server: CN=localhost server saw client: CN=device-p256 $"
done
log=$(sh_log_new)
is "... and the shim decided only for the two clients" \
    "$(grep -c . <<<"$log") $(grep -Ec 'dest=localhost:[0-9]+ \(sni\).*presented' <<<"$log")" "2 2"

# -- the program's own certificate callback is chained, not evicted
for where in ctx ssl; do
    sh_client "cert_cb-$where" sh_shim sh_legacy 127.0.0.1 "$OPT" -n localhost -b "$where"
    like "program's cert_cb on the $where runs, and the device is presented" \
        "$(tr '\n' ' ' <"$SH_OUT")" "app cert_cb called \($where\).*verify=SUCCESS dn=UID=dev-p256"
done
sh_log_new >/dev/null
sh_client client_cert_cb sh_shim sh_legacy 127.0.0.1 "$OPT" -n localhost -b client
like "a program with its own client_cert_cb chooses (here: no certificate)" \
    "$(tr '\n' ' ' <"$SH_OUT") $(sh_log_new)" \
    "app client_cert_cb called: no certificate.*verify=NONE.*the program chooses client certificates itself"

# -- the program's own OpenSSL configuration keeps working next to the shim's provider
fx_provider_cnf "$WORK/app-openssl.cnf"
printf '%s\n' "[openssl_init]" "ssl_conf = ssl_sect" "[ssl_sect]" \
    "system_default = system_default_sect" "[system_default_sect]" "MaxProtocol = TLSv1.2" \
    >>"$WORK/app-openssl.cnf"
export OPENSSL_CONF=$WORK/app-openssl.cnf
sh_client app-conf sh_shim sh_py twice "localhost:$OPT"
unset OPENSSL_CONF
like "program's openssl.cnf (MaxProtocol TLSv1.2, its own p11mtls provider) still rules" \
    "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" \
    "^0 TLSv1.2 \['verify=SUCCESS dn=UID=dev-p256,CN=device-p256'\] TLSv1.2 \['verify=SUCCESS dn=UID=dev-p256,CN=device-p256'\] $"
sh_log_new >/dev/null

# -- configuration errors: one line each, then as if the shim were absent
conf_error() { # WHAT CONF_TEXT WANT_LINE_REGEX [abort]
    local what=$1 want=$3 mode=${4:-continue} errs
    printf '%s\n' "$2" >"$WORK/bad.conf"
    SH_CONF=$WORK/bad.conf sh_client "bad-$what" sh_shim sh_curl "https://localhost:$PLAIN/"
    errs=$(grep 'p11mtls\[' "$SH_OUT")
    if [ "$mode" = abort ]; then
        like "$what: one config error line, fail closed" "$SH_RC $(grep -c . <<<"$errs") $errs" \
            "^35 2 .*error: config: $want; every client TLS handshake of this program will fail .*refusing client TLS handshakes"
    else
        like "$what: one config error line, program unaffected" \
            "$SH_RC $(grep -c . <<<"$errs") $errs $(grep verify= "$SH_OUT")" \
            "^0 1 p11mtls\[[0-9]+\]: error: config: $want; p11mtls stays out of this program verify=NONE"
    fi
}

BASE="[p11mtls]
identities = ids
rules = rules
[ids]
d = d_id
[d_id]
key = $(fx_key_uri p256)
cert = $(fx_cert_uri p256)
[rules]
r = r_sect
[r_sect]
match = *
identity = d"
conf_error "unknown key" "$BASE
colour = blue" "$WORK/bad.conf: \[r_sect\] colour: unknown key \(expected match, identity, require_ca_match, on_unavailable\)"
conf_error "syntax error" "${BASE/identity = d/identity d}" "$WORK/bad.conf:13: syntax error: missing equal sign"
conf_error "bad value" "${BASE/match = \*/match = 10.0.0.0/40}" \
    "$WORK/bad.conf: \[r_sect\] match: bad pattern \"10.0.0.0/40\": prefix length must be 0..32"
conf_error "unknown key, on_config_error = abort" "${BASE/rules = rules/rules = rules
on_config_error = abort
colour = blue}" "$WORK/bad.conf: \[p11mtls\] colour: unknown key" abort
SH_CONF=$WORK/no-such.conf sh_client missing-conf sh_shim "$SH_PY" -c \
    'import ssl; ssl.create_default_context(); print("ran")'
like "P11MTLS_CONF naming a missing file: one error, program runs" "$(tr '\n' ' ' <"$SH_OUT")" \
    "^p11mtls\[[0-9]+\]: error: config: $WORK/no-such.conf: cannot read: .*; p11mtls stays out of this program ran $"
finish
