/*
 * ossl.h - the OpenSSL functions the shim calls, resolved at run time.
 *
 * The shim links neither libssl nor libcrypto: a DT_NEEDED entry would pull libssl into
 * every preloaded process, and a global libcrypto would shadow one bundled by the
 * program. Every OpenSSL function is therefore called through shim_fn, filled once from
 * the libssl object that is already mapped (RTLD_NOLOAD), so helpers always come from
 * the same OpenSSL copy as the program's SSL_CTX. The OpenSSL headers are used for
 * prototypes only; a direct call would leave an undefined symbol that a library loaded
 * with RTLD_LOCAL (python's _ssl) cannot satisfy, and tests/shim/symbols.sh checks that
 * none slipped in.
 */
#ifndef SHIM_OSSL_H
#define SHIM_OSSL_H

#include <stdbool.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* The version node every OpenSSL 3 symbol is exported under. */
#define SHIM_OSSL_VERSION "OPENSSL_3.0.0"

/* Without these the shim stays out of the way. */
#define SHIM_OSSL_REQUIRED(X)                                                            \
    X(SSL_CTX_new_ex)                                                                    \
    X(SSL_CTX_new)                                                                       \
    X(SSL_CTX_set_cert_cb)                                                               \
    X(SSL_set_cert_cb)                                                                   \
    X(SSL_connect)                                                                       \
    X(SSL_do_handshake)                                                                  \
    X(SSL_read)                                                                          \
    X(SSL_read_ex)                                                                       \
    X(SSL_CTX_get_ssl_method)                                                            \
    X(TLS_server_method)                                                                 \
    X(SSL_CTX_get_ex_data)                                                               \
    X(SSL_CTX_set_ex_data)                                                               \
    X(SSL_get_ex_data)                                                                   \
    X(SSL_set_ex_data)                                                                   \
    X(SSL_CTX_get_security_callback)                                                     \
    X(SSL_CTX_set_security_callback)                                                     \
    X(SSL_CTX_set_post_handshake_auth)                                                   \
    X(SSL_is_server)                                                                     \
    X(SSL_version)                                                                       \
    X(SSL_get_version)                                                                   \
    X(SSL_get_certificate)                                                               \
    X(SSL_get_privatekey)                                                                \
    X(SSL_get_SSL_CTX)                                                                   \
    X(SSL_CTX_get_client_cert_cb)                                                        \
    X(SSL_get_servername)                                                                \
    X(SSL_get0_param)                                                                    \
    X(SSL_get_fd)                                                                        \
    X(SSL_get0_peer_CA_list)                                                             \
    X(SSL_use_cert_and_key)                                                              \
    X(SSL_certs_clear)                                                                   \
    X(CRYPTO_get_ex_new_index)                                                           \
    X(CRYPTO_free)                                                                       \
    X(ERR_set_mark)                                                                      \
    X(ERR_pop_to_mark)                                                                   \
    X(ERR_peek_last_error_all)                                                           \
    X(ERR_reason_error_string)                                                           \
    X(NCONF_new_ex)                                                                      \
    X(NCONF_free)                                                                        \
    X(NCONF_load)                                                                        \
    X(NCONF_load_bio)                                                                    \
    X(NCONF_get_section)                                                                 \
    X(NCONF_get_string)                                                                  \
    X(CONF_modules_load)                                                                 \
    X(OPENSSL_load_builtin_modules)                                                      \
    X(BIO_new_mem_buf)                                                                   \
    X(BIO_free)                                                                          \
    X(OPENSSL_sk_num)                                                                    \
    X(OPENSSL_sk_value)                                                                  \
    X(OPENSSL_sk_new_null)                                                               \
    X(OPENSSL_sk_push)                                                                   \
    X(OPENSSL_sk_pop_free)                                                               \
    X(OSSL_LIB_CTX_new)                                                                  \
    X(OSSL_PROVIDER_load)                                                                \
    X(OSSL_PROVIDER_available)                                                           \
    X(OSSL_STORE_open_ex)                                                                \
    X(OSSL_STORE_expect)                                                                 \
    X(OSSL_STORE_load)                                                                   \
    X(OSSL_STORE_eof)                                                                    \
    X(OSSL_STORE_error)                                                                  \
    X(OSSL_STORE_close)                                                                  \
    X(OSSL_STORE_INFO_get_type)                                                          \
    X(OSSL_STORE_INFO_get1_PKEY)                                                         \
    X(OSSL_STORE_INFO_get1_CERT)                                                         \
    X(OSSL_STORE_INFO_free)                                                              \
    X(UI_create_method)                                                                  \
    X(UI_method_set_opener)                                                              \
    X(UI_method_set_writer)                                                              \
    X(UI_method_set_reader)                                                              \
    X(UI_method_set_closer)                                                              \
    X(UI_get_string_type)                                                                \
    X(UI_get0_user_data)                                                                 \
    X(UI_set_result)                                                                     \
    X(X509_get0_notBefore)                                                               \
    X(X509_get0_notAfter)                                                                \
    X(X509_cmp_time)                                                                     \
    X(X509_get_subject_name)                                                             \
    X(X509_get_issuer_name)                                                              \
    X(X509_NAME_oneline)                                                                 \
    X(X509_NAME_cmp)                                                                     \
    X(X509_get0_serialNumber)                                                            \
    X(X509_free)                                                                         \
    X(X509_get_ex_data)                                                                  \
    X(X509_set_ex_data)                                                                  \
    X(ASN1_INTEGER_to_BN)                                                                \
    X(BN_bn2hex)                                                                         \
    X(BN_free)                                                                           \
    X(EVP_PKEY_free)                                                                     \
    X(EVP_PKEY_is_a)                                                                     \
    X(EVP_MD_CTX_new)                                                                    \
    X(EVP_MD_CTX_free)                                                                   \
    X(EVP_DigestSignInit_ex)                                                             \
    X(EVP_DigestSign)                                                                    \
    X(X509_VERIFY_PARAM_get0_host)                                                       \
    X(X509_VERIFY_PARAM_get1_ip_asc)                                                     \
    X(i2d_X509)                                                                          \
    X(d2i_X509_NAME)                                                                     \
    X(X509_NAME_free)                                                                    \
    X(OPENSSL_sk_new_reserve)                                                            \
    X(EVP_PKEY_get_bits)                                                                 \
    X(EVP_PKEY_CTX_new_from_pkey)                                                        \
    X(EVP_PKEY_CTX_free)                                                                 \
    X(EVP_PKEY_sign_init)                                                                \
    X(EVP_PKEY_sign)                                                                     \
    X(EVP_PKEY_CTX_set_rsa_padding)                                                      \
    X(EVP_PKEY_CTX_set_rsa_pss_saltlen)                                                  \
    X(EVP_PKEY_CTX_set_signature_md)                                                     \
    X(EVP_MD_fetch)                                                                      \
    X(EVP_MD_free)

