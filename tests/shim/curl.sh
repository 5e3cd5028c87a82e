#!/bin/bash
# curl's destination is known although curl gives OpenSSL its own BIO (no descriptor)
# and sends no SNI for IP literals: the shim takes the socket curl's BIO read during
# that connection's handshake call. IPv4 and IPv6 literals with and without a port, a
# rule for another port that must not match, and curl --parallel (two transfers in one
# thread, handshaking at the same time) where only the named destination gets the
# identity. nginx asks for a certificate, accepts none (optional) and says what it got.
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-curl
sh_need_provider
fx_token
fx_ca
FX_NGINX_V6=1 fx_nginx_start a optional
PA=$FX_NGINX_PORT
fx_nginx_start b optional
PB=$FX_NGINX_PORT

DEVICE='^verify=SUCCESS dn=UID=dev-p256,CN=device-p256$'
NONE='^verify=NONE'

# curl_expect NAME WANT_BODY LOG_REGEX URL...: body and exactly one log line.
curl_expect() {
    local name=$1 want=$2 logre=$3 log lines
    shift 3
    sh_client "$name" sh_shim sh_curl "$@"
    log=$(sh_log_new)
    lines=$(grep -c . <<<"$log")
    if [ "$SH_RC" -ne 0 ] || ! grep -Eq "$want" "$SH_OUT"; then
        fail "$name: curl gets $want" "exit status $SH_RC" "$(tail -n 5 "$SH_OUT")" "shim log: $log"
    elif [ "$lines" -eq 1 ] && [[ $log =~ $logre ]]; then
        ok "$name: ${log#*: }"
    else
        fail "$name: one log line matching $logre" "shim log ($lines lines): $log"
    fi
}

sh_token_conf "$WORK/shim.conf" p256 "127.0.0.1:$PA"
curl_expect "IPv4 literal, rule with that IP and port" "$DEVICE" \
    "dest=127.0.0.1:$PA \(peer\) TLSv1.3 rule=r identity=device: presented" "https://127.0.0.1:$PA/"
curl_expect "... TLS 1.2" "$DEVICE" \
    "dest=127.0.0.1:$PA \(peer\) TLSv1.2 rule=r identity=device: presented" \
    --tls-max 1.2 "https://127.0.0.1:$PA/"
curl_expect "same IP, another port: no rule" "$NONE" \
    "dest=127.0.0.1:$PB \(peer\) TLSv1.3: no rule matches; no certificate" "https://127.0.0.1:$PB/"
sh_token_conf "$WORK/shim.conf" p256 "[::1]:$PA"
curl_expect "IPv6 literal, rule [::1]:port" "$DEVICE" \
    "dest=\[::1\]:$PA \(peer\) TLSv1.3 rule=r identity=device: presented" "https://[::1]:$PA/"
curl_expect "IPv4 literal does not match the IPv6 rule" "$NONE" \
    "dest=127.0.0.1:$PA \(peer\) TLSv1.3: no rule matches" "https://127.0.0.1:$PA/"
sh_token_conf "$WORK/shim.conf" p256 "localhost:$PB"
curl_expect "host name with a port rule (SNI for the name, the socket for the port)" "$DEVICE" \
    "dest=localhost:$PB \(sni\) TLSv1.3 rule=r identity=device: presented" "https://localhost:$PB/"
curl_expect "host name, other port" "$NONE" \
    "dest=localhost:$PA \(sni\) TLSv1.3: no rule matches" "https://localhost:$PA/"

# -- two transfers at once in one thread: each handshake is credited its own socket
sh_token_conf "$WORK/shim.conf" p256 "127.0.0.1:$PB"
fx_nginx_mark a
fx_nginx_mark b
for round in 1 2 3; do
    SH_TIMEOUT=10 sh_client "parallel-$round" sh_shim sh_curl --parallel --parallel-immediate \
        "https://127.0.0.1:$PA/" "https://127.0.0.1:$PB/"
    log=$(sh_log_new)
    got="$(grep -c "verify=SUCCESS dn=UID=dev-p256" "$SH_OUT") $(grep -c "verify=NONE" "$SH_OUT")"
    got+=" $(grep -c "dest=127.0.0.1:$PB (peer) TLSv1.3 rule=r identity=device: presented" <<<"$log")"
    got+=" $(grep -c "dest=127.0.0.1:$PA (peer) TLSv1.3: no rule matches" <<<"$log")"
    is "curl --parallel round $round: only 127.0.0.1:$PB gets the device (bodies, log lines)" \
        "$SH_RC $got" "0 1 1 1 1"
done
like "... and nginx b verified the device while a saw none" \
    "$(fx_nginx_next b 3 | tail -n 1) | $(fx_nginx_next a 3 | tail -n 1)" \
    'verify=SUCCESS dn="UID=dev-p256,CN=device-p256" \| .*verify=NONE dn="-"$'
finish
