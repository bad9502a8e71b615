/* config_json.c — JSON rule files (SPEC §3) into a rule set, through cJSON.
 *
 * cJSON keeps no line numbers, so a small scanner first walks the text: it
 * bounds the nesting depth before cJSON recurses, refuses NUL bytes and
 * "\u0000" (cJSON would silently cut the string there), and records the line
 * on which every JSON value starts, in document order. cJSON keeps values in
 * document order too, so a pre-order walk of its tree meets the values in
 * the order the scanner recorded them, and each node's line is the next one
 * in the list. Because the depth is checked before cJSON parses, a file
 * nested too deep is reported as such even when a syntax error comes first.
 */
#include "config_json.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "condgate/config.h"

typedef struct line_map {
    uint32_t *v;
    size_t n;
    size_t cap;
} line_map;

static int map_push(line_map *m, uint32_t line)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        uint32_t *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return CG_ENOMEM;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = line;
    return 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static uint32_t line_at(const char *text, size_t off)
{
    uint32_t line = 1;
    for (const char *p = text; (p = memchr(p, '\n', (size_t)(text + off - p))) != NULL; p++)
        line++;
    return line;
}

/* scan: record the line of every value of text[0..len) in m and check what
 * must be checked before cJSON runs. Malformed JSON is left to cJSON: the
 * map is only used once cJSON accepted the text. */
static int scan(const char *path, const char *text, size_t len, line_map *m, cg__diag *d)
{
    bool in_object[CG_CONFIG_MAX_JSON_DEPTH];
    size_t depth = 0;
    bool expect_key = false;
    uint32_t line = 1;
    size_t i = 0;

    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* cJSON skips a UTF-8 byte order mark too */
    for (; i < len; i++) {
        char c = text[i];
        switch (c) {
        case '\n':
            line++;
            break;
        case ' ':
        case '\t':
        case '\r':
        case ':':
            break;
        case '\0':
            return cg__fail(d, CG_EINVAL, path, line, "NUL byte in the file; is this a text file?");
        case ',':
            expect_key = depth > 0 && in_object[depth - 1];
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            expect_key = false;
            break;
        case '{':
        case '[':
            if (map_push(m, line))
                return cg__fail(d, CG_ENOMEM, path, line, "out of memory");
            if (depth == CG_CONFIG_MAX_JSON_DEPTH)
                return cg__fail(d, CG_ERANGE, path, line, "JSON nested deeper than %d levels",
                                CG_CONFIG_MAX_JSON_DEPTH);
            in_object[depth++] = c == '{';
            expect_key = c == '{';
            break;
        case '"': {
            bool key = expect_key && depth > 0 && in_object[depth - 1];
            if (!key && map_push(m, line))
                return cg__fail(d, CG_ENOMEM, path, line, "out of memory");
            for (i++; i < len && text[i] != '"'; i++) {
                if (text[i] == '\n')
                    line++;          /* not valid JSON; cJSON will say so */
                if (text[i] == '\0') /* cJSON keeps it, and C strings stop there */
                    return cg__fail(d, CG_EINVAL, path, line,
                                    "NUL byte in the file; is this a text file?");
                if (text[i] == '\\' && i + 1 < len) {
                    i++;
                    if (text[i] == 'u' && len - i > 4 && memcmp(text + i + 1, "0000", 4) == 0)
                        return cg__fail(d, CG_EINVAL, path, line,
                                        "\\u0000 is not allowed in strings");
                }
            }
            expect_key = false;
            break;
        }
        default:
            /* A number or a literal: one value up to the next delimiter. */
            if (map_push(m, line))
                return cg__fail(d, CG_ENOMEM, path, line, "out of memory");
            while (i + 1 < len && !is_ws(text[i + 1]) && !strchr(",]}:[{\"", text[i + 1]))
                i++;
            expect_key = false;
            break;
        }
    }
    return 0;
}

typedef struct json_walk {
    const char *path;
    const line_map *map;
    size_t next; /* index in map of the next node in pre-order */
    cg_ruleset *rs;
    cg__diag *d;
} json_walk;

/* take: the line of the next node in pre-order. */
static uint32_t take(json_walk *w)
{
    return w->next < w->map->n ? w->map->v[w->next++] : 0;
}

static const char *type_name(const cJSON *item)
{
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsObject(item))
        return "an object";
    return "an unknown value";
}

