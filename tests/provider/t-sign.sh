#!/bin/bash
# Every signature scheme and key type, signed on the token and verified by the
# default provider with the public key; CSRs, certificates, CRLs, CMS and CMP messages
# signed with token keys.
source "$(dirname "$0")/common.sh"
fx_workdir provider-sign
fx_token && fx_ca || bail_out "fixtures could not be built"
prov_conf
echo "the message to sign" >msg.txt

# sign_verify DESC KEY MD [SIGOPTS...]: dgst -sign on the token, -verify in software.
sign_verify() {
    local desc=$1 key=$2 md=$3 opts=()
    shift 3
    for o in "$@"; do opts+=(-sigopt "$o"); done
    if osl dgst "-$md" "${opts[@]}" -sign "$(key_uri "$key")" -out sig.bin msg.txt 2>err.txt &&
        OPENSSL_CONF=/dev/null openssl dgst "-$md" "${opts[@]}" -verify "$(pub_pem "$key")" \
            -signature sig.bin msg.txt >/dev/null 2>>err.txt; then
        ok "$desc"
    else
        fail "$desc" "$(tail -3 err.txt)"
    fi
}

for key in $(fx_have_key rsa2048 rsa3072); do
    for md in sha1 sha224 sha256 sha384 sha512; do
        sign_verify "$key PKCS#1 v1.5 $md" $key $md
    done
    for salt in digest max 20; do
        if [ "$P11M_TEST_TOKEN" = tpm ] && [ "$salt" != digest ]; then
            # A TPM signs RSA-PSS only with salt length = digest length.
            out=$(osl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt "rsa_pss_saltlen:$salt" \
                -sign "$(key_uri "$key")" -out sig.bin msg.txt 2>&1)
            like "$key PSS sha256 salt $salt: the TPM's refusal says to use salt length = digest" \
                "$out" "refused RSA-PSS with a [0-9]+-byte salt .*salt length = digest length \(32 bytes\)"
            continue
        fi
        sign_verify "$key PSS sha256 salt $salt" $key sha256 rsa_padding_mode:pss "rsa_pss_saltlen:$salt"
    done
    sign_verify "$key PSS sha384, MGF1 sha384 set explicitly" $key sha384 rsa_padding_mode:pss rsa_pss_saltlen:digest rsa_mgf1_md:sha384
done
for key in $(fx_have_key p256 p384); do
    for md in sha256 sha384 sha512; do sign_verify "$key ECDSA $md" $key $md; done
done
if [ -z "$(fx_have_key ed25519)" ]; then
    : # the token has no Ed25519 key
elif osl pkeyutl -sign -rawin -inkey "$(key_uri ed25519)" -in msg.txt -out sig.bin 2>err.txt &&
    OPENSSL_CONF=/dev/null openssl pkeyutl -verify -rawin -pubin -inkey "$(pub_pem ed25519)" \
        -in msg.txt -sigfile sig.bin >/dev/null 2>>err.txt; then
    ok "ed25519 EdDSA"
else
    fail "ed25519 EdDSA" "$(tail -3 err.txt)"
fi

# EVP_PKEY_sign over a hash computed elsewhere (pkeyutl without -rawin).
OPENSSL_CONF=/dev/null openssl dgst -sha256 -binary msg.txt >hash.bin
for key in rsa2048 p256; do
    check "$key signs a precomputed SHA-256 hash" \
        osl pkeyutl -sign -inkey "$(key_uri "$key")" -pkeyopt digest:sha256 -in hash.bin -out hsig.bin
    check "... which verifies" env OPENSSL_CONF=/dev/null openssl pkeyutl -verify -pubin \
        -inkey "$(pub_pem "$key")" -pkeyopt digest:sha256 -in hash.bin -sigfile hsig.bin
done

for key in "${KEYS[@]}"; do
    check "openssl req: CSR signed by $key" osl req -new -key "$(key_uri "$key")" \
        -subj "/CN=device-$key/UID=dev-$key" -out "req-$key.pem"
    check "... its self-signature verifies" env OPENSSL_CONF=/dev/null openssl req -verify \
        -noout -in "req-$key.pem"
done

out=$(osl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_mgf1_md:sha256 \
    -sign "$(key_uri rsa2048)" -out sig.bin msg.txt 2>&1)
like "PSS parameters the token refuses (SoftHSM: MGF1 != hash) give a clear error" "$out" \
    "mechanism not supported by the token.*refused the mechanism parameters"
check "CMS signed with the p256 token key and its certificate" osl cms -sign -nodetach -in msg.txt \
    -signer "$(dev_cert p256)" -inkey "$(key_uri p256)" -out msg.cms -outform PEM
check "... verifies against the dev CA" env OPENSSL_CONF=/dev/null openssl cms -verify \
    -in msg.cms -inform PEM -CAfile "$FX_CA_CHAIN" -purpose any -out /dev/null
