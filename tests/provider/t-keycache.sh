#!/bin/bash
# The provider parameter key-cache: by default the provider signs with a session copy of
# the token key (one C_CopyObject per process, made again in a forked child), with
# key-cache = no with the token object; a bad value stops the provider from loading.
# Which handle signed is read from the provider's level-2 debug log.
source "$(dirname "$0")/common.sh"
fx_workdir provider-keycache
fx_token && fx_ca || bail_out "fixtures could not be built"
plan 9

prov_conf debug-level=2 "debug-file=$WORK/on.log"
check "default: 2 threads x 20 signatures verify" tprov threads "$(key_uri p256)" 2 20
is "... one C_CopyObject" "$(grep -c 'C_CopyObject(' on.log)" 1
# While one thread makes the copy, the other signs with the token object meanwhile.
copy=$(grep -c "signing with 'p256'.*session copy" on.log)
is "... 40 signatures, at most 2 of them with the token object while the copy was made" \
    "$(grep -c "signing with 'p256'" on.log) $((copy >= 38))" "40 1"

prov_conf debug-level=2 "debug-file=$WORK/fork.log"
check "fork: the parent and 3 children sign and verify" tprov fork "$(key_uri p256)" 3
pids=$(grep 'C_CopyObject(' fork.log | sed 's/^p11mtls\[\([0-9]*\)\].*/\1/' | sort -u | wc -l)
is "... each of the 4 processes made its own copy, once" \
    "$(grep -c 'C_CopyObject(' fork.log) copies in $pids processes" "4 copies in 4 processes"
is "... and every signature used a copy" \
    "$(grep "signing with 'p256'" fork.log | grep -vc 'session copy')" 0

prov_conf key-cache=no debug-level=2 "debug-file=$WORK/off.log"
check "key-cache = no: signatures verify" tprov threads "$(key_uri p256)" 2 20
is "... no C_CopyObject, 40 signatures with the token object" \
    "$(grep -c 'C_CopyObject(' off.log), $(grep -c "signing with 'p256'.*token object" off.log)" \
    "0, 40"

prov_conf key-cache=maybe
like "key-cache = maybe is refused, naming the parameter" \
    "$(osl list -providers 2>&1)" "key-cache = maybe: expected yes or no"
finish
