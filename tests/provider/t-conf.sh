#!/bin/bash
# The examples users copy from conf/ work as written (paths adjusted): the provider's
# openssl.cnf sections, and nginx admitting a device that signs with its token key.
source "$(dirname "$0")/common.sh"
fx_workdir provider-conf
fx_token && fx_ca || bail_out "fixtures could not be built"
plan 6
conf="$P11M_BUILDDIR/conf" # the examples with this build's paths

sed -e "s|^module = .*|module = $P11M_PROVIDER|" -e "s|^pin-source = .*|pin-source = file:$FX_PIN_FILE|" \
    "$conf/openssl-p11mtls.cnf" >openssl.cnf
export OPENSSL_CONF=$WORK/openssl.cnf
like "conf/openssl-p11mtls.cnf activates p11mtls" "$(osl list -providers 2>&1)" "p11mtls"
check "... and signs with a token key" osl dgst -sha256 -sign "$(key_uri p256)" -out sig.bin /dev/null

# nginx with the example server block: certificates and port from the fixtures, the
# application behind proxy_pass replaced by nothing (only /whoami is asked for).
port=$(fx_free_port)
mkdir -p nginx/logs
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$port ssl;|" \
    -e "s|/etc/nginx/tls/api.corp.example.fullchain.pem|$FX_SERVER_FULLCHAIN|" \
    -e "s|/etc/nginx/tls/api.corp.example.key|$FX_SERVER_KEY|" \
    -e "s|/etc/nginx/tls/device-ca-chain.pem|$FX_CA_CHAIN|" \
    "$conf/nginx-mtls.conf" >nginx/server.conf
cat >nginx/nginx.conf <<EOC
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log;
events { worker_connections 64; }
http {
    access_log $WORK/nginx/logs/access.log;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    include $WORK/nginx/server.conf;
}
EOC
check "conf/nginx-mtls.conf passes nginx -t" env -u OPENSSL_CONF nginx -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
env -u OPENSSL_CONF nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; fx_cleanup' EXIT
fx_wait_port "$port" 50
get() { printf 'GET /whoami HTTP/1.0\r\nHost: api.corp.example\r\n\r\n' |
    osl s_client -quiet -connect "127.0.0.1:$port" -CAfile "$FX_CA_ROOT" "$@" 2>/dev/null; }
like "a device signing with its token key is admitted with its UID" \
    "$(get -key "$(key_uri p256)" -cert "$(dev_cert p256)")" "verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
like "a client without a certificate is refused" "$(get)" "400 Bad Request"
like "a certificate from another CA is refused" \
    "$(get -key "$(key_uri p256)" -cert "$FX_OTHER_DEV_CERT_p256")" "400 Bad Request"
finish