/* Server-only methods; absent from builds without DTLS or the deprecated API. */
#define SHIM_OSSL_OPTIONAL(X)                                                            \
    X(DTLS_server_method)                                                                \
    X(TLSv1_server_method)                                                               \
    X(TLSv1_1_server_method)                                                             \
    X(TLSv1_2_server_method)                                                             \
    X(DTLSv1_server_method)                                                              \
    X(DTLSv1_2_server_method)

#define SHIM_OSSL_MEMBER(name) __typeof__(name) *name;
struct shim_ossl {
    SHIM_OSSL_REQUIRED(SHIM_OSSL_MEMBER)
    SHIM_OSSL_OPTIONAL(SHIM_OSSL_MEMBER)
};
#undef SHIM_OSSL_MEMBER

extern struct shim_ossl shim_fn;

/*
 * Resolve shim_fn once (thread-safe). True when every required function was found in an
 * OpenSSL 3 libssl that is already loaded; false means "pass everything through".
 */
bool shim_ossl_ready(void);

/*
 * As shim_ossl_ready, but for a program that does not use OpenSSL itself (a GnuTLS
 * client at its first CertificateRequest): load libssl (RTLD_LOCAL) when it is not
 * mapped yet. Only called once the shim has something to decide.
 */
bool shim_ossl_load(void);

/* For a hook that could not resolve its target: the next definition of name, if any. */
void *shim_ossl_next(const char *name);

/* The last OpenSSL error as "reason: detail" (or "" if none) for log lines. */
void shim_ossl_error_text(char *buf, size_t len, bool detail);

#endif
