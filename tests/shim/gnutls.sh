#!/bin/bash
# GnuTLS programs get the same identity, rules and log lines as OpenSSL programs: wget
# (TLS 1.3 and 1.2, EC and RSA keys), git clone over https (git-remote-https links
# libcurl-gnutls), gnutls-cli against openssl s_server and with TLS 1.3 post-handshake
# auth, and the cases where the shim must not present: no rule, the program's own
# certificate. nginx verifies the client (ssl_verify_client on: no certificate, 400;
# optional: it says verify=NONE). With P11M_TEST_TOKEN=tpm, on the emulated TPM (keys
# rsa2048 and p256).
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-gnutls
sh_need_provider
fx_token
fx_ca
# git's dumb-http repository next to nginx's answer
mkdir -p "$WORK/git"
git init -q --bare "$WORK/git/repo.git"
git -C "$WORK/git/repo.git" --work-tree="$WORK/git" -c user.name=t -c user.email=t@t \
    commit -q --allow-empty -m "p11mtls gnutls test"
git -C "$WORK/git/repo.git" update-server-info
FX_NGINX_EXTRA="location /git/ { alias $WORK/git/; }" fx_nginx_start web on
NW=$FX_NGINX_PORT
fx_nginx_start opt optional
NO=$FX_NGINX_PORT

# gnutls_expect NAME WANT_OUT LOG_REGEX CMD...: CMD's output matches WANT_OUT (ERE) and
# the shim logged exactly one line, matching LOG_REGEX.
gnutls_expect() {
    local name=$1 want=$2 logre=$3 log lines
    shift 3
    sh_client "$name" sh_shim "$@"
    log=$(sh_log_new)
    lines=$(grep -c . <<<"$log")
    if ! grep -Eq "$want" "$SH_OUT"; then
        fail "$name: output has $want" "exit status $SH_RC" \
            "$(grep -vE 'tcti|TCTI|dbus|tpm ctx|^$' "$SH_OUT" | tail -n 8)" "shim log: $log"
    elif [ "$lines" -eq 1 ] && [[ $log =~ $logre ]]; then
        ok "$name: ${log#*: }"
    else
        fail "$name: one log line matching $logre" "shim log ($lines lines): $log"
    fi
}

sh_wget() { # ARGS... URL
    wget -q -O - -t 1 -T "${SH_TIMEOUT:-3}" --ca-certificate="$FX_CA_ROOT" "$@" </dev/null
}

dn() { echo "verify=SUCCESS dn=UID=dev-$1,CN=device-$1"; }

# -- wget: TLS 1.3 and 1.2, EC and RSA identities, host and IP rules
sh_token_conf "$WORK/shim.conf" p256 localhost
gnutls_expect "wget TLS 1.3, EC key, host rule" "^$(dn p256)$" \
    "dest=localhost:$NW \(sni\) TLSv1.3 rule=r identity=device: presented subject=\"/CN=device-p256/UID=dev-p256\"" \
    sh_wget "https://localhost:$NW/"
sh_token_conf "$WORK/shim.conf" rsa2048 localhost
gnutls_expect "wget TLS 1.3, RSA key (RSA-PSS through the provider)" "^$(dn rsa2048)$" \
    "dest=localhost:$NW \(sni\) TLSv1.3 rule=r identity=device: presented subject=\"/CN=device-rsa2048" \
    sh_wget "https://localhost:$NW/"
gnutls_expect "wget TLS 1.2, RSA key" "^$(dn rsa2048)$" \
    "dest=localhost:$NW \(sni\) TLSv1.2 rule=r identity=device: presented .*rsa2048.*[0-9A-F]$" \
    sh_wget --ciphers=NORMAL:-VERS-TLS1.3 "https://localhost:$NW/"
# The second EC key: p384 on SoftHSM2, the TPM's only one (p256) there.
read -r ec _ <<<"$(fx_have_key p384 p256)"
sh_token_conf "$WORK/shim.conf" "$ec" "127.0.0.1:$NW"
gnutls_expect "wget TLS 1.2, EC key ($ec), IP literal with port (no SNI: the socket)" "^$(dn "$ec")$" \
    "dest=127.0.0.1:$NW \(peer\) TLSv1.2 rule=r identity=device: presented .*$ec" \
    sh_wget --ciphers=NORMAL:-VERS-TLS1.3 "https://127.0.0.1:$NW/"

