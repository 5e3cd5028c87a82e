#!/bin/bash
# What only a TPM (tpm2-pkcs11 on the emulated TPM) puts at risk: a forked child must
# not use the parent's TPM session (it would break the parent's and count against the
# TPM's dictionary-attack lockout), directly and behind p11-kit's proxy; N processes
# given a wrong PIN must not make N tries (swtpm locks after 3); and a program goes on
# signing after the TPM's resource manager (tpm2-abrmd) restarts under it, and logs in
# after it went away before the program's first login or during it (a refusal from a
# broken link is not believed).
source "$(dirname "$0")/common.sh"
[ "$P11M_TEST_TOKEN" = tpm ] || skip_all "needs P11M_TEST_TOKEN=tpm"
fx_workdir provider-tpm
fx_token && fx_ca || bail_out "fixtures could not be built"
plan 40
prov_conf

for via in proxy module; do
    mp=""
    [ "$via" = module ] && mp="?module-path=$FX_TPM_MODULE"
    before=$(fx_tpm_lockout_counter)
    out=$(tprov fork "$(key_uri p256)$mp" 1 2>&1)
    like "$via: the parent signs, forks; the child is told clearly it cannot use the TPM" \
        "$out" "child: failed.*cannot be used in a forked child: its PKCS#11 module \(tpm2-pkcs11\)"
    like "$via: ... and the parent signs again after the fork" "$out" "parent after fork: ok"
    is "$via: ... and the TPM's lockout counter did not move" "$(fx_tpm_lockout_counter)" "$before"
    out=$(tprov fork "$(key_uri p256)$mp" 3 2>&1)
    like "$via: three children in a row: the parent still signs" "$out" "parent after fork: ok"
done

# tpm2-abrmd restarted under a running program (a package upgrade does it): tpm2-pkcs11
# answers every call with CKR_GENERAL_ERROR from then on, until it is re-initialised.
before=$(fx_tpm_lockout_counter)
P11MTLS_DEBUG="1,file:$WORK/rm-p11.log" run_loop rm.log 30
first_attempt rm.log
sleep 0.5
fx_tpm_rm_restart
is "tpm2-abrmd restarted while a program signs every 200 ms" "$?" 0
wait "$LOOP"
rc=$(loop_rc rm.log)
sed -i '/^exit /d' rm.log
is "...the program survives (exit status)" "$rc" 0
like "...it signed before the restart" "$(head -n 1 rm.log)" "^0 ok"
like "...and signs again after it, with the same key" "$(tail -n 1 rm.log)" "^29 ok"
like "...p11mtls re-initialised the module to get there" \
    "$(grep -m 1 're-initialising' rm-p11.log)" "re-initialising .* to look for tokens again"
is "...an attempt that failed meanwhile names the token's error or its absence" \
    "$(grep FAIL rm.log | grep -cvE 'p11mtls::token (error|not present)$')" 0
is "...the TPM's lockout counter did not move" "$(fx_tpm_lockout_counter)" "$before"

# tpm2-abrmd gone before a program's first login: tpm2-pkcs11 answers C_Login with
# CKR_GENERAL_ERROR from then on, until it is initialised again (a shimmed daemon that
# had not connected yet stayed locked out until restarted). The program starts with no
# PIN file yet (its attempts fail before any login), tpm2-abrmd stops, the PIN file
# appears, a login attempt meets the broken link, and tpm2-abrmd comes back.
before=$(fx_tpm_lockout_counter)
prov_conf "pin-source=file:$WORK/later-pin.txt" debug-level=1 "debug-file=$WORK/late-p11.log"
run_loop late.log 100
first_attempt late.log
fx__untrack tpm-abrmd
(umask 077 && echo "$FX_PIN" >later-pin.txt)
wait_line late.log "FAIL .*token (error|not present)"
fx__tpm_abrmd "$FX_TPM_DIR"
is "tpm2-abrmd back after a login attempt met its absence" "$?" 0
wait "$LOOP"
rc=$(loop_rc late.log)
sed -i '/^exit /d' late.log
is "...the program survives (exit status)" "$rc" 0
like "...that attempt failed as the token's error or absence" \
    "$(grep -m 1 -vE 'PIN source unusable' late.log)" "FAIL .*p11mtls::token (error|not present)$"
like "...and signs once tpm2-abrmd is back" "$(tail -n 1 late.log)" "^99 ok"
is "...no PIN refusal was recorded, the TPM's lockout counter did not move" \
    "$(cat "$P11MTLS_RUNTIME_DIR"/*.refused 2>/dev/null) $(fx_tpm_lockout_counter)" " $before"
like "...p11mtls re-initialised the module to get there" \
    "$(grep -m 1 're-initialising' late-p11.log)" "re-initialising .* to look for tokens again"
prov_conf

# tpm2-abrmd down for long: tpm2-pkcs11 loses 11 KB at every failed C_Initialize, so
# after ten re-initialisations in a row that found no token the core waits 2, 4, 8, 16,
# then 30 s between them, and still finds the TPM once it is back. The count is checked
# against the time that really passed (a busy machine only makes fewer attempts).
before=$(fx_tpm_lockout_counter)
prov_conf debug-level=1 "debug-file=$WORK/long-p11.log"
run_loop long.log 200
first_attempt long.log
fx__untrack tpm-abrmd
backoff="10 re-initialisations in a row found no token to open a session on: trying again every 2 s to 30 s"
wait_line long-p11.log "$backoff"
is "tpm2-abrmd down: after ten vain re-initialisations the core backs off" "$?" 0
t0=$(date +%s)
sleep 8
n=$(sed -n "/$backoff/,\$p" long-p11.log | grep -c 're-initialising')
elapsed=$(($(date +%s) - t0 + 1)) allowed=1 at=0
for gap in 2 4 8 16 30 30 30 30; do
    at=$((at + gap))
    [ "$at" -gt "$elapsed" ] || allowed=$((allowed + 1))
