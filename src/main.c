/* main.c — the condgate command line (SPEC §1): parse the options, load the
 * configuration, and hand over. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "condgate.h"
#include "daemon.h"
#include "gate.h"
#include "log.h"

#define DEFAULT_CONFIG "/etc/condgate/condgate.ini"

/* The optional parts built in, for -V: "none", or their names separated by
 * spaces (CMakeLists.txt): prefilter (the kernel prefilter, Linux), crowdsec
 * (the Local API client, libcurl), geoip (MaxMind DB files, libmaxminddb),
 * systemd (notify protocol and socket activation, libsystemd). */
#if defined(CG_HAVE_PREFILTER)
#define FEATURE_PREFILTER " prefilter"
#else
#define FEATURE_PREFILTER ""
#endif
#if defined(CG_HAVE_CROWDSEC)
#define FEATURE_CROWDSEC " crowdsec"
#else
#define FEATURE_CROWDSEC ""
#endif
#if defined(CG_HAVE_GEOIP)
#define FEATURE_GEOIP " geoip"
#else
#define FEATURE_GEOIP ""
#endif
#if defined(CG_HAVE_SYSTEMD)
#define FEATURE_SYSTEMD " systemd"
#else
#define FEATURE_SYSTEMD ""
#endif
#define FEATURE_LIST FEATURE_PREFILTER FEATURE_CROWDSEC FEATURE_GEOIP FEATURE_SYSTEMD

static const char *features(void)
{
    return sizeof(FEATURE_LIST) > 1 ? FEATURE_LIST + 1 : "none";
}

static void usage(FILE *out)
{
    fputs("usage: condgate [-c FILE] [-t] [-x PATH] [-V] [-h]\n"
          "  -c, --config FILE  INI configuration (default " DEFAULT_CONFIG ")\n"
          "  -t, --test         load and validate the configuration, print what was\n"
          "                     loaded (listeners, rule sets and entry counts), exit\n"
          "  -x, --takeover PATH\n"
          "                     take the listening sockets over from the condgate\n"
          "                     serving PATH (its [gateway] takeover_socket), start,\n"
          "                     then let it drain: a restart that drops no caller\n"
          "  -V, --version      print the version and the optional features, exit\n"
          "  -h, --help         this help\n",
          out);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"takeover", required_argument, NULL, 'x'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    const char *takeover = NULL;
    int test = 0;
    int c;

    while ((c = getopt_long(argc, argv, "c:tx:Vh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'x':
            takeover = optarg;
            break;
        case 'V':
            printf("condgate %s\nfeatures: %s\n", cg_version(), features());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "condgate: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char err[CG_ERR_MAX];
    cg_config *cfg = NULL;
    if (cg_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (!test) {
        for (size_t i = 0; i < cfg->nwarnings; i++)
            cg__log_event(CG_LOG_WARN, "config_warning", "message", cfg->warnings[i], NULL);
        return cg__daemon_run(path, cfg, takeover); /* the daemon owns cfg from here */
    }
    int rc = cg_config_print(cfg, stdout);
    if (rc == 0)
        rc = cg__gate_print_prefilter(cfg, stdout);
    fflush(stdout);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        fprintf(stderr, "%s\n", cfg->warnings[i]);
    fflush(stderr);
    if (rc == 0)
        puts("configuration OK");
    cg_config_free(cfg);
    return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}