# -- git clone over https (libcurl-gnutls with its own push/pull functions)
sh_token_conf "$WORK/shim.conf" p256 "localhost:$NW"
gnutls_expect "git clone over https" "^cloned: p11mtls gnutls test$" \
    "dest=localhost:$NW \(sni\) TLSv1.3 rule=r identity=device: presented .*p256" \
    bash -c 'GIT_SSL_CAINFO=$1 git clone -q "https://localhost:$2/git/repo.git" "$3" &&
        echo "cloned: $(git -C "$3" log -1 --format=%s)"' \
    git "$FX_CA_ROOT" "$NW" "$WORK/clone"
sh_log_new >/dev/null

# -- gnutls-cli: its own retrieve callback (no certificate given) is chained
gnutls_cli() { # PORT ARGS... (stdin stays open while process GNUTLS_HOLD runs)
    { printf 'GET / HTTP/1.0\r\n\r\n'; while [ -n "${GNUTLS_HOLD:-}" ] && kill -0 "$GNUTLS_HOLD" 2>/dev/null; do sleep 0.1; done; } |
        timeout "${SH_TIMEOUT:-3}" gnutls-cli --x509cafile="$FX_CA_ROOT" -p "$1" "${@:2}" localhost
}
sh_token_conf "$WORK/shim.conf" p256 localhost
fx_s_server_start sserv
gnutls_expect "gnutls-cli against openssl s_server (TLS 1.3)" "." \
    "dest=localhost:$FX_PORT \(sni\) TLSv1.3 rule=r identity=device: presented .*p256" \
    gnutls_cli "$FX_PORT"
is "... s_server verified the device" "$(fx_s_server_peer sserv)" \
    "$(fx_cert_subject "$FX_DEV_CERT_p256")"
gnutls_expect "gnutls-cli TLS 1.2 against openssl s_server" "." \
    "dest=localhost:$FX_PORT \(sni\) TLSv1.2 rule=r identity=device: presented .*p256" \
    gnutls_cli "$FX_PORT" --priority=NORMAL:-VERS-TLS1.3
is "... s_server verified the device" "$(fx_s_server_peer sserv)" \
    "$(fx_cert_subject "$FX_DEV_CERT_p256")"
gnutls_expect "gnutls-cli with its own certificate: its callback's choice is sent" \
    "^verify=SUCCESS dn=UID=soft-client,CN=soft-client" \
    "dest=localhost:$NW \(sni\) TLSv1.3: the program's certificate callback chose the certificate; p11mtls not involved" \
    gnutls_cli "$NW" --x509certfile="$FX_SOFT_CLIENT_CERT" --x509keyfile="$FX_SOFT_CLIENT_KEY"

# -- TLS 1.3 post-handshake authentication (gnutls_reauth)
rm -f "$WORK/pha.port"
"$SH_PY" "$SH_DIR/pha_server.py" "$FX_SERVER_FULLCHAIN" "$FX_SERVER_KEY" "$FX_CA_CHAIN" \
    "$WORK/pha.port" >"$WORK/pha.out" 2>&1 &
pha=$!
for ((i = 0; i < 100; i++)); do
    [ -s "$WORK/pha.port" ] && break
    sleep 0.05
done
sh_token_conf "$WORK/shim.conf" p256 "localhost"
GNUTLS_HOLD=$pha sh_client pha sh_shim gnutls_cli "$(cat "$WORK/pha.port")" --post-handshake-auth
wait "$pha"
like "gnutls-cli, post-handshake auth: the server got the device" "$(cat "$WORK/pha.out")" \
    "^client: CN=device-p256"
like "... decided at the server's late request, port from the handshake's socket" \
    "$(sh_log_new)" "dest=localhost:$(cat "$WORK/pha.port") \(sni\) TLSv1.3 rule=r identity=device: presented"

