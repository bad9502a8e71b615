/* condgate/config.h — configuration files to plain data.
 *
 * cg_config_load reads the INI file of SPEC §2 (inih), the JSON rule files it
 * includes (cJSON) and plain list files, and returns one immutable cg_config
 * with frozen rule sets. Every error is reported as a single line
 * "FILE:LINE: message" and nothing is returned, so a failed load never
 * changes a running gate.
 */
#ifndef CONDGATE_CONFIG_H
#define CONDGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "rules.h"

#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <sys/socket.h>
#endif

/* Bounds of the inputs. */
#define CG_CONFIG_MAX_INI_BYTES (1u << 20)    /* 1 MiB INI file */
#define CG_CONFIG_MAX_JSON_BYTES (64u << 20)  /* 64 MiB JSON rule file */
#define CG_CONFIG_MAX_LIST_BYTES (512u << 20) /* 512 MiB plain list file */
#define CG_CONFIG_MAX_JSON_DEPTH 16           /* nesting of a JSON rule file */
#define CG_CONFIG_MAX_LIST_LINE 1024          /* bytes of one list-file line */
#define CG_CONFIG_MAX_LISTENERS 256
#define CG_CONFIG_MAX_RULESETS 256
#define CG_CONFIG_MAX_BACKENDS 64 /* per listener */
#define CG_CONFIG_MAX_FILES 1024  /* included rule/list files in all */
#define CG_CONFIG_MAX_WORKERS 64
#define CG_CONFIG_MAX_CONNECTIONS 1000000
#define CG_CONFIG_MAX_TOKEN 256
/* Bounds of the dynamic state (SPEC §11, §12, §14). */
#define CG_CONFIG_MAX_BANS (16u * 1024u * 1024u)    /* max_bans */
#define CG_CONFIG_MAX_SOURCES (16u * 1024u * 1024u) /* source_table_max */
#define CG_CONFIG_MAX_PREVIEW (1024u * 1024u)       /* preview_callers */
#define CG_UNIX_PATH_MAX 108                        /* sun_path, with its NUL */
#define CG_CONFIG_MAX_NEVER_BAN 1024                /* never_ban entries */
#define CG_CONFIG_MAX_RATE 1000000u                 /* N of N/window */
#define CG_CONFIG_MAX_WINDOW_MS 86400000u           /* one day */
#define CG_CONFIG_MAX_BAN_TTL_S 31536000u           /* one year (SPEC §11) */
/* Names of rule sets and listeners ([rules:NAME], [listener:NAME]): 1 to
 * CG_CONFIG_MAX_NAME letters, digits, '_', '-' or '.', so they are safe in
 * logs, metric labels and JSON without escaping. */
#define CG_CONFIG_MAX_NAME 32

/* cg_config_name_ok: whether s[0..len) is a valid rule-set or listener name
 * (1..CG_CONFIG_MAX_NAME letters, digits, '_', '-' or '.'). */
bool cg_config_name_ok(const char *s, size_t len);

/* Longest "host:port" / "[v6]:port" text plus NUL. */
#define CG_ENDPOINT_STRLEN 64

/* A socket address with its text form as written in the configuration. */
typedef struct cg_endpoint {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[CG_ENDPOINT_STRLEN];
} cg_endpoint;

typedef enum cg_log_level {
    CG_LOG_ERROR = 0,
    CG_LOG_WARN = 1,
    CG_LOG_INFO = 2,
    CG_LOG_DEBUG = 3,
} cg_log_level;

typedef enum cg_log_format {
    CG_LOG_TEXT = 0,
    CG_LOG_JSON = 1,
} cg_log_format;

const char *cg_log_level_name(cg_log_level l);
const char *cg_log_format_name(cg_log_format f);

/* Where a listener's callers are judged first (SPEC §10). */
typedef enum cg_prefilter_mode {
    CG_PREFILTER_AUTO = 0,   /* refuse where the process may load it, else off */
    CG_PREFILTER_REFUSE = 1, /* in the kernel, before the handshake: reset */
    CG_PREFILTER_DROP = 2,   /* in the kernel, before the handshake: SYN discarded */
    CG_PREFILTER_OFF = 3,    /* after accept only */
} cg_prefilter_mode;

/* cg_prefilter_mode_name: "auto", "refuse", "drop" or "off" (static
 * storage). */
const char *cg_prefilter_mode_name(cg_prefilter_mode m);

/* What a listener does with a refused caller (SPEC §12). */
typedef enum cg_listener_mode {
    CG_MODE_ENFORCE = 0, /* refuse it */
    CG_MODE_SHADOW = 1,  /* judge, count and log it, then admit it */
} cg_listener_mode;

