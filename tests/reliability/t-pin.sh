#!/bin/bash
# The PIN: a wrong one is tried exactly once per process (shim, tool), a PIN file that
# group or others can read is refused with a clear message (shim, tool), a PIN source
# that would block (a FIFO) hangs nothing (shim, provider, tool), and at the highest
# debug level no
# log and no output of the provider, the shim or the tool contains the PIN.
#
# C_Login calls are counted from the core's call log (P11MTLS_DEBUG=2,file:PATH, one
# line per PKCS#11 call). The token copy gets a distinctive PIN first, so that a grep
# for it finds nothing but a leak.
# shellcheck disable=SC2119,SC2031 # rel_provider_cnf without parameters; subshell exports
source "$(dirname "$0")/common.sh"
fx_workdir reliability-pin
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
plan 42

SECRET=Kq7Vx2Lm9Pz4
WRONG=Wr8Nb3Ty6Hc1
pkcs11-tool --module "$FX_SOFTHSM_MODULE" --token-label "$FX_TOKEN_LABEL" --login \
    --pin "$FX_PIN" --change-pin --new-pin "$SECRET" >change-pin.out 2>&1 ||
    bail_out "cannot change the PIN of the test token: $(cat change-pin.out)"
(umask 077 && echo "$SECRET" >"$FX_PIN_FILE" && echo "$WRONG" >wrong-pin.txt)
export P11MTLS_PROVIDER=$P11M_PROVIDER
TOOL=$P11M_TOOL
KEY=$(fx_key_uri p256)
unset OPENSSL_CONF

# shim_run NAME CONF ARGS...: rel-tls (no certificate code) under the shim, server
# asking for a certificate but not insisting; core call log NAME.log, output NAME.out
shim_run() {
    local name=$1 conf=$2
    shift 2
    P11MTLS_DEBUG="2,file:$WORK/$name.log" rel_shim "$conf" \
        rel_tls --sni localhost --optional --timeout 60 "$@" threads >"$name.out" 2>&1
}

# ---- a wrong PIN is tried once
# Each program below starts as if no process had tried the wrong PIN yet: the core's
# record of refused PINs (shared by every process of the device) is fresh for each.
export P11MTLS_RUNTIME_DIR=$WORK/run-shim
REL_PIN_SOURCE=file:$WORK/wrong-pin.txt rel_shim_conf wrong.conf p256 localhost
: >shim.log
shim_run shim-wrong "$WORK/wrong.conf" --threads 4 --n 5
like "shim, wrong PIN: 4 threads x 5 handshakes all go on without a certificate" \
    "$(grep -o 'handshakes=.*' shim-wrong.out)" "handshakes=20 ok=20 verified=0 .*none=20 errors=0"
is "... the token saw exactly one C_Login" "$(rel_count 'C_Login\(' shim-wrong.log)" 1
is "... and every decision says why" \
    "$(rel_count 'not presented: .*PIN incorrect.*C_Login: CKR_PIN_INCORRECT' shim.log)" 20

# The shim retries a failed identity 30 s later; the core still never tries the PIN
# again. The clock jumps 60 s in the middle of the run (libfaketime, time file).
FAKETIME_LIB=$(find /usr/lib -name libfaketime.so.1 2>/dev/null | head -n 1)
: >shim.log
export P11MTLS_RUNTIME_DIR=$WORK/run-retry
if [ -n "$FAKETIME_LIB" ]; then
    echo "+0" >faketime.txt
    (
        export FAKETIME_TIMESTAMP_FILE=$WORK/faketime.txt FAKETIME_NO_CACHE=1
        export LD_PRELOAD=$FAKETIME_LIB
        shim_run shim-retry "$WORK/wrong.conf" --threads 1 --n 8 --pause 250
    ) &
    sleep 1
    echo "+60" >faketime.txt
    wait
    like "shim, wrong PIN, retried after 30 s: still no certificate" \
        "$(grep -o 'handshakes=.*' shim-retry.out)" "handshakes=8 ok=8 .*none=8 errors=0"
    like "... the retry was refused by the core, not by the token" \
        "$(tail -n 1 shim.log)" "refused the PIN earlier in this process; not tried again"
    is "... still exactly one C_Login" "$(rel_count 'C_Login\(' shim-retry.log)" 1