# -- ldapwhoami (libldap: GnuTLS with its own transport, which reads with read())
# against slapd with TLSVerifyClient demand; SASL EXTERNAL names the certificate's
# subject, so the answer proves what slapd verified. By IP: libldap checks the FQDN for
# "localhost".
slapd_start() {
    local d=$WORK/slapd i
    rm -rf "$d"
    mkdir -p "$d/conf"
    cat >"$d/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $d/slapd.pid
olcTLSCACertificateFile: $FX_CA_CHAIN
olcTLSCertificateFile: $FX_SERVER_FULLCHAIN
olcTLSCertificateKeyFile: $FX_SERVER_KEY
olcTLSVerifyClient: demand

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
LDIF
    slapadd -q -n 0 -F "$d/conf" -l "$d/config.ldif" || return 1
    LP=$(fx_free_port)
    "${FX__SERVER_ENV[@]}" /usr/sbin/slapd -h "ldaps://127.0.0.1:$LP/" -F "$d/conf" -d 0 \
        >"$d/log" 2>&1 &
    fx__track $! slapd
    for ((i = 0; i < 100; i++)); do
        fx__port_open "$LP" && return 0
        sleep 0.05
    done
    return 1
}
# ldapwhoami exits with the LDAP error (-6: 250), which would read as a signal
ldap_whoami() {
    LDAPTLS_CACERT="$FX_CA_ROOT" ldapwhoami -N -Y EXTERNAL -H "ldaps://127.0.0.1:$LP" || return 1
}
check "slapd starts (ldaps, TLSVerifyClient demand)" slapd_start
sh_token_conf "$WORK/shim.conf" p256 "127.0.0.1:$LP"
gnutls_expect "ldapwhoami -Y EXTERNAL against slapd" \
    "^dn:uid=dev-p256,cn=device-p256$" \
    "dest=127.0.0.1:$LP \(peer\) TLSv1.3 rule=r identity=device: presented .*p256" \
    ldap_whoami
sh_token_conf "$WORK/shim.conf" p256 "127.0.0.1:1"
sh_client ldap-norule sh_shim ldap_whoami
like "... a rule for another port: slapd gets no certificate, no identity" \
    "$SH_RC $(grep -c '^dn:' "$SH_OUT") $(sh_log_new)" \
    "^1 0 .*dest=127.0.0.1:$LP \(peer\) TLSv1.3: no rule matches"

# -- where nothing is presented
sh_token_conf "$WORK/shim.conf" p256 "other.example localhost:1 127.0.0.1:1"
gnutls_expect "wget, no rule for the destination" "^verify=NONE" \
    "dest=localhost:$NO \(sni\) TLSv1.3: no rule matches; no certificate from p11mtls" \
    sh_wget "https://localhost:$NO/"
gnutls_expect "wget, a rule for another port of the same IP" "^verify=NONE" \
    "dest=127.0.0.1:$NO \(peer\) TLSv1.3: no rule matches" sh_wget "https://127.0.0.1:$NO/"
sh_token_conf "$WORK/shim.conf" p256 "localhost"
sh_client wget-own sh_shim sh_wget --certificate="$FX_SOFT_CLIENT_CERT" \
    --private-key="$FX_SOFT_CLIENT_KEY" "https://localhost:$NO/"
like "wget with its own certificate sends it, not the device" "$(cat "$SH_OUT")" \
    "^verify=SUCCESS dn=UID=soft-client,CN=soft-client"
sh_log_new >/dev/null
sh_token_conf "$WORK/shim.conf" p256 "other.example"
fx_nginx_mark web
sh_client wget-norule sh_shim sh_wget "https://localhost:$NW/"
like "no rule: nginx (verify on) sees no certificate and refuses wget" \
    "$SH_RC $(cat "$SH_OUT") $(fx_nginx_next web)" \
    '^8  .* 400 TLSv1.3 verify=NONE dn="-"$'

# -- p11mtls doctor --program: which TLS library, covered or not
doctor_prog() { "$P11M_TOOL" doctor --config "$WORK/shim.conf" --program "$1" | grep ' program '; }
like "doctor: wget uses GnuTLS, covered" "$(doctor_prog /usr/bin/wget)" \
    "^ok +program +/usr/bin/wget uses GnuTLS \(libgnutls.so.30\): covered by the preload library$"
like "doctor: curl loads both, each connection handled once" "$(doctor_prog /usr/bin/curl | tr '\n' '|')" \
    "OpenSSL 3 \(libssl.so.3\): covered.*GnuTLS \(libgnutls.so.30\): covered.*both: each connection is handled once"
like "doctor: a statically linked program is named as not covered, with the alternative" \
    "$(doctor_prog /sbin/ldconfig)" "^warn +program .*statically linked.*not covered.*openssl.cnf.*PKCS#11"
/usr/bin/python3 -c 'import ssl, sys; sys.stdin.read()' < <(sleep 30) &
py=$!
for ((i = 0; i < 100; i++)); do
    grep -q libssl "/proc/$py/maps" 2>/dev/null && break
    sleep 0.05
done
like "doctor: a running python (ssl loaded with dlopen) uses OpenSSL 3" "$(doctor_prog "$py")" \
    "^ok +program +$py uses OpenSSL 3"
kill "$py" 2>/dev/null
finish
