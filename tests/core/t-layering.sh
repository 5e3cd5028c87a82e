#!/bin/bash
# Only the PKCS#11 core (provider/p11/) talks PKCS#11: the tool (tokens/) and the shim
# (shim/) call the core's API and make no C_* call of their own, and the core lists
# slots and runs the C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal triple once.
set -u
src=${P11M_SRCDIR:?}
n=0
fails=0
ok() { # COND-RC NAME
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
# A PKCS#11 call: through P11M_CALL, or a function-list member called directly.
calls() { # FILE...
    grep -nE 'P11M_CALL[[:space:]]*\(|->[[:space:]]*C_[A-Z][A-Za-z]*[[:space:]]*\(|(^|[^A-Za-z0-9_"])C_[A-Z][A-Za-z]*[[:space:]]*\(' "$@"
}

echo "1..6"
# The pattern itself must catch what it is meant to catch, or the checks below prove
# nothing.
probe=$(mktemp)
trap 'rm -f "$probe"' EXIT
printf '%s\n' 'rv = P11M_CALL(mod, C_Login, s, CKU_USER, p, n);' \
    '    rv = mod->fl->C_Sign(s, in, inlen, sig, &len);' \
    '    rv = C_GetSlotList(CK_TRUE, NULL, &n);' \
    '    tool_err("C_InitToken: %s", name); /* see C_InitPIN */' >"$probe"
[ "$(calls "$probe" | wc -l)" -eq 3 ]
ok $? "the check finds P11M_CALL, fl->C_x( and C_x( calls, not messages naming them"

mapfile -t outside < <(find "$src/tokens" "$src/shim" -name '*.[ch]' | sort)
[ "${#outside[@]}" -gt 0 ]
ok $? "tokens/ and shim/ have sources to check (${#outside[@]})"
found=$(calls "${outside[@]}")
[ -z "$found" ]
ok $? "no PKCS#11 call in tokens/ or shim/${found:+: $(echo "$found" | head -3 | tr '\n' ' ')}"

mapfile -t core < <(find "$src/provider" -name '*.[ch]' | sort)
triple=$(calls "${core[@]}" | grep -cE 'C_FindObjects(Init|Final)?[[:space:]]*,')
[ "$triple" -eq 3 ]
ok $? "the FindObjectsInit/FindObjects/FindObjectsFinal triple is written once ($triple calls)"
files=$(calls "${core[@]}" | grep -E 'C_GetSlotList' | cut -d: -f1 | sort -u)
[ "$(echo "$files" | grep -c .)" -eq 1 ] && [ "${files##*/}" = token.c ]
ok $? "slots are listed in one place (${files##*/})"
lists=$(calls "$src/provider/p11/token.c" | grep -c 'C_GetSlotList')
[ "$lists" -eq 2 ]
ok $? "p11m_module_slots is the only slot listing (size query and fill: $lists calls)"
exit $((fails > 0))
