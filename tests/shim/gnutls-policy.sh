#!/bin/bash
# shellcheck disable=SC2317 # the helpers run through sh_client and refused
# GnuTLS programs under the shim's process-wide policy:
#  - fail-closed mode (a configuration error and on_config_error = abort): a handshake
#    that reaches a CertificateRequest fails, whatever the program would send (nothing,
#    its retrieve callback's choice, certificates it loaded itself), and one log line
#    says why; a handshake without a CertificateRequest is untouched; with
#    on_config_error at its default the same broken file leaves the program alone;
#  - reload: a long-running GnuTLS program (tests/shim/gnutls_client.c, one process)
#    presents the certificate that replaced the one on the token once reload_interval
#    has passed, and so do its threads and a forked child.
# What the servers saw is asserted: nginx's access log and answer (ssl_verify_client
# on, optional or off) and openssl s_server's verified peer.
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-gnutls-policy
sh_need_provider
fx_token
fx_ca
fx_nginx_start on on
NON=$FX_NGINX_PORT
fx_nginx_start opt optional
NOPT=$FX_NGINX_PORT
fx_nginx_start off off
NOFF=$FX_NGINX_PORT
fx_s_server_start sserv
SS=$FX_PORT
GC=${P11M_GNUTLS_CLIENT:-$P11M_BUILDDIR/tests/shim/gnutls-client}

sh_wget() { # ARGS... URL
    wget -q -O - -t 1 -T "${SH_TIMEOUT:-3}" --ca-certificate="$FX_CA_ROOT" "$@" </dev/null
}
gnutls_cli() { # PORT ARGS...
    printf 'GET / HTTP/1.0\r\n\r\n' |
        timeout "${SH_TIMEOUT:-3}" gnutls-cli --x509cafile="$FX_CA_ROOT" -p "$1" "${@:2}" localhost
}
own_cert() { echo --certificate="$FX_SOFT_CLIENT_CERT" --private-key="$FX_SOFT_CLIENT_KEY"; }
shim_lines() { grep 'p11mtls\[' "$SH_OUT" | sed 's/^p11mtls\[[0-9]*\]: //'; }

# -- a configuration with an error: a rule for localhost and an unknown key
bad_conf() { # [on_config_error value]
    {
        echo "[p11mtls]"
        [ -z "${1:-}" ] || echo "on_config_error = $1"
        echo "colour = blue"
        echo "identities = ids"
        echo "rules = rules"
        echo "[ids]"
        echo "device = device_id"
        echo "[device_id]"
        echo "key = $(fx_key_uri p256)"
        echo "cert = $(fx_cert_uri p256)"
        echo "pin_source = file:$FX_PIN_FILE"
        echo "[rules]"
        echo "r = rule_r"
        echo "[rule_r]"
        echo "match = localhost"
        echo "identity = device"
    } >"$WORK/bad.conf"
}
CONF_ERR="error: config: $WORK/bad.conf: \[p11mtls\] colour: unknown key"
REFUSE="error: refusing client TLS handshakes: the p11mtls configuration has errors and on_config_error = abort"

# refused NAME SERVER-CHECK CMD...: the client fails, the shim logged the configuration
# error and the one refusal line, and SERVER-CHECK (a command) confirms the server saw
# no request or no certificate.
refused() {
    local name=$1 server=$2 log
    shift 2
    SH_CONF=$WORK/bad.conf sh_client "$name" sh_shim "$@"
    log=$(shim_lines)
    if [ "$SH_RC" -eq 0 ]; then
        fail "$name: refused" "the client succeeded: $(tail -n 3 "$SH_OUT")"
    elif [ "$(grep -c . <<<"$log")" -ne 2 ] || ! grep -q "^$CONF_ERR; every client TLS handshake of this program will fail" <<<"$log" ||
        ! grep -qx "$REFUSE" <<<"$log"; then
        fail "$name: the config error and one refusal line" "shim log: $log"
    elif ! "$server"; then
        fail "$name: the server saw no client certificate" "$(server_said)"
    else
        ok "$name: refused (exit $SH_RC), server saw nothing"
    fi
}
server_said() { tail -n 2 "$WORK/on/access.log" "$WORK/sserv.err" 2>/dev/null; }
NON_BEFORE=0
nginx_saw_nothing() { [ "$(fx_nginx_lines on)" = "$NON_BEFORE" ]; }
sserv_saw_no_cert() { [ "$(fx_s_server_peer sserv)" = none ]; }

