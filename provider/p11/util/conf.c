/*
 * conf.c - where the preload library's configuration is: one answer for the library
 * and for `p11mtls doctor`.
 */
#include <stdlib.h>

#include "p11m_config.h"
#include "p11m_util.h"

#define CONF_DEFAULT P11M_SYSCONFDIR "/p11mtls/p11mtls.conf"

const char *p11m_conf_default(void)
{
    return CONF_DEFAULT;
}

const char *p11m_conf_path(int *named)
{
    const char *env = secure_getenv(P11M_CONF_ENV);

    *named = env != NULL && *env != '\0';
    return *named ? env : CONF_DEFAULT;
}
