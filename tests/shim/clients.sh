#!/bin/bash
# Every kind of client, none given a certificate, presents the token identity to the
# servers a rule names: curl, python3 (socket, urllib, asyncio), openssl s_client and
# the legacy C client; against s_server -Verify 1 with TLS 1.2 and 1.3 and against
# nginx (ssl_verify_client on); with an EC (p256) and an RSA (rsa2048) token key.
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-clients
sh_need_provider
fx_token
fx_ca
declare -A port
fx_s_server_start s12 -tls1_2
port[2]=$FX_PORT
fx_s_server_start s13 -tls1_3
port[3]=$FX_PORT
fx_nginx_start nginx
NP=$FX_NGINX_PORT

# s_server: which client certificate it accepted is read from its log.
s_server_case() { # SERVER LABEL WHAT CMD...
    local server=$1 label=$2 what=$3 cert want peer log
    shift 3
    cert=FX_DEV_CERT_$label
    want=$(fx_cert_subject "${!cert}")
    sh_client "$what" sh_shim "$@"
    peer=$(fx_s_server_peer "$server")
    log=$(sh_log_new)
    if [ "$peer" = "$want" ] && [[ $log == *"presented subject=\"/CN=device-$label/"* ]]; then
        ok "$what: s_server got $peer"
    else
        fail "$what: s_server got the device certificate" "server saw: $peer" \
            "expected: $want" "shim log: $log" "client: $(tail -n 5 "$SH_OUT")"
    fi
}

# s_server echoes nothing back: clients wait for an answer only briefly. curl
# (--max-time) and s_client (timeout) bound their whole run with it, the handshake
# included, whose first one in a process logs in to the token: on a TPM (a TPM session,
# its HMAC login, then two signatures) that took over a second under ASan with the
# suite running beside it.
SH_TIMEOUT=1
whole=1
[ "$P11M_TEST_TOKEN" != tpm ] || whole=2
for label in p256 rsa2048; do
    sh_token_conf "$WORK/shim.conf" "$label" "localhost 127.0.0.1"
    for v in 2 3; do
        p=${port[$v]}
        s=s1$v
        SH_TIMEOUT=$whole s_server_case $s $label "curl $label TLS1.$v" sh_curl "https://localhost:$p/"
        s_server_case $s $label "python socket $label TLS1.$v" sh_py socket "localhost:$p"
        s_server_case $s $label "python asyncio $label TLS1.$v (IP: verify-ip)" \
            sh_py asyncio "127.0.0.1:$p"
        SH_TIMEOUT=$whole s_server_case $s $label "s_client $label TLS1.$v (IP: socket peer)" \
            sh_s_client "127.0.0.1:$p"
        s_server_case $s $label "legacy client $label TLS1.$v (SSLv23_method)" \
            sh_legacy 127.0.0.1 "$p"
    done
done

SH_TIMEOUT=3

# nginx answers with what it verified.
nginx_case() { # LABEL WHAT CMD...
    local label=$1 what=$2
    shift 2
    sh_client "$what" sh_shim "$@"
    if [ "$SH_RC" -eq 0 ] && grep -q "verify=SUCCESS dn=.*UID=dev-$label" "$SH_OUT"; then
        ok "$what: $(grep -o 'verify=.*' "$SH_OUT")"
    else
        fail "$what: nginx verified the device certificate" "exit status $SH_RC" \
            "$(tail -n 5 "$SH_OUT")" "shim log: $(sh_log_new)"
    fi
    sh_log_new >/dev/null
}

sh_token_conf "$WORK/shim.conf" p256 "localhost 127.0.0.1:$NP"
nginx_case p256 "nginx: curl" sh_curl "https://localhost:$NP/"
nginx_case p256 "nginx: python urllib" sh_py urllib "https://localhost:$NP/"
nginx_case p256 "nginx: python asyncio" sh_py asyncio "localhost:$NP"
nginx_case p256 "nginx: legacy client (TLS_method)" sh_legacy 127.0.0.1 "$NP" -m tls
nginx_case p256 "nginx: s_client" sh_s_client "127.0.0.1:$NP"
sh_token_conf "$WORK/shim.conf" rsa2048 "localhost 127.0.0.1:$NP"
nginx_case rsa2048 "nginx: curl rsa2048 TLS1.2" sh_curl --tls-max 1.2 "https://localhost:$NP/"
nginx_case rsa2048 "nginx: python urllib rsa2048 TLS1.2" \
    sh_py urllib "https://localhost:$NP/" --tls 1.2
nginx_case rsa2048 "nginx: legacy client rsa2048 TLS1.2" sh_legacy 127.0.0.1 "$NP" -v tls1.2
finish