# -- fail-closed mode
bad_conf abort
NON_BEFORE=$(fx_nginx_lines on)
refused "abort: wget, nginx requires a certificate" nginx_saw_nothing \
    sh_wget "https://localhost:$NON/"
refused "abort: gnutls-cli (its callback sends nothing) against s_server" \
    sserv_saw_no_cert gnutls_cli "$SS"
refused "abort: gnutls-cli, its callback's own certificate is refused too" \
    nginx_saw_nothing gnutls_cli "$NON" --x509certfile="$FX_SOFT_CLIENT_CERT" \
    --x509keyfile="$FX_SOFT_CLIENT_KEY"
# shellcheck disable=SC2046 # two options
refused "abort: wget with the certificate it loaded itself is refused too" \
    nginx_saw_nothing sh_wget $(own_cert) "https://localhost:$NON/"
fx_nginx_mark off
SH_CONF=$WORK/bad.conf sh_client abort-nocr sh_shim sh_wget "https://localhost:$NOFF/"
like "abort: no CertificateRequest (nginx verify off): untouched, nothing read or logged" \
    "$SH_RC $(tr '\n' ' ' <"$SH_OUT")| $(fx_nginx_next off)" \
    '^0 verify=NONE dn= \| 127.0.0.1 "GET / HTTP/1.1" 200 TLSv1.3 verify=NONE dn="-"$'
fx_nginx_mark off
# shellcheck disable=SC2046
SH_CONF=$WORK/bad.conf sh_client abort-own-nocr sh_shim sh_wget $(own_cert) "https://localhost:$NOFF/"
like "abort: own certificate, no CertificateRequest: untouched (config read, nothing refused)" \
    "$SH_RC $(shim_lines | grep -c refusing) $(fx_nginx_next off)" \
    '^0 0 127.0.0.1 "GET / HTTP/1.1" 200 '

# -- the same file with on_config_error at its default (continue), then said outright
for mode in "" continue; do
    what="on_config_error ${mode:-unset}"
    bad_conf "$mode"
    fx_nginx_mark opt
    SH_CONF=$WORK/bad.conf sh_client "cont-wget-$mode" sh_shim sh_wget "https://localhost:$NOPT/"
    like "$what: wget goes on without a certificate, one config line" \
        "$SH_RC $(grep -v 'p11mtls\[' "$SH_OUT") | $(shim_lines | tr '\n' ' ')| $(fx_nginx_next opt)" \
        "^0 verify=NONE dn= \| $CONF_ERR; p11mtls stays out of this program \| .* 200 TLSv1.3 verify=NONE"
    fx_nginx_mark opt
    SH_CONF=$WORK/bad.conf sh_client "cont-cli-$mode" sh_shim gnutls_cli "$NOPT"
    like "$what: gnutls-cli goes on without a certificate" \
        "$(grep -c '^verify=NONE dn=$' "$SH_OUT") $(shim_lines | grep -c refusing) $(fx_nginx_next opt)" \
        '^1 0 .* 200 TLSv1.3 verify=NONE'
    fx_nginx_mark on
    # shellcheck disable=SC2046
    SH_CONF=$WORK/bad.conf sh_client "cont-own-$mode" sh_shim sh_wget $(own_cert) "https://localhost:$NON/"
    like "$what: wget's own certificate reaches nginx" \
        "$SH_RC $(fx_nginx_next on)" \
        '^0 127.0.0.1 "GET / HTTP/1.1" 200 TLSv1.3 verify=SUCCESS dn="UID=soft-client,CN=soft-client"$'
done

# -- the program loads its own certificate after its credentials are in use (the shim's
# callback is installed by then): GnuTLS gets it back, whether or not a rule applies
late() { # CONF: two connections, the certificate loaded during the first
    printf 'get /\nget /\n' |
        SH_CONF=$1 sh_shim "$GC" -c "$FX_CA_ROOT" -C "$FX_SOFT_CLIENT_CERT" \
            -K "$FX_SOFT_CLIENT_KEY" localhost "$NON"
}
SOFT="ok verify=SUCCESS dn=UID=soft-client,CN=soft-client"
sh_token_conf "$WORK/shim.conf" p256 localhost
sh_log_new >/dev/null
sh_client late-rule late "$WORK/shim.conf"
is "late own certificate, a rule for the server: the program's certificate is sent" \
    "$(grep -v 'p11mtls\[' "$SH_OUT" | sort -u)" "$SOFT"
