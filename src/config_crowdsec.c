/* config_crowdsec.c — the [crowdsec] section (SPEC §15): the Local API's
 * url, the bouncer key's file (read at load, so a reload re-reads it), the
 * poll interval and one request's timeout. Each value is checked on its own
 * line; the required keys at the end of the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_crowdsec.h"

#define INTERVAL_MIN 200u
#define INTERVAL_MAX 3600000u
#define TIMEOUT_MIN 100u
#define TIMEOUT_MAX 60000u
/* The key file: one short line (and whatever else a user put after it). */
#define KEY_FILE_MAX 4096u

/* cg__crowdsec_open: see config_crowdsec.h. */
int cg__crowdsec_open(const cg__keyctx *kc, cg_config *cfg, uint32_t line)
{
#ifndef CG_HAVE_CROWDSEC
    (void)cfg;
    return cg__fail(kc->d, CG_ENOTSUP, kc->path, line,
                    "[crowdsec] needs a condgate built with libcurl (this one is not: see -V)");
#else
    (void)kc;
    cfg->crowdsec.enabled = true;
    cfg->crowdsec.line = line;
    cfg->crowdsec.interval_ms = 10000;
    cfg->crowdsec.timeout_ms = 5000;
    return 0;
#endif
}

static int url_key(const cg__keyctx *kc, cg_crowdsec_conf *cs, const char *value, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    size_t len = strlen(value);
    size_t scheme = strncmp(value, "http://", 7) == 0    ? 7
                    : strncmp(value, "https://", 8) == 0 ? 8
                                                         : 0;
    if (scheme == 0)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'url' in %s: %s must start with http:// or https://", kc->section,
                        cg__quote(q, sizeof q, value, len, CG__QUOTE_EXCERPT));
    if (len > CG_CROWDSEC_URL_MAX)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line, "'url' in %s: longer than %d bytes",
                        kc->section, CG_CROWDSEC_URL_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)value[i] <= 0x20 || (unsigned char)value[i] >= 0x7f || value[i] == '?' ||
            value[i] == '#')
            return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                            "'url' in %s: %s may not hold spaces, control characters, non-ASCII "
                            "bytes, '?' or '#'",
                            kc->section, cg__quote(q, sizeof q, value, len, CG__QUOTE_EXCERPT));
    while (len > scheme && value[len - 1] == '/')
        len--;
    if (len == scheme || value[scheme] == '/')
        return cg__fail(kc->d, CG_EINVAL, kc->path, line, "'url' in %s: %s names no host",
                        kc->section,
                        cg__quote(q, sizeof q, value, strlen(value), CG__QUOTE_EXCERPT));
    free(cs->url);
    if ((cs->url = malloc(len + 1)) == NULL)
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    memcpy(cs->url, value, len);
    cs->url[len] = '\0';
    return 0;
}

/* The key: the file's first line, trimmed; printable ASCII only (it goes
 * into a header). */
static int key_text(const cg__keyctx *kc, const char *path, const char *data, size_t n,
                    uint32_t line, char **out)
{
    size_t e = 0;
    while (e < n && data[e] != '\n' && data[e] != '\r')
        e++;
    size_t b = 0;
    while (b < e && (data[b] == ' ' || data[b] == '\t'))
        b++;
    while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\t'))
        e--;
    if (e == b)
        return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                        "'api_key_file' in %s: %s is empty; put the key from 'cscli bouncers "
                        "add NAME' on its first line",
                        kc->section, path);
    if (e - b > CG_CROWDSEC_KEY_MAX)
        return cg__fail(kc->d, CG_ERANGE, kc->path, line,
                        "'api_key_file' in %s: the key in %s is longer than %d bytes", kc->section,
                        path, CG_CROWDSEC_KEY_MAX);
    for (size_t i = b; i < e; i++)
        if (data[i] < 0x21 || data[i] > 0x7e)
            return cg__fail(kc->d, CG_EINVAL, kc->path, line,
                            "'api_key_file' in %s: the key in %s holds a byte that is not "
                            "printable ASCII",
                            kc->section, path);
    if ((*out = malloc(e - b + 1)) == NULL)
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    memcpy(*out, data + b, e - b);
    (*out)[e - b] = '\0';
    return 0;
}

