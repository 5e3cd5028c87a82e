#!/bin/bash
# shellcheck disable=SC2317 # the helpers run through check and rc_is
# CMP enrolment and renewal, real protocol end to end: the CMP test CA (fx-cmp-ca, on
# OpenSSL's CMP server) issuing to `openssl cmp` and to p11mtls; p11mtls against
# `openssl cmp`'s own mock server; renewal with and without a new key, each checked by
# a TLS handshake through the provider (the server reports the certificate it
# verified); kill -9 at every step of a renewal, then a rerun; and the failures: CA
# unreachable, refusal, polling (delivered and bounded), untrusted answers, a
# certificate for another key, token absent, wrong PIN, clock skew.
source "$(dirname "$0")/common.sh"
fx_workdir tool-cmp
fx_ca || skip_all "CA fixture could not be built"
[ -x "${P11M_CMP_CA:-}" ] || bail_out "the CMP test CA (P11M_CMP_CA) is not built"
plan 99

LABEL="cmp"
(umask 077 && echo 87654321 >"$WORK/so.pin" && echo 4321 >"$WORK/pin.txt" &&
    echo 9999 >"$WORK/bad.pin")
PIN=file:$WORK/pin.txt
mkdir -p "$WORK/state"
export FX_PIN_FILE=$WORK/pin.txt

# new_token: a fresh SoftHSM2 token $LABEL with nothing on it.
new_token() {
    rm -rf "$WORK/hsm"
    fresh_softhsm hsm
    "$TOOL" token init --label "$LABEL" --so-pin-source "file:$WORK/so.pin" \
        --pin-source "$PIN" >/dev/null 2>&1
}
# tool CMD ARGS...: the tool on the token, with the PIN and state directory.
# SoftHSM's module directly: quicker than p11-kit's proxy with every registered module.
T=(--token "pkcs11:token=$LABEL" --pin-source "$PIN" --state-dir "$WORK/state"
    --module "$FX_SOFTHSM_MODULE")