/* cg_listener_mode_name: "enforce" or "shadow" (static storage). */
const char *cg_listener_mode_name(cg_listener_mode m);

/* N events per sliding window: `N/s`, `N/Ns`, `N/m` (rate_per_source,
 * ban_after). count 0: off. */
typedef struct cg_rate {
    uint32_t count;     /* 1..CG_CONFIG_MAX_RATE, or 0: off */
    uint32_t window_ms; /* 1000..CG_CONFIG_MAX_WINDOW_MS */
} cg_rate;

/* cg_rate_parse: parse "N/s", "N/Ns" or "N/m" (N >= 1, window 1 s to one
 * day) into *out. Returns 0 or CG_EINVAL / CG_ERANGE with the reason (no
 * file or line) in err. */
int cg_rate_parse(const char *s, cg_rate *out, char *err, size_t errlen);

/* A listener's per-source limits and auto-bans (SPEC §12). */
typedef struct cg_source_limits {
    uint32_t max_per_source; /* open connections per source; 0: off */
    cg_rate rate;            /* rate_per_source; count 0: off */
    uint8_t prefix4;         /* source_prefix for IPv4 (0..32, default 32) */
    uint8_t prefix6;         /* and IPv6 (0..128, default 64) */
    cg_rate ban_after;       /* count 0: off; needs rate */
    uint32_t ban_ttl_s;      /* default 600 */
    uint32_t ban_ttl_max_s;  /* default 86400, >= ban_ttl_s */
} cg_source_limits;

/* cg_source_limits_on: whether a listener tracks its sources at all. */
static inline bool cg_source_limits_on(const cg_source_limits *s)
{
    return s->max_per_source != 0 || s->rate.count != 0;
}

/* accept_proxy's bits (the values of CG_PROXY_ACCEPT_V1/_V2 in
 * src/proxy_proto.h): off 0, v1 1, v2 2, any 3. send_proxy is 0 (off), 1
 * (v1) or 2 (v2). */
#define CG_ACCEPT_PROXY_V1 1u
#define CG_ACCEPT_PROXY_V2 2u
#define CG_ACCEPT_PROXY_ANY (CG_ACCEPT_PROXY_V1 | CG_ACCEPT_PROXY_V2)
/* Most trusted_proxies entries of one listener. */
#define CG_CONFIG_MAX_TRUSTED_PROXIES 1024

/* cg_accept_proxy_name: "off", "v1", "v2" or "any" for accept_proxy's bits
 * (static storage; "unknown" for other values). Any thread. */
const char *cg_accept_proxy_name(unsigned bits);

/* cg_send_proxy_name: "off", "v1" or "v2" for send_proxy (static storage;
 * "unknown" for other values). Any thread. */
const char *cg_send_proxy_name(unsigned version);

typedef struct cg_listener_conf {
    char *name;    /* from [listener:NAME] */
    uint32_t line; /* line of the section header */
    cg_endpoint bind;
    bool echo;             /* backend = echo: built-in echo service */
    cg_endpoint *backends; /* round robin; NULL/0 when echo */
    size_t nbackends;
    size_t ruleset;              /* index into cg_config.rulesets */
    uint32_t connect_timeout_ms; /* default 3000 */
    uint32_t idle_timeout_ms;    /* default 300000 */
    cg_prefilter_mode prefilter; /* default auto */
    cg_listener_mode mode;       /* default enforce */
    cg_source_limits sources;    /* default: off */
    /* PROXY protocol (SPEC §13). */
    unsigned accept_proxy;        /* accept_proxy: bits 1 (v1) and 2 (v2); 0: off */
    cg_ruleset *trusted_proxies;  /* frozen; its allow entries are the senders
                                     trusted to send a header (default deny);
                                     NULL when accept_proxy is off */
    uint32_t trusted_proxies_line; /* its line, 0 when not given */
    uint32_t proxy_timeout_ms;    /* default 3000 */
    unsigned send_proxy;          /* send_proxy: 0 off, 1 (v1) or 2 (v2) */
} cg_listener_conf;

typedef struct cg_admin_conf {
    bool enabled;       /* listen = off disables */
    cg_endpoint listen; /* default 127.0.0.1:9090 */
    cg_ruleset *allow;  /* frozen, never NULL (also when listen = off); named
                           "admin"; default loopback only (127.0.0.0/8, ::1) */
    char *token;        /* NULL when not set */
} cg_admin_conf;

/* Bounds of [crowdsec] (SPEC §15). */
#define CG_CROWDSEC_URL_MAX 512 /* bytes of url */
#define CG_CROWDSEC_KEY_MAX 256 /* bytes of the key (the key file's first line) */

