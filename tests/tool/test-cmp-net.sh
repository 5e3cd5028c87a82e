#!/bin/bash
# shellcheck disable=SC2317 # the helpers run through check and rc_is
# The way to the CA: p11mtls enroll and renew through a real HTTP proxy (tinyproxy) as
# http_proxy / https_proxy / no_proxy say, and over TLS (the CMP test CA behind nginx)
# verified against --tls-trusted, the proxy's CONNECT tunnel included. The proxy's and
# nginx's own logs show which way each request went; the CA's log shows what it issued.
source "$(dirname "$0")/common.sh"
fx_workdir tool-cmp-net
fx_ca || skip_all "CA fixture could not be built"
[ -x "${P11M_CMP_CA:-}" ] || bail_out "the CMP test CA (P11M_CMP_CA) is not built"
plan 50

LABEL=net
(umask 077 && echo 87654321 >"$WORK/so.pin" && echo 4321 >"$WORK/pin.txt")
PIN=file:$WORK/pin.txt
mkdir -p "$WORK/state"
fresh_softhsm hsm
"$TOOL" token init --label "$LABEL" --so-pin-source "file:$WORK/so.pin" \
    --pin-source "$PIN" >/dev/null 2>&1 || bail_out "token init failed"
# No proxy from the environment the tests run in: each check sets its own.
unset http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY
T=(--token "pkcs11:token=$LABEL" --pin-source "$PIN" --state-dir "$WORK/state"
    --module "$FX_SOFTHSM_MODULE")
# enroll URL NAME [ARGS]: initial enrolment (shared secret) of identity NAME.
enroll() {
    local url=$1 name=$2
    shift 2
    "$TOOL" enroll --server "$url" "${T[@]}" --identity "$name" --ref "$FX_CMP_REF" \
        --secret-source "file:$FX_CMP_SECRET_FILE" "$@"
}
# renew URL NAME [ARGS]
renew() {
    local url=$1 name=$2
    shift 2
    "$TOOL" renew --server "$url" "${T[@]}" --identity "$name" --timeout 20 --grace 0 "$@"
}
# in_env NAME=VALUE... -- CMD...: CMD (a function too) with those variables exported.
in_env() { (
    while [ "$1" != -- ]; do
        export "${1?}"
        shift
    done
    shift
    "$@"
); }
# proxied: how many requests the proxy has forwarded so far.
proxied() { grep -c 'Request (file descriptor [0-9]*): ' "$WORK/proxy.log"; }
# issued: the CA's last issuance ("ir 1", "kur 2", ...).
issued() { sed -n 's/^issued \([a-z0-9]*\) serial=\([0-9]*\).*/\1 \2/p' "$WORK/ca.log" | tail -n 1; }
# certs NAME: certificates labelled NAME on the token.
certs() {
    pkcs11-tool --module "$FX_SOFTHSM_MODULE" --token-label "$LABEL" --login --pin 4321 \
        --list-objects --type cert 2>/dev/null | grep -c "label: *$1\$"
}

# A CA (or proxy) that writes its header lines one by one, a pause between: OpenSSL 3.0's
# HTTP client forgets a Content-Type read before a pause.
check "a CA that writes its header lines one by one starts" fx_cmp_ca_start slow --slow-headers
rc_is "...enroll from it works" 0 enroll "$FX_CMP_URL" slow --subject /CN=slow
is "...it issued and was confirmed" "$(tail -n 2 "$WORK/slow.log" | cut -d' ' -f1-2)" \
    "issued ir
confirmed PKIStatus:"
check "the CMP test CA starts" fx_cmp_ca_start ca
check "tinyproxy starts" fx_http_proxy_start proxy
dead_port=$(fx_free_port)

# ---- plain HTTP through the proxy
rc_is "enroll with http_proxy set" 0 in_env http_proxy="$FX_PROXY_URL" \
    -- enroll "$FX_CMP_URL" dev --subject /CN=dev
like "...the request went through the proxy (its log)" \
    "$(grep 'Request (file descriptor' "$WORK/proxy.log")" \
    "POST http://127.0.0.1:$FX_CMP_PORT/pkix/ "
is "...and the CA issued" "$(issued)" "ir 1"
n=$(proxied)
rc_is "renew with http_proxy and no_proxy naming the CA host" 0 in_env \
    http_proxy="$FX_PROXY_URL" no_proxy="ca.example, 127.0.0.1" -- renew "$FX_CMP_URL" dev
is "...went straight to the CA: nothing new in the proxy's log" "$(proxied)" "$n"
is "...which issued" "$(issued)" "kur 2"
rc_is "renew with only https_proxy set (an http:// CA)" 0 in_env https_proxy="$FX_PROXY_URL" \
    -- renew "$FX_CMP_URL" dev
is "...does not use it" "$(proxied)" "$n"
rc_is "renew with HTTP_PROXY (upper case) set" 0 in_env HTTP_PROXY="$FX_PROXY_URL" \
    -- renew "$FX_CMP_URL" dev
is "...goes through the proxy (kur and certConf)" "$(proxied)" $((n + 2))
is "...which passed the kur on" "$(issued)" "kur 4"
rc_is "a proxy that is down: fails" 1 in_env \
    http_proxy="http://user:pr0xy-pw@127.0.0.1:$dead_port" -- renew "$FX_CMP_URL" dev --timeout 2
