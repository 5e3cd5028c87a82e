/*
 * rel_obj.c - puts malformed and oversized objects on a test token, through the p11mtls
 * core (module, token lookup, login, read-write session) and the module's C_CreateObject,
 * so the reliability tests can see what the provider, the shim and the tool make of them.
 *
 *   rel-obj TOKEN-URI PIN-SOURCE KIND ID LABEL VALUE [VALUE2]
 *
 * KIND   cert    X.509 certificate object, CKA_VALUE = VALUE (as is, valid or not),
 *                CKA_SUBJECT = VALUE2 (default: the empty name)
 *        ecpub   EC public key, CKA_EC_PARAMS = VALUE, CKA_EC_POINT = VALUE2
 *        rsapub  RSA public key, CKA_MODULUS = VALUE, CKA_PUBLIC_EXPONENT = 0x010001
 *        ecpriv  EC private key (sign), CKA_EC_PARAMS = VALUE, CKA_VALUE = VALUE2
 * ID     CKA_ID in hex, or @N for N bytes of 0x5a
 * LABEL  CKA_LABEL, or @N for N bytes of 'L'
 * VALUE  a file name, or @N for N bytes of 0xa5
 *
 * Public objects are created public (CKA_PRIVATE false); the private key is sensitive.
 * Exit 0 when the module created the object; otherwise the module's CKR_ name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11m.h"

struct blob {
    unsigned char *p;
    size_t n;
};

static int blob_fill(struct blob *b, const char *arg, int fill)
{
    if (arg[0] == '@') {
        b->n = strtoul(arg + 1, NULL, 10);
        b->p = malloc(b->n + 1);
        if (b->p == NULL)
            return 0;
        memset(b->p, fill, b->n);
        return 1;
    }
    return 0;
}

static int blob_file(struct blob *b, const char *arg)
{
    FILE *f;
    long n;

    if (blob_fill(b, arg, 0xa5))
        return 1;
    f = fopen(arg, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (b->p = malloc((size_t) n + 1)) == NULL ||
        fread(b->p, 1, (size_t) n, f) != (size_t) n) {
        perror(arg);
        return 0;
    }
    b->n = (size_t) n;
    fclose(f);
    return 1;
}

static int blob_hex(struct blob *b, const char *arg)
{
    size_t len = strlen(arg);

    if (blob_fill(b, arg, 0x5a))
        return 1;
    b->p = malloc(len / 2 + 1);
    if (b->p == NULL)
        return 0;
    for (b->n = 0; 2 * b->n + 1 < len; b->n++)
        if (sscanf(arg + 2 * b->n, "%2hhx", &b->p[b->n]) != 1)
            return 0;
    return 1;
}

static void sink(void *arg, int reason, const char *file, int line, const char *func,
                 const char *msg)
{
    (void) arg, (void) reason, (void) file, (void) line, (void) func;
    fprintf(stderr, "rel-obj: %s\n", msg);
}

int main(int argc, char **argv)
{
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static CK_BYTE exponent[] = {1, 0, 1};
    static CK_BYTE empty_name[] = {0x30, 0x00};
    CK_ATTRIBUTE t[12];
    CK_ULONG n = 0;
    struct blob id = {0}, label = {0}, v1 = {0}, v2 = {0};
    P11M_LOGIN_INFO li = {0};
    static P11M_ERR_SCOPE scope; /* static: errors may be raised until exit */
    P11M_TOKEN_LIST toks = {0};
    P11M_MODULE *mod;
    P11KitUri *uri;
    CK_SESSION_HANDLE sess;
    CK_OBJECT_HANDLE h;
    const char *kind;
    CK_RV rv;

    if (argc < 7 || !blob_hex(&id, argv[4])) {
        fprintf(stderr,
                "usage: rel-obj TOKEN-URI PIN-SOURCE KIND ID LABEL VALUE [VALUE2] "
                "(see rel_obj.c)\n");
        return 2;
    }
    if (!blob_fill(&label, argv[5], 'L')) {
        label.p = (unsigned char *) argv[5];
        label.n = strlen(argv[5]);
    }
    if (!blob_file(&v1, argv[6]) || (argc > 7 && !blob_file(&v2, argv[7])))
        return 2;
    p11m_err_scope_enter(&scope, sink, NULL);
    kind = argv[3];
    li.pin_source = argv[2];
    if ((uri = p11m_uri_parse(argv[1])) == NULL ||
        (mod = p11m_uri_module(uri, NULL, NULL)) == NULL ||
        p11m_token_list_fill(mod, uri, &toks) != CKR_OK || toks.n != 1 ||
        p11m_token_login(toks.v[0], &li) != CKR_OK ||
        p11m_session_open_rw(toks.v[0], &sess) != CKR_OK) {
        fprintf(stderr, "rel-obj: cannot open a logged-in session on %s\n", argv[1]);
        return 1;
    }

    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    t[n++] = (CK_ATTRIBUTE){CKA_ID, id.p, id.n};
    t[n++] = (CK_ATTRIBUTE){CKA_LABEL, label.p, label.n};
    if (strcmp(kind, "cert") == 0) {
        cls = CKO_CERTIFICATE;
        t[n++] = (CK_ATTRIBUTE){CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)};
        t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &no, sizeof(no)};
        t[n++] = (CK_ATTRIBUTE){CKA_VALUE, v1.p, v1.n};
        /* required with the value; the empty name, or VALUE2 */
        t[n++] = (CK_ATTRIBUTE){CKA_SUBJECT, v2.p != NULL ? v2.p : empty_name,
                                v2.p != NULL ? v2.n : sizeof(empty_name)};
    } else if (strcmp(kind, "ecpub") == 0 || strcmp(kind, "rsapub") == 0) {
        cls = CKO_PUBLIC_KEY;
        kt = kind[0] == 'e' ? CKK_EC : CKK_RSA;
        t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &kt, sizeof(kt)};
        t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &no, sizeof(no)};
        t[n++] = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof(yes)};
        if (kt == CKK_EC) {
            t[n++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, v1.p, v1.n};
            t[n++] = (CK_ATTRIBUTE){CKA_EC_POINT, v2.p, v2.n};
        } else {
            t[n++] = (CK_ATTRIBUTE){CKA_MODULUS, v1.p, v1.n};
            t[n++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)};
        }
    } else if (strcmp(kind, "ecpriv") == 0) {
        cls = CKO_PRIVATE_KEY;
        kt = CKK_EC;
        t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &kt, sizeof(kt)};
        t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &yes, sizeof(yes)};
        t[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, sizeof(yes)};
        t[n++] = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
        t[n++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, v1.p, v1.n};
        t[n++] = (CK_ATTRIBUTE){CKA_VALUE, v2.p, v2.n};
    } else {
        fprintf(stderr, "rel-obj: unknown kind %s\n", kind);
        return 2;
    }
    rv = P11M_CALL(mod, C_CreateObject, sess, t, n, &h);
    p11m_session_close(toks.v[0], sess);
    if (rv != CKR_OK) {
        printf("%s\n", p11m_ckr_name(rv));
        return 1;
    }
    return 0;
}
