#!/bin/bash
# shellcheck disable=SC2317 # the helpers run through check and rc_is
# End to end: a fresh SoftHSM2 token enrolled over CMP with the CMP test CA, admitted by
# nginx through the shim; then, while ONE long-running shimmed program (python3) keeps
# making requests to nginx, `p11mtls renew` (same key) and `p11mtls renew --new-key`:
# every request is admitted, and nginx sees the serials in order, old then new, without
# the program being restarted (shim reload_interval = 1 s here, and renew --grace 3 keeps
# the old key that long; no duration is asserted). Then, with reloads switched off
# (reload_interval = 0), a short-lived certificate: in its last seconds (the shim reads
# an identity again when its certificate ends within 10 s) the renewed one takes over;
# never is the expired one presented, not even by a handshake that straddles its end.
source "$(dirname "$0")/common.sh"
fx_workdir tool-cmp-e2e
fx_ca || skip_all "CA fixture could not be built"
[ -x "${P11M_CMP_CA:-}" ] || bail_out "the CMP test CA (P11M_CMP_CA) is not built"
plan 21

LABEL=e2e
(umask 077 && echo 87654321 >"$WORK/so.pin" && echo 4321 >"$WORK/pin.txt")
PIN=file:$WORK/pin.txt
fresh_softhsm hsm
T=(--token "pkcs11:token=$LABEL" --pin-source "$PIN" --state-dir "$WORK")

check "the CMP test CA starts" fx_cmp_ca_start ca
check "token init" "$TOOL" token init --label "$LABEL" --so-pin-source "file:$WORK/so.pin" \
    --pin-source "$PIN"
check "enroll (ir) on the fresh token" "$TOOL" enroll --server "$FX_CMP_URL" "${T[@]}" \
    --identity device --subject /CN=device-e2e/UID=e2e-0001 --ref "$FX_CMP_REF" \
    --secret-source "file:$FX_CMP_SECRET_FILE"
serial() { # N: the CA's N-th serial as nginx prints it
    printf '%02X' "$1"
}
# shellcheck disable=SC2016 # nginx expands these
FX_NGINX_EXTRA='location /serial { default_type text/plain; return 200 "$ssl_client_verify $ssl_client_serial\n"; }'
check "nginx requiring client certificates" fx_nginx_start web
cat >"$WORK/shim.conf" <<EOF
[p11mtls]
identities = ids
rules = rules
log_level = info
reload_interval = 1
[ids]
device = device_id
[device_id]
key = pkcs11:token=$LABEL;object=device;type=private
cert = pkcs11:token=$LABEL;object=device;type=cert
pin_source = $PIN
[rules]
local = rule_local
[rule_local]
match = localhost
identity = device
EOF
like "curl through the shim is admitted with the enrolled identity" \
    "$(run_get "$WORK/shim.conf" "$FX_NGINX_PORT" 2>/dev/null)" \
    "verify=SUCCESS dn=UID=e2e-0001,CN=device-e2e"

# The long-running program: one request per iteration, a new connection each time, until
# the file "stop" appears. One line per request: "<status> <body>" or "error <what>".
cat >"$WORK/loop.py" <<'EOF'
import os, ssl, sys, time, http.client
ctx = ssl.create_default_context(cafile=sys.argv[2])
while not os.path.exists(sys.argv[3]):
    try:
        c = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx, timeout=10)
        c.request("GET", "/serial")
        r = c.getresponse()
        print(r.status, r.read().decode().strip(), flush=True)
        c.close()
    except Exception as e:
        print("error", repr(e), flush=True)
    time.sleep(0.05)
EOF
with_asan "$TOOL" run --config "$WORK/shim.conf" -- /usr/bin/python3 "$WORK/loop.py" \
    "$FX_NGINX_PORT" "$FX_CA_ROOT" "$WORK/stop" >"$WORK/loop.out" 2>"$WORK/loop.err" &
loop_pid=$!
# wait_serial HEX: until the program's requests show that serial (bounded by a count of
# checks, not asserted as a duration).
wait_serial() {
    for _ in $(seq 600); do
        grep -q "^200 SUCCESS $1\$" "$WORK/loop.out" && return 0
        kill -0 "$loop_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
check "the running program presents serial $(serial 1)" wait_serial "$(serial 1)"
check "renew (same key) while it runs" "$TOOL" renew --server "$FX_CMP_URL" "${T[@]}" \
    --identity device
check "...the same program moves to serial $(serial 2)" wait_serial "$(serial 2)"
check "renew --new-key while it runs" "$TOOL" renew --server "$FX_CMP_URL" "${T[@]}" \
    --identity device --new-key --grace 3
check "...the same program moves to serial $(serial 3) (new key)" wait_serial "$(serial 3)"
n=$(wc -l <"$WORK/loop.out")
for _ in $(seq 100); do
    [ "$(wc -l <"$WORK/loop.out")" -ge $((n + 3)) ] && break
    sleep 0.1
done
touch "$WORK/stop"
wait "$loop_pid"
is "the program ran throughout (one process, exit 0)" "$?" 0
is "every request was admitted (no refusal, no error)" \
    "$(grep -cv '^200 SUCCESS [0-9A-F]*$' "$WORK/loop.out")" 0
is "nginx saw the serials in order, never an old one after a new one" \
    "$(uniq <"$WORK/loop.out" | sed 's/^200 SUCCESS //' | tr '\n' ' ')" \
    "$(serial 1) $(serial 2) $(serial 3) "
like "the shim logged the reloads" "$(grep -c 'reloaded: serial' "$WORK/loop.err")" "^2$"

# ---- expiry: no periodic reload, a certificate valid for a few seconds
check "a CMP CA issuing short-lived certificates" fx_cmp_ca_start short --validity-secs 30 \
    --serial 80
short_url=$FX_CMP_URL
check "enroll a second identity 'short' (valid 30 s)" "$TOOL" enroll --server "$short_url" \
    "${T[@]}" --identity short --subject /CN=short-e2e/UID=e2e-0002 --ref "$FX_CMP_REF" \
    --secret-source "file:$FX_CMP_SECRET_FILE"
sed -e 's/^reload_interval = 1$/reload_interval = 0/' -e 's/object=device;/object=short;/' \
    "$WORK/shim.conf" >"$WORK/shim-short.conf"
rm -f "$WORK/stop" "$WORK/loop.out"
with_asan "$TOOL" run --config "$WORK/shim-short.conf" -- /usr/bin/python3 "$WORK/loop.py" \
    "$FX_NGINX_PORT" "$FX_CA_ROOT" "$WORK/stop" >"$WORK/loop.out" 2>"$WORK/loop.err" &
loop_pid=$!
check "the running program presents the short-lived serial $(serial 80)" wait_serial \
    "$(serial 80)"
check "renew it (30 days) while the old one is still valid" "$TOOL" renew \
    --server "$(sed 's/[0-9]*\/pkix/'"$(cat "$WORK/ca.port")"'\/pkix/' <<<"$short_url")" \
    "${T[@]}" --identity short
check "...before the old one expires, the program presents the new one" wait_serial \
    "$(serial 4)"
touch "$WORK/stop"
wait "$loop_pid"
is "every request was admitted: never an expired certificate" \
    "$(grep -cv '^200 SUCCESS [0-9A-F]*$' "$WORK/loop.out")" 0
is "...old serial, then the new one" \
    "$(uniq <"$WORK/loop.out" | sed 's/^200 SUCCESS //' | tr '\n' ' ')" \
    "$(serial 80) $(serial 4) "
finish
