#!/bin/bash
# Token faults seen by a long-running program: the token taken away and put back (for
# SoftHSM2, its token directory moved away and back), and absent when the program
# starts. Clean errors while it is gone, service resumes when it returns, no crash.
source "$(dirname "$0")/common.sh"
fx_workdir provider-faults
fx_token && fx_ca || bail_out "fixtures could not be built"
# SoftHSM2 notices its directory gone only when it reads a token object: a session copy
# of the key (key-cache, on by default) would go on signing, where a removed device ends
# every session. The removal cases sign with the token object; the last case checks
# that the copy survives the same removal.
prov_conf key-cache=no
plan 12

run_loop removed.log 30
first_attempt removed.log; sleep 0.3; mv token token.away; sleep 2; mv token.away token
wait "$LOOP"; rc=$(loop_rc removed.log); sed -i '/^exit /d' removed.log
is "program survives removal and return (exit status)" "$rc" 0
like "signs before the token goes away" "$(head -1 removed.log)" "^0 ok"
like "fails cleanly while it is away" "$(grep FAIL removed.log | head -1)" "token not present"
like "every failure names the absent token" "$(grep FAIL removed.log | grep -vc 'token not present')" "^0$"
like "signs again once it is back" "$(tail -1 removed.log)" "^29 ok"

mv token token.away
run_loop absent.log 25
first_attempt absent.log; sleep 1; mv token.away token
wait "$LOOP"; rc=$(loop_rc absent.log); sed -i '/^exit /d' absent.log
is "program that started without its token survives" "$rc" 0
like "... reports it clearly" "$(head -1 absent.log)" "FAIL .*(no token matches the URI|token not present)"
like "... and works once the token arrives" "$(tail -1 absent.log)" "^24 ok"

# A wrong PIN stays refused when the same token goes away and comes back: re-insertion
# must not earn it another try (a token locks after a few).
(umask 077 && echo 0000 >wrong-pin.txt)
prov_conf "pin-source=file:$WORK/wrong-pin.txt" debug-level=2 "debug-file=$WORK/wrong.log"
run_loop wrong.out 20
sleep 1; mv token token.away; sleep 1.5; mv token.away token
wait "$LOOP"
like "wrong PIN across removal and return: every attempt fails" "$(grep -c ' ok' wrong.out)" "^0$"
is "... with exactly one C_Login in the whole run" "$(grep -c 'C_Login(' wrong.log)" 1
# With the session copy (the default), the same removal and return.
prov_conf
run_loop copy.log 20
first_attempt copy.log; sleep 0.3; mv token token.away; sleep 1.5; mv token.away token
wait "$LOOP"; rc=$(loop_rc copy.log); sed -i '/^exit /d' copy.log
is "with the session copy: program survives removal and return" "$rc" 0
like "... and signs at the end" "$(tail -1 copy.log)" "^19 ok"
finish