# Every structure OpenSSL signs takes the scheme's AlgorithmIdentifier from the provider
# (RSA-PSS with its parameters): CSR, self-signed certificate, CRL and CMS, per scheme,
# each verified in software. (RSA-PSS CSRs used to abort openssl with an invalid free;
# RSA-PSS CMS needs the padding and salt length readable as names.)
cat >crl.cnf <<CNF
[ca]
default_ca = d
[d]
database = $WORK/index.txt
crlnumber = $WORK/crlnumber
default_md = sha256
default_crl_days = 1
CNF
: >index.txt
echo 01 >crlnumber
for scheme in "rsa2048 pkcs1" "rsa2048 pss-digest" "rsa2048 pss-max" "rsa3072 pss-digest" \
    "p256 ecdsa" "p384 ecdsa" "ed25519 eddsa"; do
    read -r key kind <<<"$scheme"
    [ -n "$(fx_have_key "$key")" ] || continue
    opts=() md=(-sha256) camd=(-md sha256)
    case $kind in
    pss-*) opts=(-sigopt rsa_padding_mode:pss -sigopt "rsa_pss_saltlen:${kind#pss-}") ;;
    eddsa) md=() camd=() ;;
    esac
    desc="$key $kind"
    if [ "$P11M_TEST_TOKEN" = tpm ] && [ "$kind" = pss-max ]; then
        out=$(osl req -new "${md[@]}" "${opts[@]}" -key "$(key_uri "$key")" -subj "/CN=s" 2>&1)
        like "$desc: CSR refused by the TPM with a clear error" "$out" \
            "refused RSA-PSS with a [0-9]+-byte salt .*use rsa_pss_saltlen:digest"
        continue
    fi
    check "$desc: CSR" osl req -new "${md[@]}" "${opts[@]}" -key "$(key_uri "$key")" \
        -subj "/CN=s-$key/UID=s-$key" -out "s-$key-$kind.csr"
    check "... verifies in software" env OPENSSL_CONF=/dev/null openssl req -verify -noout \
        -in "s-$key-$kind.csr"
    check "$desc: self-signed certificate" osl req -x509 -new "${md[@]}" "${opts[@]}" \
        -key "$(key_uri "$key")" -subj "/CN=s-$key" -days 1 -out "s-$key-$kind.pem"
    check "... verifies in software" env OPENSSL_CONF=/dev/null openssl verify -check_ss_sig \
        -CAfile "s-$key-$kind.pem" "s-$key-$kind.pem"
    [ "$kind" = pss-digest ] && like "... carries RSASSA-PSS parameters" \
        "$(OPENSSL_CONF=/dev/null openssl x509 -noout -text -in "s-$key-$kind.pem")" \
        "Signature Algorithm: rsassaPss.*Salt Length: 0x(20|30)"
    crlopts=()
    for o in "${opts[@]}"; do [ "$o" = -sigopt ] || crlopts+=(-sigopt "$o"); done
    check "$desc: CRL" osl ca -config crl.cnf -gencrl "${camd[@]}" -keyfile "$(key_uri "$key")" \
        -cert "s-$key-$kind.pem" -out "s-$key-$kind.crl" "${crlopts[@]}"
    check "... verifies in software" env OPENSSL_CONF=/dev/null openssl crl -noout \
        -in "s-$key-$kind.crl" -CAfile "s-$key-$kind.pem"
    # OpenSSL 3.0's CMS cannot sign with Ed25519 at all (no default digest), token or not.
    [ "$kind" = eddsa ] && continue
    cmsopts=()
    [ "$kind" = pss-digest ] || [ "$kind" = pss-max ] && cmsopts=(-keyopt rsa_padding_mode:pss)
    # CMS's default PSS salt is the longest; a TPM needs salt length = digest length.
    [ "$P11M_TEST_TOKEN" = tpm ] && [ "$kind" = pss-digest ] &&
        cmsopts+=(-keyopt rsa_pss_saltlen:digest)
    check "$desc: CMS" osl cms -sign -nodetach -in msg.txt -signer "s-$key-$kind.pem" \
        -inkey "$(key_uri "$key")" "${cmsopts[@]}" -md sha256 -out "s-$key-$kind.cms" -outform PEM
    check "... verifies in software" env OPENSSL_CONF=/dev/null openssl cms -verify -in \
        "s-$key-$kind.cms" -inform PEM -CAfile "s-$key-$kind.pem" -purpose any -out /dev/null
done

