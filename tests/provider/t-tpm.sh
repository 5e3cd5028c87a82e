#!/bin/bash
# What only a TPM (tpm2-pkcs11 on the emulated TPM) puts at risk: a forked child must
# not use the parent's TPM session (it would break the parent's and count against the
# TPM's dictionary-attack lockout), directly and behind p11-kit's proxy.
source "$(dirname "$0")/common.sh"
[ "$P11M_TEST_TOKEN" = tpm ] || skip_all "needs P11M_TEST_TOKEN=tpm"
fx_workdir provider-tpm
fx_token && fx_ca || bail_out "fixtures could not be built"
plan 8
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
finish
