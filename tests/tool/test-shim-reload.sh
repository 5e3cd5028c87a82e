#!/bin/bash
# shellcheck disable=SC2317 # the helpers run through check
# A long-running shimmed program whose identity is replaced many times: one python3
# process with four threads making requests to nginx through the shim (p11mtls run),
# the token key with a certificate file that changes between two certificates of that
# key (reload_interval = 1, so each change is a reload that replaces the identity). Every
# replaced identity must be freed once no handshake holds it: the shim's debug log
# counts the identities it has loaded and not freed, and that count must stay bounded,
# ending at one. In the ASan build the shim in the program is instrumented, so a
# handshake using a freed identity would be reported. Then the same with a GnuTLS
# program (gnutls-cli) whose one session answers a post-handshake CertificateRequest
# after each change: GnuTLS frees the identity of the previous answer.
source "$(dirname "$0")/common.sh"
fx_workdir tool-shim-reload
fx_token || skip_all "token fixture could not be built"
fx_ca || skip_all "CA fixture could not be built"
plan 13

ROUNDS=12
# Two certificates of the token's p256 key, serials 0x5001 and 0x5002.
for n in 1 2; do
    OPENSSL_CONF=/dev/null openssl x509 -new -force_pubkey "$FX_PUB_p256" \
        -subj "/CN=reload-$n/UID=reload" -CA "$FX_CA_INTER" -CAkey "$FX_CA_INTER_KEY" \
        -set_serial "0x500$n" -days 2 -extfile "$FX_CA_DIR/client.ext" \
        -out "$WORK/cert$n.pem" 2>/dev/null
done
# use N: the certificate file the shim reads becomes certificate N (renamed into place).
use() {
    cp "$WORK/cert$1.pem" "$WORK/cur.tmp" && mv -f "$WORK/cur.tmp" "$WORK/cur.pem"
}
use 1
cat >"$WORK/shim.conf" <<EOF
[p11mtls]
identities = ids
rules = rules
log_level = debug
reload_interval = 1
[ids]
device = device_id
[device_id]
key = $(fx_key_uri p256)
cert = $WORK/cur.pem
pin_source = file:$FX_PIN_FILE
[rules]
local = rule_local
[rule_local]
match = localhost
identity = device
EOF
# shellcheck disable=SC2016 # nginx expands these
FX_NGINX_EXTRA='location /serial { default_type text/plain; return 200 "$ssl_client_verify $ssl_client_serial\n"; }'
check "nginx requiring client certificates" fx_nginx_start web

# The program: four threads, one request per iteration each, a new connection each
# time, until the file "stop" appears. One line per request: "<status> <body>".
cat >"$WORK/loop.py" <<'EOF'
import os, ssl, sys, threading, time, http.client
ctx = ssl.create_default_context(cafile=sys.argv[2])
lock = threading.Lock()
def run():
    while not os.path.exists(sys.argv[3]):
        try:
            c = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx, timeout=30)
            c.request("GET", "/serial")
            r = c.getresponse()
            line = "%d %s" % (r.status, r.read().decode().strip())
            c.close()
        except Exception as e:
            line = "error " + repr(e)
        with lock:
            print(line, flush=True)
        time.sleep(0.02)
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
EOF
with_asan "$TOOL" run --config "$WORK/shim.conf" -- /usr/bin/python3 "$WORK/loop.py" \
    "$FX_NGINX_PORT" "$FX_CA_ROOT" "$WORK/stop" >"$WORK/loop.out" 2>"$WORK/loop.err" &
