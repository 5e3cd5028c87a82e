#!/bin/bash
# The device certificate goes only where a rule names: one client program (no
# certificate code, under the shim) makes 8 threads' worth of handshakes round robin over
# 40 destinations, every server asking for a client certificate. The rule names exactly
# one host name and one IP:port; near misses (a longer or shorter name, a suffix, the
# named port with another SNI name, the named IP on other ports) and 30 unrelated names
# must never see it.
source "$(dirname "$0")/common.sh"
fx_workdir reliability-dests
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
plan 10

ports=()
for i in 1 2 3 4 5 6; do ports+=("$(fx_free_port)"); done
named_port=${ports[0]}
REL_LOG_LEVEL=debug rel_shim_conf shim.conf p256 "named.example 127.0.0.1:$named_port"

named=(named.example "-@127.0.0.1:$named_port")
misses=(named.example.evil evilnamed.example x.named.example named.exampl named-example
    example "other.example@$named_port" "named.example.evil@$named_port")
for i in $(seq 1 30); do misses+=("host$i.example"); done
args=()
for p in "${ports[@]}"; do args+=(--port "$p"); done
for n in "${named[@]}" "${misses[@]}"; do
    [[ $n == -@* ]] || args+=(--sni "$n")
done
rel_shim "$WORK/shim.conf" rel_tls --optional --threads 8 --n 300 --tls mix --timeout 240 \
    "${args[@]}" dests >out 2>&1
rc=$?
rel_no_crash "no crash, no hang" "$rc" out
like "every handshake completed" "$(grep -o '^handshakes=.*' out)" "errors=0 server_failures=0"

# dest lines: "dest NAME handshakes=H cert=C"; NAME is the SNI name, or SNI@127.0.0.1:PORT
got_named=$(awk -v p="127.0.0.1:$named_port" '
    $1 == "dest" && ($2 == "named.example" || $2 == "-@" p) { print $2, $4 }' out | sort)
want_named=$(awk -v p="127.0.0.1:$named_port" '
    $1 == "dest" && ($2 == "named.example" || $2 == "-@" p) { sub("handshakes=", "", $3); print $2, "cert=" $3 }' out | sort)
is "the two named destinations got the certificate on every handshake" "$got_named" "$want_named"
is "... and they were both tried" "$(wc -l <<<"$got_named")" 2
leaked=$(awk -v p="127.0.0.1:$named_port" '
    $1 == "dest" && $2 != "named.example" && $2 != "-@" p && $4 != "cert=0"' out)
is "no other destination ever got it" "$leaked" ""
is "... and all $((${#misses[@]} + ${#ports[@]} - 1)) others were tried" \
    "$(awk -v p="127.0.0.1:$named_port" '$1 == "dest" && $2 != "named.example" && $2 != "-@" p && $3 != "handshakes=0"' out | wc -l)" \
    "$((${#misses[@]} + ${#ports[@]} - 1))"
presented=$(awk -v p="127.0.0.1:$named_port" '
    $1 == "dest" && ($2 == "named.example" || $2 == "-@" p) { sub("cert=", "", $4); n += $4 } END { print n }' out)
is "the shim logged one 'presented' per named handshake" \
    "$(rel_count ': presented subject' shim.log)" "$presented"
is "... and the identity was loaded once" "$(rel_count 'identity device loaded' shim.log)" 1

# A pattern longer than a host name can be is a configuration error (shim fix): it used
# to be cut to 253 characters, and then named the host of that shorter name.
a60=$(head -c 60 /dev/zero | tr '\0' a)
short="$a60.$a60.$a60.$a60.bbbbbbbbb"
: >shim.log
rel_shim_conf long.conf p256 "${short}ccccccc"
rel_shim "$WORK/long.conf" rel_tls --optional --sni "$short" --n 2 --timeout 60 threads >long.out 2>&1
like "a ${#short}-character host does not get the certificate of a rule naming a longer name" \
    "$(grep -o '^handshakes=.*' long.out)" "handshakes=2 ok=2 verified=0 .*none=2"
like "... the pattern is reported as a configuration error" "$(cat shim.log)" \
    "bad pattern .*longer than a host name can be"
finish
