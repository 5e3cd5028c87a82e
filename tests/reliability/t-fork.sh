#!/bin/bash
# Fork, through the provider and through the shim:
#   - a process that has used the token forks 50 children at once; each handshakes
#     twice and ends by exit(), _exit() or returning from main; then the parent again;
#   - a process that never used the token forks 50 children (one after the other:
#     SoftHSM2's C_Login rewrites its token file, so logins in many processes at once
#     make SoftHSM2 itself lose the token; see RELIABILITY.md); each logs in itself;
#   - a process whose threads are handshaking while it forks.
# Every wait is bounded (rel-tls's watchdog; children are killed after a deadline), so
# a deadlock fails the test instead of hanging it.
# shellcheck disable=SC2119 # rel_provider_cnf without extra parameters
source "$(dirname "$0")/common.sh"
fx_workdir reliability-fork
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
plan 20

# run_case MODE NAME ARGS...: rel-tls fork in MODE with the core's call log in NAME.log
run_case() {
    local mode=$1 name=$2
    shift 2
    export P11MTLS_DEBUG="2,file:$WORK/$name.log"
    if [ "$mode" = provider ]; then
        rel_provider_cnf
        rel_tls --key "$(fx_key_uri p256)" --cert "$(fx_cert_uri p256)" "$@" fork \
            >"$name.out" 2>&1
    else
        unset OPENSSL_CONF
        rel_shim "$WORK/shim.conf" rel_tls --sni localhost "$@" fork >"$name.out" 2>&1
    fi
    RC=$?
    unset P11MTLS_DEBUG
}

# failed_calls LOG: PKCS#11 calls that did not return CKR_OK (C_Initialize included)
failed_calls() {
    grep -E '= CKR_' "$1" | grep -v '= CKR_OK$' | sort | uniq -c | head -n 5
}

rel_shim_conf shim.conf p256 localhost
common=(--expect "$REL_SUBJECT_p256" --timeout 120 --children 50 --n 2)
for mode in provider shim; do
    run_case "$mode" "$mode-used" "${common[@]}" --warm 2 --child-exit mix
    rel_no_crash "$mode: used the token, then 50 children at once: no crash, no hang" \
        "$RC" "$mode-used.out"
    is "$mode: ... every child handshook twice, verified, and exited (exit/_exit/return)" \
        "$(grep -o '^children=.*' "$mode-used.out")" "children=50 failed=0 timed_out=0"
    like "$mode: ... the parent still works afterwards" \
        "$(grep -o '^parent: .*' "$mode-used.out")" "handshakes=3 ok=3 verified=3 expected=3 .*errors=0"
    is "$mode: ... each child re-initialised the module once" \
        "$(rel_count 're-initialising .* after fork' "$mode-used.log")" 50
    is "$mode: ... and no PKCS#11 call failed (no re-initialisation error)" \
        "$(failed_calls "$mode-used.log")" ""

    run_case "$mode" "$mode-fresh" "${common[@]}" --fresh --serial --child-exit mix
    rel_no_crash "$mode: never used the token, then 50 children: no crash, no hang" \
        "$RC" "$mode-fresh.out"
    is "$mode: ... every child loaded, logged in, handshook and exited" \
        "$(grep -o '^children=.*' "$mode-fresh.out")" "children=50 failed=0 timed_out=0"
    is "$mode: ... 51 logins, one per process, and no PKCS#11 call failed" \
        "$(rel_count 'C_Login\(' "$mode-fresh.log") $(failed_calls "$mode-fresh.log")" "51 "

done

# A child forked while other threads of the parent are inside the PKCS#11 module must
# not inherit the module's internal locks held (SoftHSM2 with its default
# library.reset_on_fork = false hung at its first token call until the core quiesced
# the module around fork). Run twice: it used to hang in a quarter to a half of runs.
# shellcheck disable=SC2317 # called through check
run_busy() {
    run_case "$1" "$1-busy-$2" --expect "$REL_SUBJECT_p256" --timeout 60 --children 50 --n 2 \
        --busy 4 --child-exit _exit
    cat "$1-busy-$2.out"
    [ "$RC" -eq 0 ] && grep -q '^children=50 failed=0 timed_out=0' "$1-busy-$2.out"
}
for mode in provider shim; do
    for run in 1 2; do
        desc="$mode: forking 50 children while 4 threads handshake: no child hangs (run $run)"
        if [ -n "$REL_ASAN" ]; then
            # gcc 12's ASan runtime takes no allocator lock around fork: a child forked
            # while another thread allocates hangs in the runtime itself (seen with gdb).
            skip "$desc" "ASan build: the sanitizer runtime's allocator is not fork-safe"
        else
            # Rare but real (4 of 50 children once, under load): OpenSSL 3.0 takes no lock
            # around fork, so a child forked while another thread holds one of libcrypto's
            # locks hangs at its first use of it. p11mtls quiesces only its PKCS#11 modules.
            rel_known "$desc" \
                "core/OpenSSL: a child forked while another thread is inside libcrypto can hang (reported)" \
                run_busy "$mode" "$run"
        fi
    done
done
finish