enroll() {
    "$TOOL" enroll --server "$FX_CMP_URL" "${T[@]}" --identity device --ref "$FX_CMP_REF" \
        --secret-source "file:$FX_CMP_SECRET_FILE" "$@"
}
renew() {
    "$TOOL" renew --server "$FX_CMP_URL" "${T[@]}" --identity device --timeout 20 --grace 0 \
        "$@"
}
# objects CLASS LABEL: how many objects of that class and label are on the token.
objects() {
    pkcs11-tool --module "$FX_SOFTHSM_MODULE" --token-label "$LABEL" --login --pin 4321 \
        --list-objects --type "$1" 2>/dev/null | grep -c "label: *$2\$"
}
# serial_seen: the serial (hex) of the client certificate s_server verified last.
serial_seen() {
    awk '/^Client certificate$/ { c = 1; pem = ""; next }
         c { pem = pem $0 "\n" } /^-----END CERTIFICATE-----$/ { c = 0; last = pem }
         END { printf "%s", last }' "$WORK/srv.log" |
        OPENSSL_CONF=/dev/null openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
# handshake: TLS 1.3 to s_server with the identity's object= URIs through the provider;
# prints the serial the server verified ("none" if it saw no certificate).
handshake() {
    local u="pkcs11:token=$LABEL;object=device"
    echo hi | OPENSSL_CONF=/dev/null with_asan openssl s_client -provider-path \
        "$(dirname "$P11M_PROVIDER")" -provider p11mtls -provider default -tls1_3 \
        -connect "127.0.0.1:$FX_PORT" -CAfile "$FX_CA_ROOT" \
        -key "$u;type=private?pin-source=$PIN" -cert "$u;type=cert" >"$WORK/hs.log" 2>&1
    [ "$(fx_s_server_peer srv)" != none ] && serial_seen || echo none
}
# ca_serial N: the hex serial of the CA's N-th certificate ("01", "0A", ...).
ca_serial() { printf '%02X' "$1"; }

fx_s_server_start srv >/dev/null || bail_out "s_server did not start"
check "the CMP test CA starts" fx_cmp_ca_start ca

# ---- the test CA with `openssl cmp` as the client
OPENSSL_CONF=/dev/null openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$WORK/soft.key" 2>/dev/null
ocmp() { OPENSSL_CONF=/dev/null openssl cmp -server "$FX_CMP_URL" "$@"; }
check "openssl cmp ir (MAC) against the test CA" ocmp -cmd ir -ref "$FX_CMP_REF" \
    -secret "file:$FX_CMP_SECRET_FILE" -newkey "$WORK/soft.key" -subject "/CN=soft/UID=s-1" \
    -certout "$WORK/soft1.pem" -cacertsout "$WORK/capubs.pem"
is "it issued for the request's subject and key" \
    "$(openssl x509 -in "$WORK/soft1.pem" -noout -subject -serial -pubkey | openssl sha256 -r | cut -c1-16)" \
    "$({ echo "subject=CN = soft, UID = s-1"; echo "serial=01"; openssl pkey -in "$WORK/soft.key" -pubout; } | openssl sha256 -r | cut -c1-16)"
check "the certificate verifies, clientAuth, against the caPubs root" openssl verify \
    -CAfile "$WORK/capubs.pem" -untrusted "$FX_CA_INTER" -purpose sslclient "$WORK/soft1.pem"
check "openssl cmp kur (signed by the certificate) against the test CA" ocmp -cmd kur \
    -key "$WORK/soft.key" -cert "$WORK/soft1.pem" -trusted "$FX_CA_ROOT" \
    -untrusted "$FX_CA_INTER" -certout "$WORK/soft2.pem"
is "the serial increases" "$(openssl x509 -in "$WORK/soft2.pem" -noout -serial)" "serial=02"
OPENSSL_CONF=/dev/null openssl req -new -key "$WORK/soft.key" -subj "/CN=p10/UID=p-1" \
    -out "$WORK/soft.csr" 2>/dev/null
check "openssl cmp p10cr against the test CA" ocmp -cmd p10cr -ref "$FX_CMP_REF" \
    -secret "file:$FX_CMP_SECRET_FILE" -csr "$WORK/soft.csr" -certout "$WORK/soft3.pem"
is "p10cr: the CSR's subject" "$(openssl x509 -in "$WORK/soft3.pem" -noout -subject)" \
    "subject=CN = p10, UID = p-1"
check "openssl cmp cr (signed) against the test CA" ocmp -cmd cr -key "$WORK/soft.key" \
    -cert "$WORK/soft1.pem" -trusted "$FX_CA_ROOT" -untrusted "$FX_CA_INTER" \
    -subject "/CN=cr/UID=c-1" -certout "$WORK/soft4.pem"
check_not "a wrong shared secret is refused" ocmp -cmd ir -ref "$FX_CMP_REF" \
    -secret pass:wrong -newkey "$WORK/soft.key" -subject /CN=x -certout "$WORK/x.pem"
like "the CA logged every issuance" "$(grep -c '^issued' "$WORK/ca.log")" "^4$"
like "...and every certConf" "$(grep -c '^confirmed' "$WORK/ca.log")" "^4$"

# ---- p11mtls enroll on a fresh token
new_token
rc_is "enroll (ir, shared secret) generates the key on the token" 0 enroll \
    --subject /CN=device/UID=dev-0001
out_has "...says so" "generated a ec:P-256 key 'device'"
out_has "...prints the identity's URIs" "^cert pkcs11:token=$LABEL;id=.*;object=device;type=cert$"
is "one private key labelled device" "$(objects privkey device)" 1
is "caPubs and extraCerts stored as the chain" "$(objects cert 'device-ca[0-9]')" 2
like "the CA issued for the token's key, subject with the UID" "$(tail -n 2 "$WORK/ca.log")" \
    "issued ir serial=5 subject=/CN=device/UID=dev-0001"
like "TLS through the provider presents it" "$(handshake)" "^$(ca_serial 5)$"
rc_is "status: ok" 0 "$TOOL" status --token "pkcs11:token=$LABEL" --state-dir "$WORK/state"
out_has "...with subject, issuer, days left and the last attempt" \
    "device: CN=device, UID=dev-0001"
out_has "...the last attempt" "last attempt .*: enroll ok: enrolled"
"$TOOL" status --token "pkcs11:token=$LABEL" --json --state-dir "$WORK/state" \
    >"$WORK/status.json" 2>/dev/null
is "status --json: ok" "$?" 0
check "...parses, with the expected fields" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["identities"]
assert len(d) == 1 and d[0]["name"] == "device" and d[0]["state"] == "ok", d
assert d[0]["days_left"] in (29, 30) and d[0]["last_attempt"]["result"] == "ok", d
' "$WORK/status.json"

# ---- renew with the same key, then with a new key
rc_is "renew (kur, same key)" 0 renew
out_has "...reports the new serial" "renewed: serial $(ca_serial 6)"
is "one certificate for the identity afterwards" "$(objects cert device)" 1
is "...and the same one key" "$(objects privkey device)" 1
like "the new certificate is presented" "$(handshake)" "^$(ca_serial 6)$"
key_before=$(tail -n 2 "$WORK/ca.log" | sed -n 's/^issued kur.* key=//p')
rc_is "renew --new-key" 0 renew --new-key
key_after=$(tail -n 2 "$WORK/ca.log" | sed -n 's/^issued kur.* key=//p')
check "the CA certified a different key" test "$key_before" != "$key_after"
is "one private key labelled device (the old one removed)" "$(objects privkey device)" 1
is "no pending objects left" "$(objects privkey 'device.new')$(objects cert 'device.new')" 00
like "the new key and certificate are presented, same URIs" "$(handshake)" "^$(ca_serial 7)$"
rc_is "renew --if-expiring-within 10 with 29 days left does nothing" 0 renew \
    --if-expiring-within 10
out_has "...and says why" "days left \(more than 10\): not renewed"
like "no request reached the CA" "$(tail -n 1 "$WORK/ca.log")" "^confirmed"
rc_is "renew --if-expiring-within 40 renews" 0 renew --if-expiring-within 40
out_has "...serial" "renewed: serial $(ca_serial 8)"

# ---- status: expiring, expired/missing, Prometheus
rc_is "status --warn-days 40: expiring (1)" 1 "$TOOL" status --token "pkcs11:token=$LABEL" \
    --warn-days 40 --state-dir "$WORK/state" --prometheus "$WORK/p11mtls.prom"
check "the Prometheus file has the metrics" grep -q \
    '^p11mtls_cert_status{identity="device"} 1$' "$WORK/p11mtls.prom"
check "...days left and the last renewal's success" grep -Eq \
    '^p11mtls_renew_last_success\{identity="device"\} 1$' "$WORK/p11mtls.prom"
check "...in the text format node_exporter reads" grep -q \
    '^# TYPE p11mtls_cert_not_after_seconds gauge$' "$WORK/p11mtls.prom"
rc_is "status of an identity with no certificate: 2" 2 "$TOOL" status \
    --token "pkcs11:token=$LABEL" --identity nosuch --state-dir "$WORK/state"
# faketime goes first in LD_PRELOAD; an ASan build must not insist on coming first.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
rc_is "status in 60 days (faketime): expired, 2" 2 faketime -f +60d "$TOOL" status \
    --token "pkcs11:token=$LABEL" --state-dir "$WORK/state"

# ---- failures: nothing stored, the identity keeps working
serial_now=$(ca_serial 8)
good_url=$FX_CMP_URL
FX_CMP_URL=http://127.0.0.1:$(fx_free_port)/pkix/
rc_is "CA unreachable: fails" 1 renew --timeout 2
out_has "...saying so" "is unreachable"
rc_is "status shows the failed attempt" 0 "$TOOL" status --token "pkcs11:token=$LABEL" \
    --state-dir "$WORK/state" --prometheus "$WORK/p11mtls.prom"
out_has "...with its reason" "last attempt .*: renew failed: the CA at .* is unreachable"
check "...and the metric" grep -q '^p11mtls_renew_last_success{identity="device"} 0$' \
    "$WORK/p11mtls.prom"
# A server that answers, but is no CMP server (a wrong --server): an HTTP error status
# under /pkix/, and under /der/ a DER body of CMP's content type that is no CMP message.
cat >"$WORK/not-cmp.py" <<'PY'
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.startswith("/der/"):
            return self.send_error(501, "Unsupported method ('POST')")
        body = bytes.fromhex("3003020105")  # SEQUENCE { INTEGER 5 }
        self.send_response(200)
        self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
port=$(fx_free_port)
python3 "$WORK/not-cmp.py" "$port" >/dev/null 2>&1 &
fx__track "$!" not-cmp
fx_wait_port "$port"
FX_CMP_URL=http://127.0.0.1:$port/pkix/
rc_is "a server that is not a CMP server: fails" 1 renew --timeout 5
out_has "...saying what it answered, not that it is unreachable" \
    "the server at http://127.0.0.1:$port/pkix/ answered, but not as a CMP server \(received error: code=501.*\): check --server"
FX_CMP_URL=http://127.0.0.1:$port/der/
rc_is "a server that answers DER that is no CMP message: fails" 1 renew --timeout 5
out_has "...saying so" \
    "the server at http://127.0.0.1:$port/der/ answered, but not as a CMP server \(.*\(not a CMP message\)\): check --server"
fx__untrack not-cmp
FX_CMP_URL=$good_url

fx_cmp_ca_stop ca
fx_cmp_ca_start ca2 --refuse "device not registered" --failinfo 4 >/dev/null
rc_is "the CA refuses: fails" 1 renew
out_has "...with its PKIStatusInfo text and failure bits" \
    'the CA refused the request: PKIStatus: rejection; PKIFailureInfo: badRequest; StatusString: "device not registered"'
fx_cmp_ca_stop ca2
fx_cmp_ca_start ca3 --poll 2 --check-after 1 >/dev/null
rc_is "the CA asks to wait twice, then delivers (polling)" 0 renew
like "...the CA saw the polls" "$(grep -c '^polled' "$WORK/ca3.log")" "^2$"
serial_now=$(sed -n 's/^issued kur serial=\([0-9]*\).*/\1/p' "$WORK/ca3.log")
serial_now=$(ca_serial "$serial_now")
fx_cmp_ca_stop ca3
fx_cmp_ca_start ca4 --poll 1000 --check-after 1 --serial 100 >/dev/null
rc_is "the CA keeps asking to wait: bounded by --timeout" 1 renew --timeout 3
out_has "...saying so" "asked to wait \(polling\) longer than --timeout 3 s"
fx_cmp_ca_stop ca4
fx_cmp_ca_start ca5 --ca-cert "$FX_OTHER_CA" --ca-key "$FX_OTHER_CA_KEY" --serial 200 >/dev/null
rc_is "a certificate from an untrusted CA: refused" 1 renew
out_has "...nothing stored" "does not verify against the trusted CA certificates.*nothing stored"
like "...the CA got the negative certConf" "$(grep '^confirmed' "$WORK/ca5.log")" "rejection"
fx_cmp_ca_stop ca5
fx_cmp_ca_start ca6 --srv-cert "$FX_OTHER_CA" --srv-key "$FX_OTHER_CA_KEY" --serial 300 >/dev/null
rc_is "an answer signed by an untrusted signer: refused" 1 renew
out_has "...nothing stored" "not signed by a trusted CA.*nothing stored"
fx_cmp_ca_stop ca6
is "after the failures: still one certificate and one key" \
    "$(objects cert device)$(objects privkey device)" 11
like "...and the identity presents the last good certificate" "$(handshake)" "^$serial_now$"

fx_cmp_ca_start ca7 >/dev/null
rc_is "token absent: fails" 1 "$TOOL" renew --server "$FX_CMP_URL" --token \
    "pkcs11:token=nosuch" --pin-source "$PIN" --state-dir "$WORK/state" --identity device
out_has "...naming the token" "no token matches token=nosuch"
P11MTLS_DEBUG=1 "$TOOL" renew --server "$FX_CMP_URL" --token "pkcs11:token=$LABEL" \
    --pin-source "file:$WORK/bad.pin" --state-dir "$WORK/state" --identity device \
    >"$WORK/badpin.out" 2>&1
rc=$?
is "wrong PIN: fails" "$rc" 1
is "...after exactly one C_Login" "$(grep -c 'C_Login(.*CKR_PIN_INCORRECT' "$WORK/badpin.out")" 1
like "...and nothing reached the CA" "$(grep -c . "$WORK/ca7.log")" "^0$"
rc_is "clock skew: the device clock two days behind" 1 faketime -f -2d "$TOOL" renew \
    --server "$FX_CMP_URL" "${T[@]}" --identity device
out_has "...is named" "clock skew: .*check the clock \(nothing stored\)"
rc_is "enroll --bootstrap without --trusted is a usage error" 2 "$TOOL" enroll \
    --server "$FX_CMP_URL" "${T[@]}" --identity x --bootstrap device
rc_is "a secret never comes from the command line" 2 "$TOOL" enroll --server \
    "$FX_CMP_URL" "${T[@]}" --identity x --ref r --secret-source s3cret

# ---- kill -9 at each step of a renewal, then a rerun
for step in 1 2 3 4 5 6 7; do
    P11MTLS_TEST_KILL_AT=$step renew --new-key >"$WORK/kill.out" 2>&1
    rc=$?
    if [ "$rc" -ne 137 ] || ! grep -q "killed at step $step" "$WORK/kill.out"; then
        fail "kill -9 at step $step of renew --new-key" "exit $rc" "$(tail -n 5 "$WORK/kill.out")"
        continue
    fi
    s=$(handshake)
    if [ "$s" = none ]; then
        fail "killed at step $step ($(sed -n 's/.*killed at step [0-9] (\(.*\))/\1/p' "$WORK/kill.out")): the identity still works" \
            "$(tail -n 5 "$WORK/hs.log")"
        continue
    fi
    if renew --new-key >"$WORK/rerun.out" 2>&1 &&
        [ "$(objects cert device)$(objects privkey device)" = 11 ] &&
        [ "$(objects privkey 'device.new')$(objects cert 'device.new')" = 00 ] &&
        [ "$(handshake)" != none ]; then
        ok "killed at step $step ($(sed -n 's/.*killed at step [0-9] (\(.*\))/\1/p' "$WORK/kill.out")): identity usable, a rerun completes"
    else
        fail "killed at step $step: a rerun completes" "$(tail -n 5 "$WORK/rerun.out")" \
            "certs $(objects cert device) keys $(objects privkey device)"
    fi
done
P11MTLS_TEST_KILL_AT=3 renew >/dev/null 2>&1
like "same key, killed after storing: both certificates on the token, the new one presented" \
    "$(objects cert device) $(handshake)" "^2 $(ca_serial "$(sed -n 's/^issued kur serial=\([0-9]*\).*/\1/p' "$WORK/ca7.log" | tail -n 1)")$"
rc_is "...a timer rerun (fresh) tidies up" 0 renew --if-expiring-within 5
is "...one certificate left" "$(objects cert device)" 1

# ---- p11mtls against `openssl cmp`'s own mock server (it returns a given certificate)
mock_port=$(fx_free_port)
"$TOOL" key generate --uri "pkcs11:token=$LABEL;object=mockid" --type ec:P-256 \
    --pin-source "$PIN" >/dev/null 2>&1
"$TOOL" csr --key "pkcs11:token=$LABEL;object=mockid;type=private" --subject /CN=mockid/UID=m-1 \
    --pin-source "$PIN" -o "$WORK/mockid.csr" >/dev/null 2>&1
OPENSSL_CONF=/dev/null openssl req -in "$WORK/mockid.csr" -noout -pubkey >"$WORK/mockid.pub"
OPENSSL_CONF=/dev/null openssl x509 -new -force_pubkey "$WORK/mockid.pub" \
    -subj /CN=mockid/UID=m-1 -CA "$FX_CA_INTER" -CAkey "$FX_CA_INTER_KEY" -set_serial 0x4242 \
    -days 20 -extfile "$FX_CA_DIR/client.ext" -out "$WORK/mock-rsp.pem" 2>/dev/null
mock() { # openssl cmp -port as a mock server (MAC-protected answers), in the background
    "${FX__SERVER_ENV[@]}" openssl cmp -port "$mock_port" -srv_ref "$FX_CMP_REF" \
        -srv_secret "file:$FX_CMP_SECRET_FILE" -rsp_cert "$WORK/mock-rsp.pem" \
        -rsp_extracerts "$FX_CA_INTER" -rsp_capubs "$FX_CA_ROOT" -max_msgs 2 \
        >"$WORK/mock.log" 2>&1 &
    mock_pid=$!
    for _ in $(seq 100); do fx__port_open "$mock_port" && break; sleep 0.05; done
}
mock_stop() {
    kill "$mock_pid" 2>/dev/null
    wait "$mock_pid" 2>/dev/null
}
mock
FX_CMP_URL=http://127.0.0.1:$mock_port/pkix/
rc_is "enroll (ir) of an existing token key against openssl cmp's mock server" 0 \
    "$TOOL" enroll --server "$FX_CMP_URL" "${T[@]}" --identity mockid --ref "$FX_CMP_REF" \
    --secret-source "file:$FX_CMP_SECRET_FILE"
check "...stores what it returned" "$TOOL" status --token "pkcs11:token=$LABEL" \
    --identity mockid --state-dir "$WORK/state"
is "...under the key's label: one certificate, no new key" \
    "$(objects cert mockid)$(objects privkey mockid)" 11
mock_stop
mock
rc_is "a mock answer for another key (a new identity's key): refused" 1 "$TOOL" enroll \
    --server "$FX_CMP_URL" "${T[@]}" --identity other --ref "$FX_CMP_REF" \
    --secret-source "file:$FX_CMP_SECRET_FILE"
out_has "...nothing stored" "refused.*nothing stored"
is "...no certificate labelled other" "$(objects cert other)" 0
mock_stop

# ---- the other ways in: p10cr, and a bootstrap certificate already on the token
fx_cmp_ca_start ca8 --serial 500 >/dev/null
rc_is "enroll --p10cr (a PKCS#10 request signed on the token)" 0 "$TOOL" enroll \
    --server "$FX_CMP_URL" "${T[@]}" --identity p10 --p10cr --subject /CN=p10/UID=p-2 \
    --ref "$FX_CMP_REF" --secret-source "file:$FX_CMP_SECRET_FILE" --trusted "$FX_CA_ROOT"
like "...the CA issued from the p10cr" "$(grep '^issued' "$WORK/ca8.log")" \
    "issued p10cr serial=500 subject=/CN=p10/UID=p-2"
rc_is "enroll --bootstrap: the ir signed with the manufacturer key and certificate" 0 \
    "$TOOL" enroll --server "$FX_CMP_URL" "${T[@]}" --identity boot --bootstrap mockid \
    --trusted "$FX_CA_ROOT" --subject /CN=boot/UID=b-1
like "...the CA verified the signature and issued" "$(grep '^issued ir' "$WORK/ca8.log")" \
    "issued ir serial=501 subject=/CN=boot/UID=b-1"
is "...stored under the new key's label" "$(objects cert boot)$(objects privkey boot)" 11
rc_is "enroll --bootstrap with the wrong trust anchor: refused" 1 "$TOOL" enroll \
    --server "$FX_CMP_URL" "${T[@]}" --identity boot2 --bootstrap mockid \
    --trusted "$FX_OTHER_CA" --subject /CN=boot2
is "...nothing stored" "$(objects cert boot2)" 0
finish