like "...and the shim says it was not involved" "$(sh_log_new)" \
    "dest=localhost:$NON \(sni\) TLSv1.3: the program set its own certificate; p11mtls not involved"
bad_conf continue
sh_client late-badconf late "$WORK/bad.conf"
is "late own certificate, a configuration the shim ignores: the program's certificate is sent" \
    "$(grep -v 'p11mtls\[' "$SH_OUT" | sort -u)" "$SOFT"

# -- reload in a long-running GnuTLS program
SH_MAIN_EXTRA="reload_interval = 1" sh_token_conf "$WORK/shim.conf" p256 localhost
sh_log_new >/dev/null
mkfifo "$WORK/gc.in"
sh_shim "$GC" -c "$FX_CA_ROOT" localhost "$NON" <"$WORK/gc.in" >"$WORK/gc.out" 2>"$WORK/gc.err" &
gc=$!
exec {gcin}>"$WORK/gc.in"
# gc_run COMMAND N: send COMMAND, wait for the client's output to reach N lines (bounded
# by a number of checks; a client that died or hangs fails the assertions after it).
gc_run() {
    echo "$1" >&"$gcin"
    for ((i = 0; i < 600; i++)); do
        [ "$(grep -c . "$WORK/gc.out")" -ge "$2" ] && return 0
        kill -0 "$gc" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
DN1="ok verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
DN2="ok verify=SUCCESS dn=UID=dev-p256-v2,CN=device-p256-v2"
gc_run "get /" 1
is "one process: the first handshake presents the token's certificate" \
    "$(sed -n 1p "$WORK/gc.out")" "$DN1"
fx__ca_device "$FX_PUB_p256" p256-v2 "$FX_CA_DIR/inter" "$WORK/new.pem" >"$WORK/ca.out" 2>&1
check "the certificate on the token is replaced (same key, new subject)" \
    "$P11M_TOOL" cert import --uri "$(fx_key_uri p256)" --cert "$WORK/new.pem" \
    --pin-source "file:$FX_PIN_FILE" --force
new_serial=$(openssl x509 -in "$WORK/new.pem" -noout -serial | sed 's/^serial=//')
# one request after another until nginx sees the new certificate (the shim reads the
# identity again once reload_interval has passed)
n=1
while ((n < 60)) && gc_run "get /" $((n + 1)); do
    n=$((n + 1))
    [ "$(tail -n 1 "$WORK/gc.out")" = "$DN2" ] && break
    sleep 0.2
done
is "...the same process then presents the new certificate" "$(tail -n 1 "$WORK/gc.out")" "$DN2"
is "...every request was admitted: the old certificate, then the new one" \
    "$(uniq "$WORK/gc.out" | tr '\n' '|')" "$DN1|$DN2|"
like "...the shim logged the reload and the new subject" "$(sh_log_new | tr '\n' '|')" \
    "identity device reloaded: serial $new_serial replaces [0-9A-F]+\|.*presented subject=\"/CN=device-p256-v2/UID=dev-p256-v2\" serial=$new_serial"
fx_nginx_mark on
gc_run "threads 4 /" $((n + 4))
is "...four threads at once present the new certificate" \
    "$(tail -n 4 "$WORK/gc.out" | sort -u)" "$DN2"
gc_run "fork /" $((n + 5))
is "...and so does a forked child" "$(tail -n 1 "$WORK/gc.out")" "$DN2"
like "...nginx saw the new certificate on the last connections" \
    "$(fx_nginx_next on 5 | sort -u)" \
    '^127.0.0.1 "GET / HTTP/1.0" 200 TLSv1.3 verify=SUCCESS dn="UID=dev-p256-v2,CN=device-p256-v2"$'
exec {gcin}>&-
rc=0
wait "$gc" || rc=$?
is "the client ends cleanly at the end of its input" "$rc $(fx_drop_foreign_noise "$WORK/gc.err"; cat "$WORK/gc.err")" "0 "
finish
