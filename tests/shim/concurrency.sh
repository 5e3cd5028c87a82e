#!/bin/bash
# Fork and threads: a child handshakes with the identity its parent loaded (the provider
# logs in again from the pin source) or loads it itself; 16 threads handshaking at once
# share one load. Also: a program that never matches a rule is left alone.
# On the emulated TPM (P11M_TEST_TOKEN=tpm) a child cannot use an identity its parent
# loaded (tpm2-pkcs11 keeps the parent's TPM session): the child is told so clearly and
# goes on without a certificate, the parent keeps presenting, the TPM counts no failure.
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

[ "$P11M_TEST_TOKEN" != tpm ] || da_before=$(fx_tpm_lockout_counter)
sh_client fork sh_shim sh_py fork "localhost:$NP" --parent-again
log=$(sh_log_new)
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    # nginx (ssl_verify_client on) answers a client without a certificate with its 400 page.
    like "fork after loading, TPM: the parent presents, the child cannot, the parent again" \
        "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" \
        "^0 parent: \['$DEVICE'\] child: \['</html>'\] parent: \['$DEVICE'\] $"
    is "... from one load, in the parent, which presented twice" \
        "$(loads "$log") $(grep -c 'identity=device: presented' <<<"$log")" "1 2"
    like "... the child was told why, and went on without a certificate" "$log" \
        "identity=device: not presented: test signature failed: .*cannot be used in a forked child: its PKCS#11 module \(tpm2-pkcs11\).*identity device was loaded before a fork\); continuing without a client certificate"
    is "... and the TPM counted no failed authorisation" "$(fx_tpm_lockout_counter)" "$da_before"
else
    like "fork after loading: parent and child both present the device, the parent again" \
        "$SH_RC $(tr '\n' ' ' <"$SH_OUT")" \
        "^0 parent: \['$DEVICE'\] child: \['$DEVICE'\] parent: \['$DEVICE'\] $"
    is "... from one load, in the parent" "$(loads "$log") $(grep -c presented <<<"$log")" "1 3"
fi

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

# A program that makes contexts and connections no rule names: the shim must stay out of
# its way (no identity load, no decision). What that costs per context is a benchmark
# claim, not a test: tests/bench/run --only shim measures nomatch/none side by side.
contexts() {
    "$SH_PY" - <<'EOF'
import ssl
for _ in range(200):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
print("made 200")
EOF
}
sh_token_conf "$WORK/shim.conf" p256 "other.example"
is "a program that matches no rule makes its 200 contexts under the shim" \
    "$(sh_shim bash -c "$(declare -f contexts); SH_PY=$SH_PY; contexts")" "made 200"
log=$(sh_log_new)
is "... never touched the token and decided nothing" "$(loads "$log") $(grep -c dest= <<<"$log")" "0 0"
finish
