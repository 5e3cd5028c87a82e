#!/bin/bash
# p11mtls doctor and the preload library never disagree. For each destination, doctor's
# verdict (its "decision" line, which comes from the shim's own decision code) is
# compared with what the preload library really does for a real client (openssl
# s_client run through `p11mtls run`) against a real server (s_server requiring a
# client certificate): the library's own decision log line, and the peer the server saw.
# Destinations: a rule matches, no rule matches (another host in the rule; an IP
# destination), an expired certificate (continue; on_unavailable = abort). doctor loads
# the identity through its built-in provider, never through a second p11mtls.so.
source "$(dirname "$0")/common.sh"
fx_workdir tool-doctor-agree
fx_token || skip_all "token fixture could not be built"
fx_ca || skip_all "CA fixture could not be built"
unset P11MTLS_CONF P11MTLS_DEBUG
plan 24

check "s_server requiring a client certificate" fx_s_server_start srv
port=$FX_PORT
DEVICE="CN = device-p256, UID = dev-p256"

fx_shim_conf "$WORK/match.conf" p256 localhost
fx_shim_conf "$WORK/nomatch.conf" p256 example.org
sed -e "s|^cert = .*|cert = $FX_DEV_CERT_p256_expired|" "$WORK/match.conf" >"$WORK/expired.conf"
sed -e '$a on_unavailable = abort' "$WORK/expired.conf" >"$WORK/abort.conf"

# doctor_says CONF DEST: present, norule, skip or abort, from doctor's decision line
# (kept in $WORK/doctor.out).
doctor_says() {
    local line
    "$TOOL" doctor --wait 1 --config "$1" "$2" </dev/null >"$WORK/doctor.out" 2>&1
    line=$(grep -E '^[a-zA-Z-]+ +decision ' "$WORK/doctor.out")
    case $line in
    *"presents identity"*) echo present ;;
    *"presents nothing"*"no rule matches"*) echo norule ;;
    *"does not present"*"handshake is aborted"*) echo abort ;;
    *"does not present"*"goes on without"*) echo skip ;;
    *) echo "no decision line: $(tr '\n' '|' <"$WORK/doctor.out")" ;;
    esac
}

# library_does CONF HOST [S_CLIENT ARGS...]: what the preload library decided for
# openssl s_client connecting to HOST:$port, from its log line (in $WORK/client.out).
# s_client sends no SNI for a name without a dot ("localhost") unless told to.
library_does() {
    local conf=$1 host=$2 line
    shift 2
    printf 'Q\n' | with_asan "$TOOL" run --config "$conf" -- openssl s_client \
        -connect "$host:$port" -CAfile "$FX_CA_ROOT" "$@" >"$WORK/client.out" 2>&1
    line=$(grep -E '^p11mtls\[[0-9]+\]: [a-z]+: dest=' "$WORK/client.out")
    case $line in
    *"presented subject="*) echo present ;;
    *"no rule matches"* | *"destination unknown"*) echo norule ;;
    *"handshake aborted"*) echo abort ;;
    *"not presented:"*"continuing without"*) echo skip ;;
    *) echo "no decision logged: $(tr '\n' '|' <"$WORK/client.out")" ;;
    esac
}

# agree NAME CONF DOCTOR-DEST EXPECTED PEER LIBRARY-ARGS...: doctor's verdict is
# EXPECTED, the library's is the same, and the server saw PEER.
agree() {
    local name=$1 conf=$2 dest=$3 want=$4 peer=$5 d l
    shift 5
    d=$(doctor_says "$conf" "$dest")
    is "$name: doctor says $want" "$d" "$want"
    l=$(library_does "$conf" "$@")
    is "$name: the preload library does what doctor said" "$l" "$d"
    is "$name: the server saw $peer" "$(fx_s_server_peer srv)" "$peer"
}

agree "a rule matches" "$WORK/match.conf" "localhost:$port" present "$DEVICE" localhost -servername localhost
out=$(grep -E '^ok +decision ' "$WORK/doctor.out")
like "...doctor names the identity the library loaded" "$out" \
    "presents identity 'device' to localhost:$port \(subject /CN=device-p256/UID=dev-p256"

# The decision loads the identity through the tool's built-in provider: the process
# keeps one PKCS#11 core, p11mtls.so (a second one) is never loaded.
rm -f "$WORK"/lddebug.*
LD_DEBUG=files LD_DEBUG_OUTPUT=$WORK/lddebug "$TOOL" doctor --wait 1 \
    --config "$WORK/match.conf" "localhost:$port" >"$WORK/doctor-lddebug.out" 2>&1
like "...doctor decided (dynamic loader log kept)" \
    "$(grep -E ' decision ' "$WORK/doctor-lddebug.out") $(cat "$WORK"/lddebug.* | grep -c 'file=libssl')" \
    "presents identity 'device'.* [1-9][0-9]*$"
is "...without loading p11mtls.so: one PKCS#11 core in the process" \
    "$(cat "$WORK"/lddebug.* | grep -c 'file=[^ ]*p11mtls\.so')" 0
is "...and the server saw the identity doctor presented" "$(fx_s_server_peer srv)" "$DEVICE"

agree "no rule for the host" "$WORK/nomatch.conf" "localhost:$port" norule none localhost -servername localhost
agree "an IP destination, the rule names a host" "$WORK/match.conf" "127.0.0.1:$port" \
    norule none 127.0.0.1 -noservername

agree "expired certificate" "$WORK/expired.conf" "localhost:$port" skip none localhost -servername localhost
like "...doctor gives the library's reason" "$(grep -E ' decision ' "$WORK/doctor.out")" \
    "does not present identity 'device' to localhost:$port: certificate expired;"
like "...the library logged the same reason" "$(cat "$WORK/client.out")" \
    "not presented: certificate expired; continuing"

agree "expired certificate, on_unavailable = abort" "$WORK/abort.conf" "localhost:$port" \
    abort none localhost -servername localhost
like "...doctor's handshake is aborted too, as the library's" \
    "$(grep -E ' handshake ' "$WORK/doctor.out")" \
    "no certificate presented: certificate expired; the preload library aborts the handshake"
like "...the client saw its handshake fail" "$(cat "$WORK/client.out")" \
    "handshake aborted \(on_unavailable = abort\)"
finish