loop_pid=$!
# wait_for FILE REGEX COUNT: until FILE has COUNT lines matching REGEX (bounded by a
# count of checks, not asserted as a duration); fails if pid $2 is gone.
wait_for() {
    local i
    for ((i = 0; i < 600; i++)); do
        [ "$(grep -Ec -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
check "the program presents serial 5001" wait_for "$WORK/loop.out" '^200 SUCCESS 5001$' 1 \
    "$loop_pid"
# seen_after N SERIAL: a request after line N of the program's output presented SERIAL.
seen_after() {
    local i
    for ((i = 0; i < 600; i++)); do
        tail -n +$(($1 + 1)) "$WORK/loop.out" | grep -q "^200 SUCCESS $2\$" && return 0
        kill -0 "$loop_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
reloads=0
for ((r = 1; r <= ROUNDS; r++)); do
    n=$(wc -l <"$WORK/loop.out")
    use $((r % 2 + 1))
    wait_for "$WORK/loop.err" 'identity device reloaded: serial' "$r" "$loop_pid" || break
    seen_after "$n" "500$((r % 2 + 1))" || break
    reloads=$r
done
is "the program saw $ROUNDS reloads that replaced the identity" "$reloads" "$ROUNDS"
touch "$WORK/stop"
wait "$loop_pid"
is "the program ran throughout (one process, exit 0)" "$?" 0
fx_drop_foreign_noise "$WORK/loop.err"
is "every request was admitted" "$(grep -cv '^200 SUCCESS 500[12]$' "$WORK/loop.out")" 0
check_not "no sanitizer report" grep -q 'Sanitizer' "$WORK/loop.err"
is "every replaced identity was freed" \
    "$(grep -c 'replaced identity serial 500[12] freed' "$WORK/loop.err")" "$ROUNDS"
# "(N identities loaded)" after each load and free: the current one, a new one being
# read and those still held by handshakes in flight (without freeing: 1 + ROUNDS).
live=$(sed -n 's/.*(\([0-9]*\) identities loaded)$/\1/p' "$WORK/loop.err")
like "the shim never held more than 4 identities" "$(sort -n <<<"$live" | tail -n 1)" '^[1-4]$'
is "...and ended with one" "$(tail -n 1 <<<"$live")" 1

# ---- GnuTLS: one session, a post-handshake CertificateRequest after each change
cat >"$WORK/pha.py" <<'EOF'
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.load_verify_locations(sys.argv[3])
ctx.post_handshake_auth = True
ctx.verify_mode = ssl.CERT_OPTIONAL
listener = socket.create_server(("127.0.0.1", 0))
with open(sys.argv[4], "w") as f:
    f.write("%d\n" % listener.getsockname()[1])
listener.settimeout(60)
conn, _ = listener.accept()
conn.settimeout(60)
# One line from the client per round: the answer to the previous request is processed
# before it; then the serial the server verified, and a new request.
with ctx.wrap_socket(conn, server_side=True) as s:
    f = s.makefile("rb")
    asked = False
    while True:
        line = f.readline()
        if not line or line.strip() == b"quit":
            break
        if asked:
            print("client:", (s.getpeercert() or {}).get("serialNumber", "none"), flush=True)
        s.verify_client_post_handshake()
        asked = True
        s.sendall(b"again\n")
EOF
rm -f "$WORK/pha.port" "$WORK/to-cli"
mkfifo "$WORK/to-cli"
"${FX__SERVER_ENV[@]}" /usr/bin/python3 "$WORK/pha.py" "$FX_SERVER_FULLCHAIN" \
    "$FX_SERVER_KEY" "$FX_CA_CHAIN" "$WORK/pha.port" >"$WORK/pha.out" 2>&1 &
pha_pid=$!
for _ in $(seq 100); do [ -s "$WORK/pha.port" ] && break; sleep 0.05; done
use 1
exec {cli}<>"$WORK/to-cli"
with_asan "$TOOL" run --config "$WORK/shim.conf" -- gnutls-cli --x509cafile "$FX_CA_ROOT" \
    --post-handshake-auth -p "$(cat "$WORK/pha.port")" localhost <&"$cli" \
    >"$WORK/cli.out" 2>"$WORK/cli.err" &
cli_pid=$!
echo first >&"$cli" # the server asks for the first time
seen=0
for ((r = 1; r <= 6; r++)); do
    wait_for "$WORK/cli.err" 'presented subject' "$r" "$cli_pid" || break
    use $((r % 2 + 1))
    sleep 1.1 # the next request must find the identity due (reload_interval = 1)
    echo "round $r" >&"$cli"
    wait_for "$WORK/pha.out" '^client: ' "$r" "$cli_pid" || break
    seen=$r
done
echo quit >&"$cli"
exec {cli}>&-
wait "$pha_pid"
wait "$cli_pid"
fx_drop_foreign_noise "$WORK/cli.err"
is "gnutls-cli answered 6 post-handshake requests in one session" "$seen" 6
is "...the server verified the serials in turn" \
    "$(sed -n 's/^client: //p' "$WORK/pha.out" | tr '\n' ' ')" \
    "5001 5002 5001 5002 5001 5002 "
check_not "...no sanitizer report" grep -q 'Sanitizer' "$WORK/cli.err"
like "...each identity replaced was freed once GnuTLS let go of it" \
    "$(grep -c 'replaced identity serial 500[12] freed' "$WORK/cli.err")" '^6$'
finish
