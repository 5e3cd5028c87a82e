#!/bin/bash
# Fork and threads: a child handshakes with the identity its parent loaded (the provider
# logs in again from the pin source) or loads it itself; 16 threads handshaking at once
# share one load. Also: what the shim costs a program that never matches a rule.
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-concurrency
sh_need_provider
fx_token
fx_ca
fx_nginx_start nginx on
NP=$FX_NGINX_PORT
SH_TIMEOUT=5
SH_LOG_LEVEL=debug sh_token_conf "$WORK/shim.conf" p256 localhost
DEVICE="verify=SUCCESS dn=UID=dev-p256,CN=device-p256"

# loads: how many times the identity was loaded, per process
loads() {
    grep -c 'identity device loaded' <<<"$1"
}

sh_client fork sh_shim sh_py fork "localhost:$NP"
log=$(sh_log_new)
like "fork after loading: parent and child both present the device" \
    "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" "^0 parent: \['$DEVICE'\] child: \['$DEVICE'\] $"
is "... from one load, in the parent" "$(loads "$log") $(grep -c presented <<<"$log")" "1 2"

sh_client fork-first sh_shim sh_py fork "localhost:$NP" --fork-first
log=$(sh_log_new)
like "fork before loading: child and parent each load and present" \
    "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" "^0 child: \['$DEVICE'\] parent: \['$DEVICE'\] $"
is "... one load in each process" "$(loads "$log") $(grep -c presented <<<"$log")" "2 2"

sh_client threads sh_shim sh_py threads "localhost:$NP" --threads 16
log=$(sh_log_new)
is "16 threads at once: all verified as the device" \
    "$SH_RC $(grep -c "$DEVICE" "$SH_OUT")" "0 16"
is "... with one identity load and 16 decisions" \
    "$(loads "$log") $(grep -c presented <<<"$log")" "1 16"

for v in 1.2 1.3; do
    sh_client "asyncio-$v" sh_shim sh_py asyncio "localhost:$NP" --tls "$v"
    like "asyncio (non-blocking) TLS $v: no stray error breaks the handshake" \
        "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" "^0 TLSv$v .*$DEVICE"
done
sh_log_new >/dev/null

# Cost for a program that makes contexts and connections no rule names.
cost() { # prints microseconds per context + no-match handshake setup
    "$SH_PY" - <<'EOF'
import ssl, time
n = 2000
t = time.perf_counter()
for _ in range(n):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
print(int((time.perf_counter() - t) / n * 1e6))
EOF
}
sh_token_conf "$WORK/shim.conf" p256 "other.example"
if [ -n "${P11M_ASAN_PRELOAD:-}" ]; then
    skip "a program that matches no rule pays nothing measurable per context" \
        "sanitizer build: the runtime, not the shim, dominates the cost"
    skip "... never touched the token and decided nothing" "sanitizer build"
    finish
fi
plain=$(cost)
shimmed=$(sh_shim bash -c "$(declare -f cost); SH_PY=$SH_PY; cost")
diag "SSL_CTX_new + SSL_new: ${plain} us without the shim, ${shimmed} us with it"
if [ -n "$plain" ] && [ -n "$shimmed" ] && [ "$shimmed" -le $((plain * 3 / 2 + 20)) ]; then
    ok "a program that matches no rule pays nothing measurable per context"
else
    fail "a program that matches no rule pays nothing measurable per context" \
        "without: $plain us, with: $shimmed us"
fi
log=$(sh_log_new)
is "... never touched the token and decided nothing" "$(loads "$log") $(grep -c dest= <<<"$log")" "0 0"
finish
