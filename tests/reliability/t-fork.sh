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
plan 24

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
#
# OpenSSL 3.0 itself takes none of its locks around fork, so a child forked while a
# parent thread holds one (an OpenSSL method store's lock, taken while a fetched
# algorithm is added to it) blocks at its first fetch, with or without p11mtls
# (tests/reliability/fork_hang_min.c shows it with OpenSSL alone; RELIABILITY.md).
# What p11mtls guarantees, and what is checked: no child fails (each one that runs is
# verified as the device), no PKCS#11 call fails, the parent keeps working, and a child
# that does hang waits on a lock of libcrypto's, not inside p11mtls's core, p11-kit or
# the module: rel-tls has gdb print every hung child's stacks before killing it.
cat >on-hang.sh <<'EOF2'
#!/bin/bash
gdb -p "$1" -batch -ex 'thread apply all bt' >"$HUNG_DIR/$1.bt" 2>&1
EOF2
chmod +x on-hang.sh

# where_hung BT PID: "libcrypto" if the child's main thread waits on a lock libcrypto
# took and is not inside the PKCS#11 module or p11-kit; otherwise the frames. A main
# thread waiting for rel-tls's own server thread to go idle (servers_quiet) is judged by
# where that server thread waits.
where_hung() {
    awk -v lwp="(LWP $2)" '
        /^Thread / { t++; main[t] = index($0, lwp) > 0; n[t] = 0; next }
        t && /^#/ { n[t]++; f[t, n[t]] = $0; if ($0 ~ /server_thread/) srv = t
                    if ($0 ~ /servers_quiet/) quiet[t] = 1 }
        END {
            for (i = 1; i <= t; i++) if (main[i]) m = i
            if (m && quiet[m] && srv) m = srv
            for (i = 1; i <= n[m]; i++)
                if (f[m, i] !~ /futex|pthread_|lll_lock|__GI_/) break
            if (i <= n[m] && f[m, i] ~ /libcrypto\.so/) {
                for (j = 1; j <= n[m]; j++)
                    if (f[m, j] ~ /p11-kit|p11_kit|softhsm|tpm2|p11m_|C_Sign|C_Login/) {
                        print "inside the PKCS#11 module: " f[m, j]; exit
                    }
                print "libcrypto"; exit
            }
            for (j = 1; j <= n[m] && j <= 12; j++) print f[m, j]
        }' "$1"
}

# shellcheck disable=SC2317 # called through check
run_busy() { # MODE RUN
    local name=$1-busy-$2
    export HUNG_DIR=$WORK/hung-$name REL_TLS_ON_HANG=$WORK/on-hang.sh
    mkdir -p "$HUNG_DIR"
    run_case "$1" "$name" --expect "$REL_SUBJECT_p256" --timeout 120 --children 50 --n 2 \
        --busy 4 --child-exit _exit
    unset REL_TLS_ON_HANG
}
for mode in provider shim; do
    for run in 1 2; do
        desc="$mode: forking 50 children while 4 threads handshake (run $run)"
        if [ -n "$REL_ASAN" ]; then
            # gcc 12's ASan runtime takes no allocator lock around fork: a child forked
            # while another thread allocates hangs in the runtime itself (seen with gdb).
            for what in "no child fails" "a hung child waits in libcrypto"; do
                skip "$desc: $what" "ASan build: the sanitizer runtime's allocator is not fork-safe"
            done
            continue
        fi
        run_busy "$mode" "$run"
        name=$mode-busy-$run
        # the parent's line: every handshake ok, verified and the device (busy threads too)
        parent=$(grep -o '^parent: .*' "$name.out" | awk '{
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            good = v["ok"] == v["handshakes"] && v["verified"] == v["ok"] &&
                   v["expected"] == v["ok"] && v["errors"] == 0 && v["ok"] > 0
            if (good) print "parent works"; else print $0 }')
        like "$desc: no child fails, the parent works, no PKCS#11 call fails" \
            "$(grep -o '^children=.*' "$name.out") $parent$(failed_calls "$name.log")" \
            "^children=50 failed=0 timed_out=[0-9]+ parent works$"
        hung=$(grep -o 'timed_out=[0-9]*' "$name.out" | cut -d= -f2)
        where=""
        for bt in "$HUNG_DIR"/*.bt; do
            [ -e "$bt" ] || continue
            w=$(where_hung "$bt" "$(basename "$bt" .bt)")
            [ "$w" = libcrypto ] || where+="$(basename "$bt"): $w"$'\n'
        done
        if [ "${hung:-0}" -gt 0 ] && ! command -v gdb >/dev/null; then
            skip "$desc: each of the $hung hung children waits in libcrypto" "gdb not installed"
        else
            is "$desc: each of the ${hung:-0} hung children ($(find "$HUNG_DIR" -name '*.bt' | wc -l) backtraces) waits on a lock of libcrypto's" \
                "$where" ""
        fi
    done
done
finish