static int add_cidr(json_walk *w, const char *text, cg_action action, uint32_t line,
                    const char *label)
{
    char why[CG__REASON_MAX] = "";
    cg_source src = {w->path, line};
    int rc = cg_ruleset_add_text(w->rs, text, strlen(text), action, &src, label, why, sizeof why);
    if (rc == CG_EINVAL)
        return cg__fail(w->d, rc, w->path, line, "%s: %s", cg_action_name(action), why);
    if (rc == CG_ERANGE)
        return cg__fail_set_full(w->d, w->path, line, cg_ruleset_name(w->rs));
    if (rc)
        return cg__fail(w->d, rc, w->path, line, "%s", cg_strerror(rc));
    return 0;
}

/* list: "allow": [...] or "deny": [...] (the array's line already taken). */
static int list(json_walk *w, const cJSON *arr, const char *key, cg_action action, uint32_t line)
{
    if (!cJSON_IsArray(arr))
        return cg__fail(w->d, CG_EINVAL, w->path, line,
                        "\"%s\" must be an array of address strings, not %s", key, type_name(arr));
    for (const cJSON *it = arr->child; it; it = it->next) {
        uint32_t l = take(w);
        if (!cJSON_IsString(it))
            return cg__fail(w->d, CG_EINVAL, w->path, l,
                            "\"%s\" entries must be address strings, not %s", key, type_name(it));
        int rc = add_cidr(w, it->valuestring, action, l, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *const rule_keys[] = {"action", "cidr", "label", NULL};

/* rule: one object of "rules" (its line already taken). */
static int rule(json_walk *w, const cJSON *obj, uint32_t line)
{
    char q[CG__QUOTE_MAX];
    const char *val[3] = {NULL, NULL, NULL};
    uint32_t lines[3] = {0, 0, 0};

    if (!cJSON_IsObject(obj))
        return cg__fail(w->d, CG_EINVAL, w->path, line,
                        "\"rules\" entries must be objects like {\"action\": \"deny\", "
                        "\"cidr\": \"192.0.2.0/24\"}, not %s",
                        type_name(obj));
    for (const cJSON *m = obj->child; m; m = m->next) {
        uint32_t l = take(w);
        int k = 0;
        while (rule_keys[k] && strcmp(rule_keys[k], m->string) != 0)
            k++;
        if (!rule_keys[k]) {
            const char *hint = cg__suggest(m->string, rule_keys);
            if (hint)
                return cg__fail(
                    w->d, CG_EINVAL, w->path, l, "unknown key %s in a rule; did you mean \"%s\"?",
                    cg__quote(q, sizeof q, m->string, strlen(m->string), CG__QUOTE_EXCERPT), hint);
            return cg__fail(
                w->d, CG_EINVAL, w->path, l,
                "unknown key %s in a rule; expected \"action\", \"cidr\" or "
                "\"label\"",
                cg__quote(q, sizeof q, m->string, strlen(m->string), CG__QUOTE_EXCERPT));
        }
        if (val[k])
            return cg__fail(w->d, CG_EINVAL, w->path, l,
                            "duplicate key \"%s\" in a rule (first on line %u)", rule_keys[k],
                            (unsigned)lines[k]);
        if (!cJSON_IsString(m))
            return cg__fail(w->d, CG_EINVAL, w->path, l, "\"%s\" must be a string, not %s",
                            rule_keys[k], type_name(m));
        val[k] = m->valuestring;
        lines[k] = l;
    }

    cg_action action;
    if (!val[0])
        return cg__fail(w->d, CG_EINVAL, w->path, line,
                        "rule has no \"action\"; add \"action\": \"allow\" or \"deny\"");
    if (strcmp(val[0], "allow") == 0)
        action = CG_ALLOW;
    else if (strcmp(val[0], "deny") == 0)
        action = CG_DENY;
    else
        return cg__fail(w->d, CG_EINVAL, w->path, lines[0],
                        "\"action\" must be \"allow\" or \"deny\", not %s",
                        cg__quote(q, sizeof q, val[0], strlen(val[0]), CG__QUOTE_EXCERPT));
    if (!val[1])
        return cg__fail(w->d, CG_EINVAL, w->path, line,
                        "rule has no \"cidr\"; add \"cidr\": \"ADDRESS[/LEN]\"");
    if (val[2]) {
        size_t n = strlen(val[2]);
        if (n > CG_LABEL_MAX)
            return cg__fail(w->d, CG_ERANGE, w->path, lines[2],
                            "\"label\" is %zu bytes long; at most %d are allowed", n, CG_LABEL_MAX);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)val[2][i] < 0x20 || val[2][i] == 0x7f)
                return cg__fail(w->d, CG_EINVAL, w->path, lines[2],
                                "\"label\" must not contain control characters");
        /* Labels go into /rules and /rules/explain answers as JSON text. */
        for (size_t i = 0, seq; i < n; i += seq)
            if ((seq = cg__utf8_seq((const unsigned char *)val[2] + i, n - i)) == 0)
                return cg__fail(w->d, CG_EINVAL, w->path, lines[2],
                                "\"label\" is not valid UTF-8 (byte %zu)", i + 1);
    }
    return add_cidr(w, val[1], action, lines[1], val[2]);
}

static const char *const top_keys[] = {"allow", "deny", "rules", NULL};

static int document(json_walk *w, const cJSON *root)
{
    char q[CG__QUOTE_MAX];
    uint32_t seen[3] = {0, 0, 0};
    uint32_t line = take(w);

    if (!cJSON_IsObject(root))
        return cg__fail(w->d, CG_EINVAL, w->path, line,
                        "the top level must be an object such as {\"allow\": [...], "
                        "\"deny\": [...], \"rules\": [...]}, not %s",
                        type_name(root));
    for (const cJSON *m = root->child; m; m = m->next) {
        uint32_t l = take(w);
        int k = 0;
        while (top_keys[k] && strcmp(top_keys[k], m->string) != 0)
            k++;
        if (!top_keys[k]) {
            const char *hint = cg__suggest(m->string, top_keys);
            if (hint)
                return cg__fail(
                    w->d, CG_EINVAL, w->path, l, "unknown key %s; did you mean \"%s\"?",
                    cg__quote(q, sizeof q, m->string, strlen(m->string), CG__QUOTE_EXCERPT), hint);
            return cg__fail(
                w->d, CG_EINVAL, w->path, l,
                "unknown key %s; expected \"allow\", \"deny\" or \"rules\"",
                cg__quote(q, sizeof q, m->string, strlen(m->string), CG__QUOTE_EXCERPT));
        }
        if (seen[k])
            return cg__fail(w->d, CG_EINVAL, w->path, l, "duplicate key \"%s\" (first on line %u)",
                            top_keys[k], (unsigned)seen[k]);
        seen[k] = l;
        int rc;
        if (k == 2) {
            if (!cJSON_IsArray(m))
                return cg__fail(w->d, CG_EINVAL, w->path, l,
                                "\"rules\" must be an array of objects, not %s", type_name(m));
            for (const cJSON *r = m->child; r; r = r->next) {
                rc = rule(w, r, take(w));
                if (rc)
                    return rc;
            }
        } else {
            rc = list(w, m, top_keys[k], k == 0 ? CG_ALLOW : CG_DENY, l);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static size_t count_nodes(const cJSON *item)
{
    size_t n = 1;
    for (const cJSON *c = item->child; c; c = c->next)
        n += count_nodes(c);
    return n;
}

/* cg__load_json: see config_json.h. One thread per call (cJSON records
 * its last error in a global, which only cJSON_GetErrorPtr reads). */
int cg__load_json(const char *path, const char *text, size_t len, cg_ruleset *rs, cg__diag *d)
{
    char q[CG__QUOTE_MAX];
    line_map map = {NULL, 0, 0};
    cJSON *root = NULL;
    const char *end = NULL;
    int rc = scan(path, text, len, &map, d);
    if (rc)
        goto free_map;

    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
        const char *p = text + off;
        while (p < text + len && is_ws(*p))
            p++;
        if (p == text + len)
            rc = cg__fail(d, CG_EINVAL, path, line_at(text, off),
                          "JSON syntax error: unexpected end of file");
        else
            rc = cg__fail(
                d, CG_EINVAL, path, line_at(text, off), "JSON syntax error at %s",
                cg__quote(q, sizeof q, text + off, strcspn(text + off, "\r\n"), CG__QUOTE_EXCERPT));
        goto free_map;
    }
    for (; end && end < text + len && is_ws(*end); end++)
        ;
    if (end && end < text + len) {
        rc = cg__fail(d, CG_EINVAL, path, line_at(text, (size_t)(end - text)),
                      "JSON syntax error: text after the end of the top-level value: %s",
                      cg__quote(q, sizeof q, end, strcspn(end, "\r\n"), CG__QUOTE_EXCERPT));
        goto free_root;
    }
    if (count_nodes(root) != map.n) {
        /* The scanner and cJSON disagree about this (valid) text. */
        rc = cg__fail(d, CG_EINVAL, path, 1, "JSON file not understood; line numbers unknown");
        goto free_root;
    }

    json_walk w = {path, &map, 0, rs, d};
    rc = document(&w, root);

free_root:
    cJSON_Delete(root);
free_map:
    free(map.v);
    return rc;
}
