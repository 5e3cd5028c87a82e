/* tpemuri URI FILE: writes the PEM-URI file for URI, with the provider's own writer. */
#include <stdio.h>

#include <openssl/bio.h>

#include "pemuri.h"

int main(int argc, char **argv)
{
    BIO *out;
    int ok;

    if (argc != 3 || (out = BIO_new_file(argv[2], "w")) == NULL)
        return 2;
    ok = p11m_pemuri_write(out, argv[1]);
    BIO_free(out);
    return !ok;
}