/* [crowdsec] (SPEC §15): the CrowdSec Local API whose ban decisions become
 * bans of origin crowdsec. */
typedef struct cg_crowdsec_conf {
    bool enabled;         /* the section is there */
    uint32_t line;        /* its header's line */
    char *url;            /* http:// or https://, without a trailing '/' */
    char *key_file;       /* resolved path */
    char *key;            /* the key file's first line, trimmed */
    uint32_t interval_ms; /* default 10000; 200..3600000 */
    uint32_t timeout_ms;  /* default 5000; 100..60000 */
} cg_crowdsec_conf;

typedef struct cg_config {
    char *path;                /* the INI file as given */
    unsigned workers;          /* 1..64; default: number of CPUs */
    unsigned max_connections;  /* default 10000 */
    uint32_t drain_timeout_ms; /* default 5000 */
    cg_log_level log_level;    /* default info */
    cg_log_format log_format;  /* default text */
    cg_admin_conf admin;
    /* Dynamic state ([gateway], SPEC §11, §12, §14). */
    cg_ruleset *never_ban;     /* frozen, never NULL; named "never_ban"; its
                                  allow entries are the addresses no ban may
                                  cover (default 127.0.0.1, ::1), default deny */
    char *state_file;          /* resolved path, NULL when not set */
    uint32_t state_file_line;  /* its line in the INI file, 0 when not set */
    char *takeover_socket;     /* resolved unix socket path, NULL when off:
                                  where a new condgate started with -x takes
                                  the listening sockets over (read at start) */
    uint32_t max_bans;         /* default 1000000 */
    uint32_t source_table_max; /* default 1000000 */
    uint32_t preview_callers;  /* default 65536; 0: no preview ring */
    cg_crowdsec_conf crowdsec; /* enabled false without [crowdsec] */
    cg_ruleset **rulesets; /* frozen; [0] is "default" when [rules] exists */
    size_t nrulesets;
    char **geoip; /* parallel to rulesets: what each set's GeoIP keys added,
                     one line for -t ("DB: deny CN (12 networks), ..."), or
                     NULL where a set has none */
    cg_listener_conf *listeners;
    size_t nlisteners;
    char **warnings; /* "FILE:LINE: warning: message" lines for -t and logs */
    size_t nwarnings;
} cg_config;

/* cg_config_load: load and validate the INI file at `path` and everything it
 * names. Relative paths inside it are taken relative to the INI file's
 * directory. On success returns 0 and *out (free with cg_config_free). On
 * failure returns a negative CG_E* code, writes one line "FILE:LINE:
 * message" (no newline) into err, and *out is untouched.
 *
 * FILE is the path as given, or for an included file the path as resolved
 * (the INI file's directory joined with the name written). LINE is the line
 * in that file (for JSON, the line where the offending value starts); it is
 * 0 only when the INI file itself cannot be read or is too large. A file
 * named by an `include`/`*_file` key that cannot be read is reported at that
 * key's line in the INI file.
 *
 * Any thread; calls share no state of their own (cJSON keeps its last parse
 * error in a global, which the loader never reads). */
int cg_config_load(const char *path, cg_config **out, char *err, size_t errlen);

/* cg_config_free: frees a configuration and its rule sets. Accepts NULL. */
void cg_config_free(cg_config *cfg);

/* cg_config_find_ruleset: index of the set named `name`, or -1. */
long cg_config_find_ruleset(const cg_config *cfg, const char *name);

/* Longest text cg_listener_backends_text writes, with the NUL: every
 * backend's text and a comma between them. */
#define CG_BACKENDS_STRLEN (CG_CONFIG_MAX_BACKENDS * CG_ENDPOINT_STRLEN)

/* cg_listener_backends_text: a listener's backends as written in logs and
 * `-t`: "echo", or "host:port,host:port,...". buf holds CG_BACKENDS_STRLEN
 * bytes. Returns buf. Any thread. */
const char *cg_listener_backends_text(const cg_listener_conf *lc, char *buf, size_t len);

/* cg_config_print: the readable summary of `condgate -t`: the path, gateway
 * and admin settings, each rule set (default, IPv4/IPv6 entry counts,
 * duplicates merged, conflicts) and each listener, one line each, written to
 * `out`. Warnings are not printed (see cfg->warnings). Returns 0 or CG_EIO.
 * Any thread; cfg must stay alive for the call. */
int cg_config_print(const cg_config *cfg, FILE *out);

#endif /* CONDGATE_CONFIG_H */