done
check "...then re-initialises 2, 4, 8 s apart: $n times in ${elapsed}s (at most $allowed)" \
    test "$n" -le "$allowed"
since=$(wc -l <long.log)
fx__tpm_abrmd "$FX_TPM_DIR"
wait_line long.log '^[0-9]+ ok' $((since + 1))
is "...and signs again once tpm2-abrmd is back" "$?" 0
wait "$LOOP"
is "...the program survives, the TPM's lockout counter did not move" \
    "$(loop_rc long.log) $(fx_tpm_lockout_counter)" "0 $before"
prov_conf

# A PIN refusal that is the broken link's: tpm2-pkcs11 answers C_Login with
# CKR_PIN_INCORRECT when its unseal command cannot reach the TPM. gdb holds the program
# at Esys_Unseal (the login's last TPM command) while tpm2-abrmd stops, so the refusal
# comes from the broken link every time; believed, it would shut the identity out on the
# whole device. LeakSanitizer cannot run under ptrace, hence detect_leaks=0 there.
before=$(fx_tpm_lockout_counter)
prov_conf debug-level=1 "debug-file=$WORK/unseal-p11.log"
# shellcheck disable=SC2016 # $_exitcode is gdb's
(
    fx_preload_env
    pre=$LD_PRELOAD
    unset LD_PRELOAD
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
    exec gdb -nx -batch -ex 'set breakpoint pending on' \
        -ex 'handle SIGPIPE nostop noprint pass' -ex "set environment LD_PRELOAD=$pre" \
        -ex 'break Esys_Unseal' -ex run \
        -ex "shell touch '$WORK/at-unseal'; for i in \$(seq 300); do [ -e '$WORK/unseal-go' ] && break; sleep 0.1; done" \
        -ex delete -ex continue -ex 'printf "exit %d\n", $_exitcode' \
        --args "$TPROV" loop "$(key_uri p256)" 30 200 2>&1
) | grep --line-buffered -E '^([0-9]+ |exit )' >unseal.log &
LOOP=$!
for _ in $(seq 300); do [ -e at-unseal ] && break; sleep 0.1; done
fx__untrack tpm-abrmd
touch unseal-go
wait_line unseal.log "FAIL|ok"
fx__tpm_abrmd "$FX_TPM_DIR"
is "tpm2-abrmd back after it went away during a login's unseal" "$?" 0
wait "$LOOP"
rc=$(loop_rc unseal.log)
sed -i '/^exit /d' unseal.log
is "...the program survives (exit status)" "$rc" 0
like "...the module answered C_Login with a PIN refusal, not believed" \
    "$(grep -m 1 'answered C_Login' unseal-p11.log)" \
    "answered C_Login with CKR_PIN_INCORRECT, then failed a plain call"
like "...that attempt failed as the token's error or absence" \
    "$(head -n 1 unseal.log)" "^0 FAIL .*p11mtls::token (error|not present)$"
like "...and signs once tpm2-abrmd is back, with the same PIN" "$(tail -n 1 unseal.log)" "^29 ok"
is "...no PIN refusal was recorded, the TPM's lockout counter did not move" \
    "$(cat "$P11MTLS_RUNTIME_DIR"/*.refused 2>/dev/null) $(fx_tpm_lockout_counter)" " $before"
prov_conf

# A fresh copy of the TPM with swtpm's own dictionary-attack policy: 3 failures lock it.
FX_TPM_LOCKOUT=default fx_tpm_token || bail_out "the TPM did not restart"
like "the TPM has its default lockout threshold" \
    "$(tpm2_getcap properties-variable | grep MAX_AUTH_FAIL)" "MAX_AUTH_FAIL: 0x3$"
before=$(fx_tpm_lockout_counter)
(umask 077 && echo 9999 >wrong-pin.txt)
sign() { osl dgst -sha256 -sign "$(key_uri p256)?pin-source=file:$WORK/wrong-pin.txt" -out sig.bin \
    <<<"data"; }
for i in 1 2 3; do
    sign >"wrong-$i.log" 2>&1 && fail "process $i signed with a wrong PIN"
done
like "process 1: the TPM refused the wrong PIN" "$(cat wrong-1.log)" "refused the PIN"
for i in 2 3; do
    like "process $i: not tried again: the record names the source and says what to do" \
        "$(cat "wrong-$i.log")" \
        "the PIN from file:$WORK/wrong-pin.txt was refused by token 'p11mtls-test' at .*; not tried again by any process: fix the PIN source, then run .p11mtls pin reset-refusal."
done
is "three processes, one failed authorisation on the TPM" "$(fx_tpm_lockout_counter)" $((before + 1))
like "the record holds no PIN" "$(cat "$P11MTLS_RUNTIME_DIR"/*.refused)" "^# token p11mtls-test"
is "... only time, salt, PIN digest and source: no field is the PIN" \
    "$(awk '!/^#/ { for (i = 1; i <= NF; i++) if ($i == "9999") print "PIN"; print NF, length($2), length($3) }' \
        "$P11MTLS_RUNTIME_DIR"/*.refused)" "4 32 64"
echo "$FX_PIN" >wrong-pin.txt
check "the PIN source corrected: the right PIN works (the TPM is not locked)" sign
is "... and the lockout counter stayed at one failure" "$(fx_tpm_lockout_counter)" $((before + 1))
finish