else
    for i in 1 2 3; do skip "shim, wrong PIN, retried after 30 s ($i)" "libfaketime not found"; done
fi

rc=0
export P11MTLS_RUNTIME_DIR=$WORK/run-csr
P11MTLS_DEBUG="2,file:$WORK/tool-csr.log" "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
    --pin-source "file:$WORK/wrong-pin.txt" -o "$WORK/x.csr" >tool-csr.out 2>&1 || rc=$?
is "tool csr, wrong PIN: fails (exit 1)" "$rc" 1
like "... saying the token refused the PIN" "$(cat tool-csr.out)" "refused the PIN.*CKR_PIN_INCORRECT"
is "... after exactly one C_Login" "$(rel_count 'C_Login\(' tool-csr.log)" 1

rc=0
export P11MTLS_RUNTIME_DIR=$WORK/run-doctor
P11MTLS_DEBUG="2,file:$WORK/tool-doctor.log" "$TOOL" doctor --config "$WORK/wrong.conf" \
    >tool-doctor.out 2>&1 || rc=$?
is "tool doctor, wrong PIN: a failed check (exit 3)" "$rc" 3
like "... the login line says so" "$(grep '^FAIL  login' tool-doctor.out)" \
    "refused the PIN.*1 C_Login attempt; no other will be made"
is "... after exactly one C_Login" "$(rel_count 'C_Login\(' tool-doctor.log)" 1
# Another process, the same wrong PIN: the token never sees it again.
rc=0
P11MTLS_DEBUG="2,file:$WORK/tool-csr2.log" "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
    --pin-source "file:$WORK/wrong-pin.txt" -o "$WORK/x.csr" >tool-csr2.out 2>&1 || rc=$?
like "tool csr after doctor, same wrong PIN: refused from the record, no C_Login" \
    "$rc $(rel_count 'C_Login\(' tool-csr2.log) $(cat tool-csr2.out)" \
    "^1 0 .*was refused by token .*not tried again by any process"
rc=0
"$TOOL" doctor --config "$WORK/wrong.conf" >tool-doctor2.out 2>&1 || rc=$?
like "... and doctor reports the refusal and how to undo it" \
    "$rc $(grep -A1 '^FAIL  pin ' tool-doctor2.out | tr '\n' ' ')" \
    "^3 FAIL  pin .*was refused by token.*p11mtls pin reset-refusal"
check "p11mtls pin reset-refusal forgets it" "$TOOL" pin reset-refusal "$FX_TOKEN_LABEL"
rc=0
P11MTLS_DEBUG="2,file:$WORK/tool-csr3.log" "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
    --pin-source "file:$WORK/wrong-pin.txt" -o "$WORK/x.csr" >tool-csr3.out 2>&1 || rc=$?
is "... after which the PIN is tried once more" "$rc $(rel_count 'C_Login\(' tool-csr3.log)" "1 1"

# ---- PIN files that group or others can read
cp "$FX_PIN_FILE" pin-0640.txt && chmod 0640 pin-0640.txt
REL_PIN_SOURCE=file:$WORK/pin-0640.txt rel_shim_conf loose.conf p256 localhost
: >shim.log
shim_run shim-loose "$WORK/loose.conf" --n 2
like "shim, PIN file mode 0640: no certificate" "$(grep -o 'handshakes=.*' shim-loose.out)" \
    "handshakes=2 ok=2 verified=0 .*none=2"
like "... the log says why and how to fix it" "$(head -n 1 shim.log)" \
    "not presented: .*pin-0640.txt is accessible by group or others \(mode 640\); refusing it: chmod 600"
is "... and the token saw no login" "$(rel_count 'C_Login\(' shim-loose.log)" 0

# An encrypted key file's passphrase is read by the shim itself (its UI method): the
# same rule holds there (shim fix), and a FIFO does not stall the handshake.
rel_openssl pkey -in "$FX_SOFT_CLIENT_KEY" -aes256 -passout "pass:$SECRET" -out enc.key
cp "$FX_PIN_FILE" pass.txt && chmod 0604 pass.txt
enc_conf() { # PASSFILE
    sed -e "s|^key = .*|key = $WORK/enc.key|" -e "s|^cert = .*|cert = $FX_SOFT_CLIENT_CERT|" \
        -e "s|^pin_source = .*|pin_source = file:$1|" loose.conf >enc.conf
}
enc_conf "$WORK/pass.txt"
: >shim.log
shim_run shim-enc-loose "$WORK/enc.conf" --n 1
like "shim, encrypted key file, passphrase file mode 0604: refused" "$(cat shim.log)" \
    "not presented: no private key at .*enc.key: PIN file .*pass.txt is accessible by group or others \(mode 604\)"
