/* log.c — text/json event lines on stderr, the reject line and its limiter. */
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "condgate/accept.h"

#if defined(_WIN32)
#include <io.h>
#define write_stderr(buf, n) _write(2, (buf), (unsigned)(n))
#else
#include <unistd.h>
#define write_stderr(buf, n) write(2, (buf), (n))
#endif

static _Atomic int g_level = CG_LOG_INFO;
static _Atomic int g_format = CG_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void cg__log_setup(cg_log_level level, cg_log_format format)
{
    atomic_store(&g_level, (int)level);
    atomic_store(&g_format, (int)format);
}

bool cg__log_enabled(cg_log_level level)
{
    return (int)level <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

/* A bounded writer over the line buffer: appends silently stop at the end. */
typedef struct line {
    char buf[CG_LOG_LINE_MAX];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 1 - l->len; /* keep one byte for '\n' */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Text values are bare when they are plain tokens, else double-quoted with
 * '"' and '\\' escaped and control bytes shown as \xHH. */
static void put_text_value(line *l, const char *v)
{
    bool bare = *v != '\0';
    for (const char *p = v; *p && bare; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            bare = false;
    if (bare) {
        puts_(l, v);
        return;
    }
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[5];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < ' ' || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            put(l, esc, 4);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_json_string(line *l, const char *v)
{
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[7];
        switch (*p) {
        case '"':
            put(l, "\\\"", 2);
            break;
        case '\\':
            put(l, "\\\\", 2);
            break;
        case '\n':
            put(l, "\\n", 2);
            break;
        case '\r':
            put(l, "\\r", 2);
            break;
        case '\t':
            put(l, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                put(l, esc, 6);
            } else {
                put(l, (const char *)p, 1);
            }
        }
    }
    put(l, "\"", 1);
}

static void format_ts(char *buf, size_t n)
{
    /* libuv's clock: the Windows C runtime has no timespec_get. */
    uv_timeval64_t tv;
    struct tm tm;
    uv_gettimeofday(&tv);
    time_t sec = (time_t)tv.tv_sec;
#if defined(_WIN32)
    gmtime_s(&tm, &sec);
#else
    gmtime_r(&sec, &tm);
#endif
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
}

void cg__log_fields(cg_log_level level, const char *event, const char *const *kv, size_t npairs)
{
    if (!cg__log_enabled(level))
        return;
    bool json = atomic_load_explicit(&g_format, memory_order_relaxed) == CG_LOG_JSON;
    char ts[96];
    format_ts(ts, sizeof(ts));
    const char *lvl = level_names[level <= CG_LOG_DEBUG ? level : CG_LOG_DEBUG];

    line l;
    l.len = 0;
    if (json) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lvl);
        puts_(&l, "\",\"event\":");
        put_json_string(&l, event);
    } else {
        puts_(&l, "ts=");
        puts_(&l, ts);
        puts_(&l, " level=");
        puts_(&l, lvl);
        puts_(&l, " event=");
        put_text_value(&l, event);
    }

    for (size_t i = 0; i < npairs; i++) {
        const char *key = kv[2 * i];
        const char *value = kv[2 * i + 1] != NULL ? kv[2 * i + 1] : "";
        if (json) {
            put(&l, ",", 1);
            put_json_string(&l, key);
            put(&l, ":", 1);
            put_json_string(&l, value);
        } else {
            put(&l, " ", 1);
            puts_(&l, key);
            put(&l, "=", 1);
            put_text_value(&l, value);
        }
    }
    if (json) {
        /* Keep the object closed even when the line was truncated. */
        if (l.len > sizeof(l.buf) - 3)
            l.len = sizeof(l.buf) - 3;
        put(&l, "}", 1);
    }
    l.buf[l.len++] = '\n';
    (void)!write_stderr(l.buf, l.len);
}

void cg__log_event(cg_log_level level, const char *event, ...)
{
    if (!cg__log_enabled(level))
        return;
    const char *kv[2 * CG_LOG_MAX_FIELDS];
    size_t n = 0;
    va_list ap;
    va_start(ap, event);
    for (const char *key; n < CG_LOG_MAX_FIELDS && (key = va_arg(ap, const char *)) != NULL; n++) {
        kv[2 * n] = key;
        kv[2 * n + 1] = va_arg(ap, const char *);
    }
    va_end(ap);
    cg__log_fields(level, event, kv, n);
}

void cg__log_format_source(const cg_rule_info *info, char *buf, size_t len)
{
    if (info->line > 0)
        snprintf(buf, len, "%s:%" PRIu32, info->file, info->line);
    else
        snprintf(buf, len, "%s", info->file);
}

void cg__log_reject(const char *event, const char *listener, const struct sockaddr *peer,
                    const struct sockaddr *via, const char *reason, const cg_ruleset *set,
                    cg_rule_id rule, const cg__ban *ban, bool shadow)
{
    char addr[64], vaddr[64], cidr[CG_CIDR_STRLEN] = "", source[CG_LOG_SOURCE_STRLEN] = "";
    const char *kv[2 * 7];
    size_t n = 0;
    cg_rule_info info;

    if (!cg__log_enabled(CG_LOG_INFO))
        return;
    cg_sockaddr_format(peer, addr, sizeof(addr));
    if (set != NULL && rule != CG_RULE_NONE && cg_ruleset_rule(set, rule, &info) == 0) {
        cg_cidr_format(&info.cidr, cidr, sizeof(cidr));
        cg__log_format_source(&info, source, sizeof(source));
    } else if (ban != NULL) {
        cg_cidr_format(&ban->cidr, cidr, sizeof(cidr));
        snprintf(source, sizeof(source), "ban:%s", cg__ban_origin_name(ban->origin));
    }
    if (listener != NULL) {
        kv[n++] = "listener";
        kv[n++] = listener;
    }
    kv[n++] = via != NULL ? "client" : "peer";
    kv[n++] = addr;
    if (via != NULL) {
        cg_sockaddr_format(via, vaddr, sizeof(vaddr));
        kv[n++] = "via";
        kv[n++] = vaddr;
    }
    kv[n++] = "reason";
    kv[n++] = reason;
    kv[n++] = "rule";
    kv[n++] = cidr;
    kv[n++] = "source";
    kv[n++] = source;
    if (shadow) {
        kv[n++] = "shadow";
        kv[n++] = "1";
    }
    cg__log_fields(CG_LOG_INFO, event, kv, n / 2);
}

void cg__log_limiter_init(cg__log_limiter *l, uint32_t rate)
{
    memset(l, 0, sizeof(*l));
    l->rate = rate ? rate : CG_LOG_REJECT_RATE;
}

void cg__log_limiter_flush(cg__log_limiter *l, uint64_t now_ms)
{
    if (l->suppressed > 0) {
        char n[24], msg[64];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)l->suppressed);
        snprintf(msg, sizeof(msg), "suppressed %s reject lines", n);
        cg__log_event(CG_LOG_WARN, "reject_suppressed", "suppressed", n, "message", msg, NULL);
        l->suppressed = 0;
    }
    l->window_start_ms = now_ms;
    l->in_window = 0;
}

bool cg__log_limiter_allow(cg__log_limiter *l, uint64_t now_ms)
{
    if (now_ms - l->window_start_ms >= 1000)
        cg__log_limiter_flush(l, now_ms);
    if (l->in_window < l->rate) {
        l->in_window++;
        return true;
    }
    l->suppressed++;
    return false;
}