static int key_file_key(const cg__keyctx *kc, cg_crowdsec_conf *cs, const char *value,
                        uint32_t line, char *warning, size_t wlen)
{
    char *path = cg__key_resolve(kc, value);
    if (path == NULL)
        return cg__fail(kc->d, CG_ENOMEM, kc->path, line, "out of memory");
    char *data = NULL, *key = NULL;
    size_t n = 0;
    int sys = 0;
    int rc = cg__read_file(path, KEY_FILE_MAX, &data, &n, &sys);
    if (rc == CG_ERANGE)
        rc = cg__fail(kc->d, rc, kc->path, line, "'api_key_file' in %s: %s is larger than %u bytes",
                      kc->section, path, KEY_FILE_MAX);
    else if (rc != 0)
        rc = cg__fail(kc->d, rc, kc->path, line, "'api_key_file' in %s: cannot read %s: %s",
                      kc->section, path, sys ? cg__errno_text(sys) : cg_strerror(rc));
    else
        rc = key_text(kc, path, data, n, line, &key);
    free(data);
    if (rc != 0) {
        free(path);
        return rc;
    }
#ifndef _WIN32
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        snprintf(warning, wlen,
                 "'api_key_file' in %s: %s may be read by other users (mode %03o); "
                 "chmod 600 it",
                 kc->section, path, (unsigned)(st.st_mode & 0777));
#else
    (void)warning, (void)wlen; /* Windows: no such mode bits */
#endif
    free(cs->key_file);
    free(cs->key);
    cs->key_file = path;
    cs->key = key;
    return 0;
}

/* cg__crowdsec_key: see config_crowdsec.h. */
int cg__crowdsec_key(const cg__keyctx *kc, cg_config *cfg, cg__crowdsec_lines *lines,
                     const char *key, const char *value, uint32_t line, char *warning, size_t wlen)
{
    cg_crowdsec_conf *cs = &cfg->crowdsec;
    uint64_t v = 0;
    int rc;
    warning[0] = '\0';
    if (strcmp(key, "url") == 0) {
        lines->url = line;
        return url_key(kc, cs, value, line);
    }
    if (strcmp(key, "api_key_file") == 0) {
        lines->key_file = line;
        return key_file_key(kc, cs, value, line, warning, wlen);
    }
    if (strcmp(key, "interval_ms") == 0) {
        rc = cg__key_number(kc, key, value, line, INTERVAL_MIN, INTERVAL_MAX, &v);
        cs->interval_ms = (uint32_t)v;
        return rc;
    }
    rc = cg__key_number(kc, key, value, line, TIMEOUT_MIN, TIMEOUT_MAX, &v);
    cs->timeout_ms = (uint32_t)v;
    return rc;
}

/* cg__crowdsec_finish: see config_crowdsec.h. */
int cg__crowdsec_finish(const cg__keyctx *kc, const cg_config *cfg, const cg__crowdsec_lines *lines)
{
    if (!cfg->crowdsec.enabled)
        return 0;
    if (lines->url == 0)
        return cg__fail(kc->d, CG_EINVAL, kc->path, cfg->crowdsec.line,
                        "[crowdsec] has no 'url'; add e.g. 'url = http://127.0.0.1:8080'");
    if (lines->key_file == 0)
        return cg__fail(kc->d, CG_EINVAL, kc->path, cfg->crowdsec.line,
                        "[crowdsec] has no 'api_key_file'; add e.g. 'api_key_file = "
                        "crowdsec.key' (the key from 'cscli bouncers add NAME')");
    return 0;
}

/* cg__crowdsec_conf_free: see config_crowdsec.h. */
void cg__crowdsec_conf_free(cg_crowdsec_conf *cs)
{
    free(cs->url);
    free(cs->key_file);
    free(cs->key);
    cs->url = cs->key_file = cs->key = NULL;
}