chmod 0600 pass.txt
: >shim.log
shim_run shim-enc-ok "$WORK/enc.conf" --n 1
like "... mode 0600: presented" "$(cat shim.log)" 'presented subject="/CN=soft-client/UID=soft-client"'
mkfifo -m 0600 pass.fifo
enc_conf "$WORK/pass.fifo"
: >shim.log
shim_run shim-enc-fifo "$WORK/enc.conf" --n 1 --timeout 15
rc=$?
is "... a FIFO as passphrase file: the handshake does not hang" "$rc" 0
like "... and the log says it is not a regular file" "$(cat shim.log)" "pass.fifo: not a regular file"

rc=0
P11MTLS_DEBUG="2,file:$WORK/tool-loose.log" "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
    --pin-source "file:$WORK/pin-0640.txt" -o "$WORK/y.csr" >tool-loose.out 2>&1 || rc=$?
is "tool csr, PIN file mode 0640: fails (exit 1)" "$rc" 1
like "... saying why and how to fix it" "$(cat tool-loose.out)" \
    "pin-0640.txt is accessible by group or others \(mode 640\); refusing it: chmod 600"
is "... without any C_Login" "$(rel_count 'C_Login\(' tool-loose.log)" 0
rc=0
"$TOOL" doctor --config "$WORK/loose.conf" >tool-doctor-loose.out 2>&1 || rc=$?
is "tool doctor, PIN file mode 0640: a failed check (exit 3)" "$rc" 3
like "... naming the file and the fix" "$(grep -A1 '^FAIL' tool-doctor-loose.out | head -n 2)" \
    "pin-0640.txt.*(group or others|chmod 600)"

# A pin-source naming a FIFO: a clear error at once, no program stuck at login.
mkfifo -m 0600 pin.fifo
rc=0
timeout 20 "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x --pin-source "file:$WORK/pin.fifo" \
    -o "$WORK/z.csr" >tool-fifo.out 2>&1 || rc=$?
like "tool csr, pin-source naming a FIFO: fails at once (exit 1), no hang" \
    "$rc $(tr '\n' ' ' <tool-fifo.out)" "^1 .*pin.fifo: not a regular file"
REL_PIN_SOURCE=file:$WORK/pin.fifo rel_shim_conf fifo.conf p256 localhost
: >shim.log
shim_run shim-fifo "$WORK/fifo.conf" --n 1 --timeout 15
rc=$?
like "shim, token PIN from a FIFO: no hang, the log says why" "$rc $(cat shim.log)" \
    "^0 .*not presented: .*pin.fifo: not a regular file"

# ---- the PIN never shows, at the highest debug level
rel_provider_cnf
export P11MTLS_DEBUG=9
rc=0
rel_osl storeutl -keys "$KEY?pin-value=$SECRET" >secret-storeutl.out 2>&1 || rc=$?
is "provider, debug 9: storeutl with pin-value in the URI works" "$rc" 0
# OpenSSL's storeutl itself repeats the URI it was given ("Couldn't open file or uri"):
# only the provider's lines count here, and this output stays out of the final grep.
rel_osl storeutl -noout "pkcs11:token=$FX_TOKEN_LABEL;bogus=1?pin-value=$SECRET" \
    >secret-baduri.openssl-echoes-uri 2>&1
is "... a bad URI with pin-value: the provider's error shows it as ***" \
    "$(grep ':p11mtls:' secret-baduri.openssl-echoes-uri | grep -c 'pin-value=\*\*\*') $(grep ':p11mtls:' secret-baduri.openssl-echoes-uri | grep -c "$SECRET")" \
    "1 0"
# A PIN given as "PIN-VALUE=" (refused as a bad URI) is not printed in the error either.
rel_osl storeutl -noout "$KEY?PIN-VALUE=$SECRET" >secret-uppercase.openssl-echoes-uri 2>&1
is "... nor under PIN-VALUE= (any letter case)" \
    "$(grep ':p11mtls:' secret-uppercase.openssl-echoes-uri | grep -c 'PIN-VALUE=\*\*\*') $(grep ':p11mtls:' secret-uppercase.openssl-echoes-uri | grep -c "$SECRET")" \
    "1 0"
