/*
 * choose.c - the order of several matching objects (see choose.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "choose.h"

struct rank {
    int has;        /* a certificate was found (keys) or parsed (certificates) */
    int valid;      /* valid now */
    int64_t after;  /* seconds from now to notAfter */
    int64_t before; /* seconds from now to notBefore: of two equal notAfters, the later
                       issued */
    size_t pos;     /* the token's order, for ties */
    P11M_OBJ *obj;
};

static void rank_cert(const X509 *x, struct rank *r)
{
    int days = 0, secs = 0;
    int valid = X509_cmp_time(X509_get0_notBefore(x), NULL) < 0 &&
                X509_cmp_time(X509_get0_notAfter(x), NULL) > 0;
    int64_t after, before;

    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        return;
    after = (int64_t) days * 86400 + secs;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notBefore(x)))
        return;
    before = (int64_t) days * 86400 + secs;
    if (!r->has || valid > r->valid ||
        (valid == r->valid &&
         (after > r->after || (after == r->after && before > r->before)))) {
        r->has = 1;
        r->valid = valid;
        r->after = after;
        r->before = before;
    }
}

static int rank_cmp(const void *pa, const void *pb)
{
    const struct rank *a = pa, *b = pb;

    if (a->has != b->has)
        return b->has - a->has;
    if (a->valid != b->valid)
        return b->valid - a->valid;
    if (a->after != b->after)
        return a->after > b->after ? -1 : 1;
    if (a->before != b->before)
        return a->before > b->before ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

int p11m_choose_cert_cmp(const X509 *a, const X509 *b)
{
    struct rank ra = {0, 0, 0, 0, 0, NULL}, rb = {0, 0, 0, 0, 1, NULL};

    rank_cert(a, &ra);
    rank_cert(b, &rb);
    return rank_cmp(&ra, &rb);
}

static void rank_obj_cert(const P11M_OBJ *obj, struct rank *r)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);
    X509 *x = der != NULL ? d2i_X509(NULL, &der, (long) len) : NULL;

    if (x != NULL)
        rank_cert(x, r);
    X509_free(x);
}

static int rank_take(P11M_OBJ *obj, void *arg)
{
    rank_obj_cert(obj, arg);
    p11m_obj_free(obj);
    return 1;
}

/* A key's rank: the best certificate with its CKA_ID and label on its token. */
static void rank_key(P11M_MODULE *mod, P11M_OBJ *key, struct rank *r)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    size_t idlen;
    const unsigned char *id = p11m_obj_id(key, &idlen);
    const char *label = p11m_obj_label(key);
    CK_ATTRIBUTE a[3] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_ID, (void *) id, idlen},
                         {CKA_LABEL, (void *) label, strlen(label)}};
    P11M_FIND_ARGS args = {uri, CKO_CERTIFICATE, NULL, NULL, 0};

    if (uri == NULL || idlen == 0) {
        p11_kit_uri_free(uri);
        return;
    }
    memcpy(p11_kit_uri_get_token_info(uri), p11m_token_info(p11m_obj_token(key)),
           sizeof(CK_TOKEN_INFO));
    if (p11_kit_uri_set_attribute(uri, &a[0]) == P11_KIT_URI_OK &&
        p11_kit_uri_set_attribute(uri, &a[1]) == P11_KIT_URI_OK &&
        (*label == '\0' || p11_kit_uri_set_attribute(uri, &a[2]) == P11_KIT_URI_OK))
        p11m_obj_find(mod, &args, rank_take, r, NULL); /* nothing found: no rank */
    p11_kit_uri_free(uri);
}

void p11m_choose_order(P11M_MODULE *mod, P11M_OBJ **objs, size_t n)
{
    struct rank *r;

    if (n < 2 || (r = calloc(n, sizeof(*r))) == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        r[i].pos = i;
        r[i].obj = objs[i];
        if (p11m_obj_class(objs[i]) == CKO_CERTIFICATE)
            rank_obj_cert(objs[i], &r[i]);
        else
            rank_key(mod, objs[i], &r[i]);
    }
    qsort(r, n, sizeof(*r), rank_cmp);
    for (size_t i = 0; i < n; i++)
        objs[i] = r[i].obj;
    free(r);
    ERR_clear_error();
}