out_has "...naming the proxy" "the CA at $FX_CMP_URL is unreachable via the proxy 127.0.0.1:$dead_port"
check_not "...and never its credentials" grep -q "pr0xy-pw" "$WORK/last.out" "$WORK/state/dev.last"
is "...nothing stored: one certificate" "$(certs dev)" 1

# ---- TLS to the CA (nginx in front of the CA)
plain_port=$(fx_free_port)
FX_NGINX_EXTRA="listen 127.0.0.1:$plain_port;" fx_cmp_tls_start tls
is "the CA behind TLS (nginx; and on a plain HTTP port)" "$?" 0
rc_is "enroll over https, --tls-trusted the CA root" 0 \
    enroll "$FX_CMP_TLS_URL" tdev --subject /CN=tdev --tls-trusted "$FX_CA_ROOT"
like "...through nginx's TLS (its log)" "$(tail -n 1 "$WORK/tls/access.log")" \
    '"POST /pkix/ HTTP/1.[01]" 200 TLSv1.3'
is "...the CA issued" "$(issued)" "ir 5"
is "...stored" "$(certs tdev)" 1
rc_is "renew over https" 0 renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$FX_CA_ROOT"
out_has "...the new serial" "renewed: serial 06"
is "...one certificate after the renewal" "$(certs tdev)" 1
n=$(grep -c . "$WORK/ca.log")
rc_is "renew over https with the wrong --tls-trusted: fails" 1 \
    renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$FX_OTHER_CA"
out_has "...saying the CA server is not trusted, and why" \
    "TLS: the CA server localhost is not trusted \(unable to get local issuer certificate; its certificate \"CN=localhost\" from \"CN=p11mtls test intermediate CA\"; trusted: $FX_OTHER_CA\): nothing sent"
is "...no request reached the CA" "$(grep -c . "$WORK/ca.log")" "$n"
rc_is "...status shows the failure" 0 "$TOOL" status --token "pkcs11:token=$LABEL" \
    --identity tdev --state-dir "$WORK/state"
out_has "...with its reason" "last attempt .*: renew failed: TLS: the CA server localhost is not trusted"
rc_is "an unreadable --tls-trusted: fails" 1 \
    renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$WORK/nosuch.pem"
out_has "...naming the file" "--tls-trusted $WORK/nosuch.pem: no CA certificates could be read"
rc_is "https:// to a port that answers in plain HTTP: fails" 1 \
    renew "https://localhost:$plain_port/pkix/" tdev --tls-trusted "$FX_CA_ROOT"
out_has "...as a TLS failure" "TLS with the CA at https://localhost:$plain_port/pkix/ failed: "

# A server certificate from the trusted CA for another name: refused by the name check.
printf 'subjectAltName = DNS:ca.example\nextendedKeyUsage = serverAuth\n' >"$WORK/other.ext"
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/other.key" -subj /CN=ca.example -out "$WORK/other.csr" 2>/dev/null &&
    OPENSSL_CONF=/dev/null openssl x509 -req -in "$WORK/other.csr" -CA "$FX_CA_INTER" \
        -CAkey "$FX_CA_INTER_KEY" -set_serial 0x7777 -days 2 -extfile "$WORK/other.ext" \
        -out "$WORK/other.pem" 2>/dev/null && cat "$FX_CA_INTER" >>"$WORK/other.pem"
tls_url=$FX_CMP_TLS_URL
FX_NGINX_CERT=$WORK/other.pem FX_NGINX_KEY=$WORK/other.key fx_cmp_tls_start tls2
is "nginx with a certificate for ca.example (same CA) in front of the CA" "$?" 0
tls2_url=$FX_CMP_TLS_URL
FX_CMP_TLS_URL=$tls_url
rc_is "renew against it as localhost: fails" 1 renew "$tls2_url" tdev --tls-trusted "$FX_CA_ROOT"
out_has "...on the name" "TLS: the CA server localhost is not trusted \(hostname mismatch"
rc_is "https to 127.0.0.1 (the address in the certificate) works" 0 \
    renew "https://127.0.0.1:$(cat "$WORK/tls.port")/pkix/" tdev --tls-trusted "$FX_CA_ROOT"

# ---- TLS through the proxy (CONNECT)
n=$(proxied)
rc_is "renew over https with https_proxy set" 0 in_env https_proxy="$FX_PROXY_URL" \
    -- renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$FX_CA_ROOT"
like "...tunnelled through the proxy (CONNECT in its log)" \
    "$(grep 'Request (file descriptor' "$WORK/proxy.log" | tail -n 1)" \
    "CONNECT localhost:$(cat "$WORK/tls.port") "
check "...one tunnel at least (kur and certConf may share it)" test "$(proxied)" -gt "$n"
n=$(proxied)
like "...and reached the CA over TLS" "$(tail -n 1 "$WORK/tls/access.log")" '"POST /pkix/'
rc_is "the same with no_proxy=localhost" 0 in_env https_proxy="$FX_PROXY_URL" \
    no_proxy=localhost -- renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$FX_CA_ROOT"
is "...bypasses the proxy" "$(proxied)" "$n"
rc_is "the wrong --tls-trusted through the proxy: fails" 1 in_env https_proxy="$FX_PROXY_URL" \
    -- renew "$FX_CMP_TLS_URL" tdev --tls-trusted "$FX_OTHER_CA"
out_has "...on the CA server's certificate, not the proxy" \
    "TLS: the CA server localhost is not trusted \(unable to get local issuer certificate"
is "after all this: one certificate each" "$(certs dev)$(certs tdev)" 11
finish