# CMP (RFC 4210) messages protected with each token key: a key update request goes to
# a mock CMP server (openssl cmp -port) that runs without p11mtls and validates the
# protection against the dev CA. The request, saved with -reqout, is then sent again by a
# client without p11mtls: accepted as it is, refused with one byte of its senderNonce
# changed, which shows that the server really checks the signature. OpenSSL 3.0's CMP
# picks the protection algorithm from the digest and the key type alone (no -sigopt):
# RSA keys protect with PKCS#1 v1.5, and Ed25519 and RSA-PSS keys are refused as an
# "unsupported key type" before anything is signed. For those two the check is that a
# token key fails as a software key does (the token has no RSA-PSS-only key; a software
# one stands for the key type).
cmp_server_start() { # NAME RSP_CERT: mock server on $CMP_PORT, logs in NAME.log
    local name=$1 cert=$2 try i pid
    for ((try = 0; try < 5; try++)); do
        CMP_PORT=$(fx_free_port)
        "${FX__SERVER_ENV[@]}" OPENSSL_CONF=/dev/null openssl cmp -port "$CMP_PORT" \
            -srv_cert "$FX_SERVER_CERT" -srv_key "$FX_SERVER_KEY" -srv_trusted "$FX_CA_CHAIN" \
            -rsp_cert "$cert" -grant_implicitconf >"$name.log" 2>&1 &
        pid=$!
        for ((i = 0; i < 100; i++)); do
            grep -q '^ACCEPT' "$name.log" && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if grep -q '^ACCEPT' "$name.log"; then
            fx__track "$pid" "$name"
            return 0
        fi
        fx__kill "$pid"
    done
    return 1
}
# cmp_replay KEY REQ: sends a saved request again from a client without p11mtls.
cmp_replay() {
    OPENSSL_CONF=/dev/null openssl cmp -server "127.0.0.1:$CMP_PORT" -cmd kur -reqin "$2" \
        -srvcert "$FX_SERVER_CERT" -oldcert "$(dev_cert "$1")" -newkey "$(pub_pem "$1")" \
        -popo 0 -unprotected_requests -ref replay -certout "replay-$1.pem"
}
for key in $(fx_have_key rsa2048 rsa3072 p256 p384); do
    if ! cmp_server_start "cmp-$key" "$(dev_cert "$key")"; then
        fail "$key: CMP mock server starts" "$(tail -5 "cmp-$key.log")"
        continue
    fi
    check "$key: CMP key update request protected by the token key, accepted" \
        osl cmp -server "127.0.0.1:$CMP_PORT" -cmd kur -key "$(key_uri "$key")" \
        -cert "$(dev_cert "$key")" -extracerts "$FX_CA_INTER" -srvcert "$FX_SERVER_CERT" \
        -implicit_confirm -reqout "cmp-$key.der" -certout "cmp-$key-new.pem"
    alg=sha256WithRSAEncryption
    case $key in p*) alg=ecdsa-with-SHA256 ;; esac
    like "... its protection algorithm is $alg" "$(OPENSSL_CONF=/dev/null openssl asn1parse -inform DER \
        -in "cmp-$key.der" 2>&1 | grep -A2 'd=2 .*cont \[ 1 \]' | grep OBJECT)" ":$alg\$"
    check "... the saved request verifies again in software" cmp_replay "$key" "cmp-$key.der"
    # senderNonce: [5] { OCTET STRING (16) }, in the protected header.
    python3 -c 'import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[d.index(bytes.fromhex("a5120410")) + 4] ^= 1
open(sys.argv[2], "wb").write(d)' "cmp-$key.der" "cmp-$key-bad.der"
    check_not "... and with one byte of its senderNonce changed, is refused" \
        cmp_replay "$key" "cmp-$key-bad.der"
    like "... by the server's protection check" "$(cat "cmp-$key.log")" \
        "error validating protection"
    fx__untrack "cmp-$key"
done
OPENSSL_CONF=/dev/null openssl genpkey -algorithm ED25519 -out soft-ed25519.key 2>/dev/null
OPENSSL_CONF=/dev/null openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 \
    -out soft-rsapss.key 2>/dev/null
for soft in ed25519 rsapss; do
    OPENSSL_CONF=/dev/null openssl req -x509 -new -key "soft-$soft.key" -subj "/CN=soft-$soft" \
        -days 1 -out "soft-$soft.pem" 2>/dev/null
done
# cmp_refused KEY CERT [openssl|osl]: a CMP request that must be refused before sending.
cmp_refused() {
    local rc=0 out
    out=$("${3:-osl}" cmp -server 127.0.0.1:9 -cmd kur -key "$1" -cert "$2" \
        -srvcert "$FX_SERVER_CERT" -certout /dev/null 2>&1) || rc=$?
    echo "exit $rc"
    grep -o "unsupported key type" <<<"$out" | head -1
}
if [ -n "$(fx_have_key ed25519)" ]; then
    is "Ed25519 token key: CMP protection refused as with a software Ed25519 key" \
        "$(cmp_refused "$(key_uri ed25519)" "$(dev_cert ed25519)")" \
        "$(OPENSSL_CONF=/dev/null cmp_refused soft-ed25519.key soft-ed25519.pem openssl)"
fi
like "... (OpenSSL 3.0: unsupported key type)" \
    "$(OPENSSL_CONF=/dev/null cmp_refused soft-ed25519.key soft-ed25519.pem openssl)" \
    "^exit 1.unsupported key type$"
like "RSA-PSS: a software RSA-PSS key is refused the same way (OpenSSL 3.0)" \
    "$(OPENSSL_CONF=/dev/null cmp_refused soft-rsapss.key soft-rsapss.pem openssl)" \
    "^exit 1.unsupported key type$"
finish