echo data >data.txt
export P11MTLS_RUNTIME_DIR=$WORK/run-pin-value
rel_osl dgst -sha256 -sign "$KEY?pin-value=$WRONG" -out sig.bin data.txt \
    >secret-dgst-wrong.out 2>&1
like "... a wrong pin-value fails with a clear error" "$(cat secret-dgst-wrong.out)" \
    "refused the PIN"
P11MTLS_DEBUG="9,file:$WORK/secret-provider.log" rel_tls --key "$KEY" \
    --cert "$(fx_cert_uri p256)" --expect "$REL_SUBJECT_p256" --n 3 --timeout 60 threads \
    >secret-rel-tls.out 2>&1
like "... TLS with the token key works" "$(grep -o 'handshakes=.*' secret-rel-tls.out)" \
    "handshakes=3 ok=3 verified=3 expected=3"
unset OPENSSL_CONF

REL_LOG_LEVEL=debug rel_shim_conf secret.conf p256 localhost
REL_LOG_LEVEL=debug REL_PIN_SOURCE=env:P11M_TEST_PIN rel_shim_conf secret-env.conf p256 localhost
sed "s|^key = .*|key = pkcs11:token=no-such-token;id=%03;type=private?pin-value=$SECRET|" \
    secret.conf >secret-uri.conf
: >shim.log
P11MTLS_DEBUG="9,file:$WORK/secret-shim.log" rel_shim "$WORK/secret.conf" \
    rel_tls --sni localhost --expect "$REL_SUBJECT_p256" --n 2 --timeout 60 threads \
    >secret-shim.out 2>&1
like "shim, log_level debug + provider debug 9: presented" \
    "$(grep -o 'handshakes=.*' secret-shim.out)" "handshakes=2 ok=2 verified=2 expected=2"
P11M_TEST_PIN=$SECRET P11MTLS_DEBUG="9,file:$WORK/secret-shim-env.log" rel_shim \
    "$WORK/secret-env.conf" rel_tls --sni localhost --expect "$REL_SUBJECT_p256" --n 1 \
    --timeout 60 threads >secret-shim-env.out 2>&1
like "... with the PIN from the environment too" \
    "$(grep -o 'handshakes=.*' secret-shim-env.out)" "handshakes=1 ok=1 verified=1 expected=1"
P11MTLS_DEBUG="9,file:$WORK/secret-shim-uri.log" rel_shim "$WORK/secret-uri.conf" \
    rel_tls --sni localhost --optional --n 1 --timeout 60 threads >secret-shim-uri.out 2>&1
like "... a key URI with pin-value that fails is logged with the PIN as ***" \
    "$(cat shim.log)" "pin-value=\*\*\*"

P11MTLS_DEBUG=9 "$TOOL" list --pin-source "file:$FX_PIN_FILE" >secret-tool-list.out 2>&1
like "tool, debug 9: list after a login shows the private keys" "$(cat secret-tool-list.out)" \
    "private"
P11MTLS_DEBUG=9 P11M_TEST_PIN=$SECRET "$TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
    --pin-source env:P11M_TEST_PIN -o "$WORK/s.csr" >secret-tool-csr.out 2>&1
like "... csr with the PIN from the environment works" "$(rel_openssl req -in s.csr -noout -subject 2>&1)" \
    "CN *= *x"
P11MTLS_DEBUG="9,file:$WORK/secret-tool-doctor.log" "$TOOL" doctor --config "$WORK/secret.conf" \
    >secret-tool-doctor.out 2>&1
like "... doctor checks the identity" "$(grep '^ok    sign' secret-tool-doctor.out)" "ok"
unset P11MTLS_DEBUG

leaks=$(grep -rl -e "$SECRET" -e "$WRONG" . --exclude='*.txt' --exclude='*.conf' \
    --exclude='*.cnf' --exclude='*.openssl-echoes-uri' \
    --exclude-dir=token 2>/dev/null)
files=$(find . -maxdepth 1 -type f \( -name '*.log' -o -name '*.out' \) | wc -l)
is "no PIN, right or wrong, in any of the $files logs and outputs" "$leaks" ""
finish
