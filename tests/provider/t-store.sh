#!/bin/bash
# OSSL_STORE: listing without a PIN, filters, and a clear error for each bad input.
source "$(dirname "$0")/common.sh"
fx_workdir provider-store
fx_token && fx_ca || bail_out "fixtures could not be built"
prov_conf debug-level=2 "debug-file=$WORK/debug.log"
plan 17

out=$(osl storeutl -noout "$FX_TOKEN_URI" 2>&1)
like "storeutl lists 5 certificates and 5 public keys" "$out" "Total found: 10"
is "listing used no login" "$(grep -c 'C_Login(' debug.log)" 0
out=$(osl storeutl -noout -certs "$FX_TOKEN_URI" 2>&1)
like "-certs finds the 5 certificates" "$out" "Total found: 5"
out=$(osl storeutl -noout -certs -subject "/CN=device-p384/UID=dev-p384" "$FX_TOKEN_URI" 2>&1)
like "certificate search by subject finds one" "$out" "Total found: 1"
out=$(osl storeutl -noout "pkcs11:token=$FX_TOKEN_LABEL;id=%03;type=cert" 2>&1)
like "id= and type= filter to one object" "$out" "Total found: 1"
out=$(osl storeutl -keys -text "$(key_uri p256)" 2>&1)
like "a private key prints with its own URI" "$out" "URI: pkcs11:.*token=p11mtls-test.*type=private"
like "... and its public half" "$out" "NIST CURVE: P-256"
out=$(osl storeutl -noout "pkcs11:token=no-such-token" 2>&1)
like "absent token: clear error" "$out" "no token matches the URI"
out=$(osl storeutl -noout "pkcs11:token=$FX_TOKEN_LABEL;object=nope;type=private" 2>&1)
like "unknown object: clear error" "$out" "(no private key matches the URI|no object matches)"
out=$(osl storeutl -noout "pkcs11:token=$FX_TOKEN_LABEL;bogus=1" 2>&1)
like "unknown URI attribute: clear error" "$out" "bad pkcs11 URI.*unknown attribute"
out=$(osl storeutl -noout "pkcs11:token=%zz" 2>&1)
like "malformed URI: clear error" "$out" "bad pkcs11 URI"

prov_conf pkcs11-module=/nonexistent/module.so
out=$(osl storeutl -noout "$FX_TOKEN_URI" 2>&1)
like "module not loadable: clear error" "$out" "PKCS#11 module not loadable.*/nonexistent/module.so"
out=$(osl storeutl -noout "pkcs11:token=$FX_TOKEN_LABEL?module-path=$FX_SOFTHSM_MODULE" 2>&1)
like "module-path in the URI overrides the configured module" "$out" "Total found: 10"

prov_conf debug-level=verbose
out=$(osl list -providers 2>&1)
like "unusable provider parameter: clear error at load" "$out" "p11mtls: provider not loaded: bad configuration: debug-level = verbose: expected a number"
prov_conf "pin_source=file:$FX_PIN_FILE"
out=$(osl list -providers 2>&1)
like "misspelt provider parameter: clear error naming it" "$out" \
    "provider not loaded: bad configuration: .*openssl.cnf, section \[p11mtls_sect\]: unknown parameter 'pin_source'"
prov_conf pin-source=nonsense:x
out=$(osl list -providers 2>&1)
like "bad pin-source syntax: clear error at load, value not shown" "$out" "pin-source: expected file:PATH or env:NAME \\(value not shown\\)"
chmod 644 "$FX_PIN_FILE"
prov_conf
out=$(osl dgst -sha256 -sign "$(key_uri p256)" /dev/null 2>&1)
like "PIN file readable by others is refused" "$out" "accessible by group or others"
finish
