#!/bin/bash
# p11mtls: help on every command, and the documented exit status and message for bad
# input (2 usage, 1 failure) before and after anything touches a token.
source "$(dirname "$0")/common.sh"
fx_workdir tool-errors
fx_token || skip_all "token fixture could not be built"
fx_ca || skip_all "CA fixture could not be built"

cmds=("token init" "key generate" csr "ca init" "ca issue" "cert import" list pem-uri run doctor)
plan $((2 * ${#cmds[@]} + 29))

for c in "${cmds[@]}"; do
    # shellcheck disable=SC2086 # the command words split on purpose
    rc_is "$c --help exits 0" 0 "$TOOL" $c --help
    out_has "$c --help shows its usage" "^Usage: p11mtls ${c%% *}"
done

rc_is "no command: usage error" 2 "$TOOL"
rc_is "--help documents the exit codes" 0 "$TOOL" --help
out_has "--help lists exit status 127" "127 +run: the command could not be executed"
rc_is "unknown command" 2 "$TOOL" frobnicate
out_has "unknown command is named" "unknown command 'frobnicate'"
rc_is "unknown option" 2 "$TOOL" list --frob
out_has "unknown option is named" "'--frob'"

key=$(fx_key_uri p256)
rc_is "key generate: bad --type" 2 "$TOOL" key generate --uri "$FX_TOKEN_URI;object=x" --type ec:P-999
out_has "bad --type is named" "--type: unknown key type 'ec:P-999'"
rc_is "key generate: no object= in URI" 2 "$TOOL" key generate --uri "$FX_TOKEN_URI" --type ed25519
out_has "missing object= is named" "--uri: name the key with object=NAME"
rc_is "key generate: bad --id" 2 "$TOOL" key generate --uri "$FX_TOKEN_URI;object=x" --type ed25519 --id xyz
rc_is "not a pkcs11 URI" 2 "$TOOL" csr --key /etc/passwd --subject /CN=x
out_has "bad URI is named" "--key: '/etc/passwd' is not a pkcs11: URI"
rc_is "a PIN in the URI is refused" 2 "$TOOL" list "$FX_TOKEN_URI?pin-value=1234"
out_has "pin-value refusal says why" "pin-value is refused"
rc_is "csr: subject without leading /" 2 "$TOOL" csr --key "$key" --subject CN=x
rc_is "csr: unknown subject attribute" 2 "$TOOL" csr --key "$key" --subject /XX=y
out_has "unknown subject attribute is named" "unknown attribute type 'XX'"
rc_is "token init: no label" 2 "$TOOL" token init --so-pin-source "file:$FX_PIN_FILE"
rc_is "pin source syntax" 2 "$TOOL" key generate --uri "$FX_TOKEN_URI;object=x" --type ed25519 --pin-source 1234
rc_is "token init: wrong SO PIN on a token that holds objects needs --force" 1 "$TOOL" token init --label "$FX_TOKEN_LABEL" --so-pin-source "file:$FX_PIN_FILE" --pin-source "file:$FX_PIN_FILE"
out_has "refusal says what --force would do" "add --force"
rc_is "no such token" 1 "$TOOL" key generate --uri "pkcs11:token=nosuch;object=x" --type ed25519 --pin-source "file:$FX_PIN_FILE"
out_has "no such token is named" "no token matches token=nosuch"
rc_is "cert import: certificate of another key" 1 "$TOOL" cert import --uri "$key" --cert "$FX_DEV_CERT_p384" --pin-source "file:$FX_PIN_FILE"
out_has "mismatch refusal" "is for a different key .*: refused"
rc_is "ca issue: not a CA directory" 1 "$TOOL" ca issue "$WORK/noca" --csr /dev/null
rc_is "run: no command" 2 "$TOOL" run
finish
