/* Loading, overriding, validating and emitting tp_config_t, all driven by the schema table in
 * config_schema.c.
 *
 * Every value, whether it comes from a libconfig setting, a --set string, a schema default or an
 * existing struct, is first turned into a cfg_value_t; one checker (check_value) and one writer
 * (store_value) then serve every path, so a range or choice is enforced identically everywhere.
 * Messages are "WHERE: what is wrong", WHERE being "FILE:LINE: section.key" for files and
 * "--set section.key=value" for overrides. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One value on its way into (or out of) tp_config_t. */
typedef struct cfg_value {
    int64_t i; /* TP_CFG_INT, TP_CFG_BOOL */
    double f;  /* TP_CFG_FLOAT */
    const char *s;
    size_t slen;                     /* TP_CFG_STRING (s need not be terminated at slen) */
    int64_t list[TP_CFG_MAX_LAYERS]; /* TP_CFG_INT_LIST: first min(n, capacity) entries */
    long n;                          /* entries given, possibly more than fit */
} cfg_value_t;

#define WHERE_MAX      2048
#define VALUE_TEXT_MAX (4 * TP_CFG_PATH + 64)

static const char *const list_example = "a list of integers, e.g. [256, 128]";

/* ---- small helpers -------------------------------------------------------------------------- */

/* Shortest %g text that reads back as exactly x (%.17g always would, but 0.9 is nicer to read
 * than 0.90000000000000002). `as_float` appends ".0" so libconfig parses an integral value as a
 * float rather than an int. */
static void fmt_double(char *buf, size_t n, double x, bool as_float)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) {
            /* 20 is "2e+01" at precision 1: give integer digits room up to 1e17 */
            int digits = fabs(x) >= 1 ? (int)floor(log10(fabs(x))) + 1 : 0;
            if (strchr(buf, 'e') && digits > prec && digits <= 17)
                snprintf(buf, n, "%.*g", digits, x);
            break;
        }
    }
    if (as_float && isfinite(x) && !strpbrk(buf, ".eE")) {
        size_t len = strlen(buf);
        if (len + 3 <= n) memcpy(buf + len, ".0", 3);
    }
}

static size_t appendf(char *buf, size_t n, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t appendf(char *buf, size_t n, size_t at, const char *fmt, ...)
{
    if (at >= n) return at;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + at, n - at, fmt, ap);
    va_end(ap);
    return w < 0 ? at : at + (size_t)w;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* Optimal-string-alignment distance (edits + adjacent swaps), for "did you mean" hints. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXLEN || lb >= MAXLEN) return INT_MAX;
    int d[MAXLEN + 1][MAXLEN + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* "; did you mean 'train.lr'?" for the closest key within distance 2 (a key of the same name in
 * another section counts as distance 1), or "". */
static void key_hint(const char *section, const char *key, char *out, size_t n)
{
    char full[160], cand[160];
    snprintf(full, sizeof full, "%s.%s", section, key);
    int best = 3;
    const tp_config_key_t *found = NULL;
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        snprintf(cand, sizeof cand, "%s.%s", k->section, k->key);
        int d = edit_distance(full, cand);
        int dk = edit_distance(key, k->key);
        if (dk != INT_MAX && dk + (strcmp(section, k->section) != 0) < d)
            d = dk + (strcmp(section, k->section) != 0);
        if (d < best && d < (int)strlen(key)) {
            best = d;
            found = k;
        }
    }
    if (found)
        snprintf(out, n, "; did you mean '%s.%s'?", found->section, found->key);
    else
        out[0] = '\0';
}

static bool section_known(const char *name)
{
    for (int i = 0; i < tp_config_schema_len; i++)
        if (!strcmp(tp_config_schema[i].section, name)) return true;
    return false;
}

static void section_hint(const char *name, char *out, size_t n)
{
    out[0] = '\0';
    for (int i = 0; i < tp_config_schema_len; i++) {
        const char *s = tp_config_schema[i].section;
        int d = edit_distance(name, s);
        if (d <= 2 && d < (int)strlen(name)) {
            snprintf(out, n, "; did you mean '%s'?", s);
            return;
        }
    }
    key_hint("", name, out, n); /* a key written outside its section */
}

static void int_range_text(const tp_config_key_t *k, char *buf, size_t n)
{
    if (k->imax == INT64_MAX)
        snprintf(buf, n, "[%" PRId64 ", inf)", k->imin);
    else
        snprintf(buf, n, "[%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
}

/* "[1, 65536]", "(0, 10]", "odd, in [1, 7]", "mlp, cnn", ... */
static void allowed_text(const tp_config_key_t *k, char *buf, size_t n)
{
    size_t at = 0;
    char lo[40], hi[40];
    switch (k->type) {
    case TP_CFG_INT_LIST:
        at = appendf(buf, n, at, "%d to %d entries, each in ", k->min_len, k->max_len);
        /* fall through */
    case TP_CFG_INT:
        if (k->flags & TP_CFG_ODD) at = appendf(buf, n, at, "odd, in ");
        if (at < n) int_range_text(k, buf + at, n - at);
        break;
    case TP_CFG_FLOAT:
        fmt_double(lo, sizeof lo, k->fmin, false);
        fmt_double(hi, sizeof hi, k->fmax, false);
        appendf(buf, n, at, "%c%s, %s%c", (k->flags & TP_CFG_LO_OPEN) || isinf(k->fmin) ? '(' : '[',
                lo, hi, (k->flags & TP_CFG_HI_OPEN) || isinf(k->fmax) ? ')' : ']');
        break;
    case TP_CFG_BOOL:
        appendf(buf, n, at, "true, false");
        break;
    case TP_CFG_STRING:
        if (!k->choices[0]) appendf(buf, n, at, "non-empty string");
        for (int c = 0; c < TP_CFG_MAX_CHOICES && k->choices[c]; c++)
            at = appendf(buf, n, at, "%s%s", c ? ", " : "", k->choices[c]);
        break;
    }
}

/* ---- the shared checker and writer ---------------------------------------------------------- */

static tp_status_t check_int(const tp_config_key_t *k, int64_t x, const char *where,
                             const char *entry)
{
    char range[64];
    if (x < k->imin || x > k->imax) {
        int_range_text(k, range, sizeof range);
        return TP_ERR(TP_ERR_CONFIG, "%s: %s%" PRId64 " is out of range %s", where, entry, x,
                      range);
    }
    if ((k->flags & TP_CFG_ODD) && x % 2 == 0)
        return TP_ERR(TP_ERR_CONFIG, "%s: %s%" PRId64 " must be odd", where, entry, x);
    return TP_OK;
}

static tp_status_t check_value(const tp_config_key_t *k, const cfg_value_t *v, const char *where)
{
    char allowed[256], num[40];
    switch (k->type) {
    case TP_CFG_INT:
        return check_int(k, v->i, where, "");
    case TP_CFG_FLOAT: {
        bool lo_ok = (k->flags & TP_CFG_LO_OPEN) ? v->f > k->fmin : v->f >= k->fmin;
        bool hi_ok = (k->flags & TP_CFG_HI_OPEN) ? v->f < k->fmax : v->f <= k->fmax;
        fmt_double(num, sizeof num, v->f, false);
        if (!isfinite(v->f))
            return TP_ERR(TP_ERR_CONFIG, "%s: %s is not a finite number", where, num);
        if (!lo_ok || !hi_ok) {
            allowed_text(k, allowed, sizeof allowed);
            return TP_ERR(TP_ERR_CONFIG, "%s: %s is out of range %s", where, num, allowed);
        }
        return TP_OK;
    }
    case TP_CFG_BOOL:
        return TP_OK;
    case TP_CFG_STRING:
        if (v->slen == 0) return TP_ERR(TP_ERR_CONFIG, "%s: must not be empty", where);
        if (v->slen >= k->size)
            return TP_ERR(TP_ERR_CONFIG, "%s: %zu characters is too long (at most %zu)", where,
                          v->slen, k->size - 1);
        if (!k->choices[0]) return TP_OK;
        for (int c = 0; c < TP_CFG_MAX_CHOICES && k->choices[c]; c++)
            if (!strcmp(v->s, k->choices[c])) return TP_OK;
        allowed_text(k, allowed, sizeof allowed);
        return TP_ERR(TP_ERR_CONFIG, "%s: '%s' is not one of %s", where, v->s, allowed);
    case TP_CFG_INT_LIST:
        if (v->n < k->min_len || v->n > k->max_len || v->n > (long)k->size)
            return TP_ERR(TP_ERR_CONFIG, "%s: %ld entries; expected %d to %d", where, v->n,
                          k->min_len, k->max_len);
        for (long e = 0; e < v->n; e++) {
            char entry[40];
            snprintf(entry, sizeof entry, "entry %ld: ", e + 1);
            TP_TRY(check_int(k, v->list[e], where, entry));
        }
        return TP_OK;
    }
    return TP_ERR(TP_ERR_INTERNAL, "%s: unknown schema type %d", where, (int)k->type);
}

static void *field(tp_config_t *cfg, size_t offset)
{
    return (char *)cfg + offset;
}

/* Writes a value that passed check_value. Unused string bytes and list entries are zeroed so two
 * configs that went through here compare equal byte for byte. */
static void store_value(tp_config_t *cfg, const tp_config_key_t *k, const cfg_value_t *v)
{
    void *p = field(cfg, k->offset);
    switch (k->type) {
    case TP_CFG_INT:
        *(int64_t *)p = v->i;
        break;
    case TP_CFG_FLOAT:
        *(double *)p = v->f;
        break;
    case TP_CFG_BOOL:
        *(bool *)p = v->i != 0;
        break;
    case TP_CFG_STRING:
        memset(p, 0, k->size);
        memcpy(p, v->s, v->slen);
        break;
    case TP_CFG_INT_LIST:
        memset(p, 0, k->size * sizeof(int64_t));
        memcpy(p, v->list, (size_t)v->n * sizeof(int64_t));
        *(int *)field(cfg, k->count_offset) = (int)v->n;
        break;
    }
}

static void load_value(const tp_config_t *cfg, const tp_config_key_t *k, cfg_value_t *v)
{
    const void *p = (const char *)cfg + k->offset;
    memset(v, 0, sizeof *v);
    switch (k->type) {
    case TP_CFG_INT:
        v->i = *(const int64_t *)p;
        break;
    case TP_CFG_FLOAT:
        v->f = *(const double *)p;
        break;
    case TP_CFG_BOOL:
        v->i = *(const bool *)p;
        break;
    case TP_CFG_STRING:
        v->s = p;
        v->slen = strnlen(p, k->size); /* == size: unterminated, check_value says too long */
        break;
    case TP_CFG_INT_LIST:
        v->n = *(const int *)((const char *)cfg + k->count_offset);
        for (long e = 0; e < v->n && e < (long)k->size && e < TP_CFG_MAX_LAYERS; e++)
            v->list[e] = ((const int64_t *)p)[e];
        break;
    }
}

/* libconfig text for a value: what the emitter writes and the reference shows as default. */
static void format_value(const tp_config_key_t *k, const cfg_value_t *v, char *buf, size_t n)
{
    size_t at = 0;
    switch (k->type) {
    case TP_CFG_INT:
        /* libconfig 1.5 reads an unsuffixed integer as 32 bits and truncates it silently */
        appendf(buf, n, 0, "%" PRId64 "%s", v->i, v->i < INT_MIN || v->i > INT_MAX ? "L" : "");
        break;
    case TP_CFG_FLOAT:
        fmt_double(buf, n, v->f, true);
        break;
    case TP_CFG_BOOL:
        appendf(buf, n, 0, "%s", v->i ? "true" : "false");
        break;
    case TP_CFG_STRING:
        at = appendf(buf, n, at, "\"");
        for (size_t c = 0; c < v->slen; c++) {
            unsigned char ch = (unsigned char)v->s[c];
            if (ch == '"' || ch == '\\')
                at = appendf(buf, n, at, "\\%c", ch);
            else if (ch < 0x20 || ch == 0x7f)
                at = appendf(buf, n, at, "\\x%02x", ch);
            else
                at = appendf(buf, n, at, "%c", ch);
        }
        appendf(buf, n, at, "\"");
        break;
    case TP_CFG_INT_LIST:
        at = appendf(buf, n, at, "[");
        for (long e = 0; e < v->n && e < TP_CFG_MAX_LAYERS; e++)
            at = appendf(buf, n, at, "%s%" PRId64 "%s", e ? ", " : "", v->list[e],
                         v->list[e] < INT_MIN || v->list[e] > INT_MAX ? "L" : "");
        appendf(buf, n, at, "]");
        break;
    }
}

/* ---- values from text (--set and schema defaults) ------------------------------------------- */

static bool parse_int(const char *s, int64_t *out, bool *overflow)
{
    *overflow = false;
    if (!(isdigit((unsigned char)s[0]) ||
          ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1]))))
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end != '\0') return false;
    if (errno == ERANGE) *overflow = true;
    *out = x;
    return !*overflow;
}

/* `text` is trimmed and may be modified (quotes and list brackets are stripped in place). */
static tp_status_t parse_text(const tp_config_key_t *k, char *text, cfg_value_t *v,
                              const char *where)
{
    memset(v, 0, sizeof *v);
    bool overflow = false;
    size_t len = strlen(text);
    switch (k->type) {
    case TP_CFG_INT:
        if (parse_int(text, &v->i, &overflow)) return TP_OK;
        if (overflow) return TP_ERR(TP_ERR_CONFIG, "%s: integer does not fit in 64 bits", where);
        return TP_ERR(TP_ERR_CONFIG, "%s: expected an integer", where);
    case TP_CFG_FLOAT: {
        char *end;
        errno = 0;
        v->f = strtod(text, &end);
        if (len == 0 || *end != '\0' || isspace((unsigned char)text[0]))
            return TP_ERR(TP_ERR_CONFIG, "%s: expected a number", where);
        if (!isfinite(v->f) || errno == ERANGE)
            return TP_ERR(TP_ERR_CONFIG, "%s: expected a finite number", where);
        return TP_OK;
    }
    case TP_CFG_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcmp(text, "1"))
            v->i = 1;
        else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcmp(text, "0"))
            v->i = 0;
        else
            return TP_ERR(TP_ERR_CONFIG, "%s: expected a boolean (true/false, yes/no, 1/0)", where);
        return TP_OK;
    case TP_CFG_STRING:
        if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
            text[len - 1] = '\0';
            text++;
        }
        v->s = text;
        v->slen = strlen(text);
        return TP_OK;
    case TP_CFG_INT_LIST:
        if (text[0] == '[') {
            if (len < 2 || text[len - 1] != ']')
                return TP_ERR(TP_ERR_CONFIG, "%s: expected %s", where, list_example);
            text[len - 1] = '\0';
            text = trim(text + 1);
        }
        if (*text == '\0') return TP_OK; /* [] : check_value reports the entry count */
        for (char *item = text, *next; item; item = next) {
            next = strchr(item, ',');
            if (next) *next++ = '\0';
            int64_t x;
            if (!parse_int(trim(item), &x, &overflow))
                return TP_ERR(TP_ERR_CONFIG, "%s: expected %s", where, list_example);
            if (v->n < TP_CFG_MAX_LAYERS) v->list[v->n] = x;
            v->n++;
        }
        return TP_OK;
    }
    return TP_ERR(TP_ERR_INTERNAL, "%s: unknown schema type %d", where, (int)k->type);
}

void tp_config_defaults(tp_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        char text[TP_CFG_PATH], where[160];
        cfg_value_t v;
        snprintf(text, sizeof text, "%s", k->def);
        snprintf(where, sizeof where, "schema default of %s.%s", k->section, k->key);
        /* A failing default is a bug in config_schema.c; the unit test checks they all pass. */
        if (parse_text(k, trim(text), &v, where) == TP_OK && check_value(k, &v, where) == TP_OK)
            store_value(cfg, k, &v);
    }
}

tp_status_t tp_config_set(tp_config_t *cfg, const char *assignment)
{
    char *buf = tp_strdup(assignment ? assignment : "");
    if (!buf) return TP_ERR_NOMEM;
    tp_status_t st = TP_OK;
    char where[WHERE_MAX], hint[160];
    snprintf(where, sizeof where, "--set %s", assignment ? assignment : "");
    char *eq = strchr(buf, '=');
    if (!eq) {
        st = TP_ERR(TP_ERR_CONFIG, "%s: expected section.key=value", where);
        goto done;
    }
    *eq = '\0';
    char *name = trim(buf), *value = trim(eq + 1);
    char *dot = strchr(name, '.');
    const char *section = dot ? name : "", *key = dot ? dot + 1 : name;
    if (dot) *dot = '\0';
    const tp_config_key_t *k = tp_config_find_key(section, key);
    if (!k) {
        key_hint(section, key, hint, sizeof hint);
        st = TP_ERR(TP_ERR_CONFIG, "%s: unknown key '%s%s%s'%s", where, section, dot ? "." : "",
                    key, hint);
        goto done;
    }
    cfg_value_t v;
    TP_TRYGOTO(parse_text(k, value, &v, where), st, done);
    TP_TRYGOTO(check_value(k, &v, where), st, done);
    store_value(cfg, k, &v);
done:
    free(buf);
    return st;
}

/* ---- values from libconfig ------------------------------------------------------------------ */

static const char *setting_type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "an unknown type";
    }
}

static bool setting_is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static tp_status_t from_setting(const tp_config_key_t *k, const config_setting_t *s, cfg_value_t *v,
                                const char *where)
{
    memset(v, 0, sizeof *v);
    int type = config_setting_type(s);
    const char *expected = "";
    switch (k->type) {
    case TP_CFG_INT:
        if (setting_is_int(s)) {
            v->i = config_setting_get_int64(s);
            return TP_OK;
        }
        expected = "an integer";
        break;
    case TP_CFG_FLOAT:
        if (setting_is_int(s) || type == CONFIG_TYPE_FLOAT) {
            v->f = setting_is_int(s) ? (double)config_setting_get_int64(s)
                                     : config_setting_get_float(s);
            return TP_OK;
        }
        expected = "a number";
        break;
    case TP_CFG_BOOL:
        if (type == CONFIG_TYPE_BOOL) {
            v->i = config_setting_get_bool(s);
            return TP_OK;
        }
        expected = "a boolean (true or false)";
        break;
    case TP_CFG_STRING:
        if (type == CONFIG_TYPE_STRING) {
            v->s = config_setting_get_string(s);
            v->slen = strlen(v->s);
            return TP_OK;
        }
        expected = "a string";
        break;
    case TP_CFG_INT_LIST:
        if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
            expected = list_example;
            break;
        }
        v->n = config_setting_length(s);
        for (long e = 0; e < v->n; e++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)e);
            if (!setting_is_int(el))
                return TP_ERR(TP_ERR_CONFIG, "%s: expected %s, got %s as entry %ld", where,
                              list_example, setting_type_name(el), e + 1);
            if (e < TP_CFG_MAX_LAYERS) v->list[e] = config_setting_get_int64(el);
        }
        return TP_OK;
    }
    return TP_ERR(TP_ERR_CONFIG, "%s: expected %s, got %s", where, expected, setting_type_name(s));
}

/* libconfig 1.5 reads an integer without the L suffix into 32 bits and wraps it silently
 * (5000000000 becomes 705032704), so re-read `name = digits` on the setting's source line.
 * Returns true, with the intended value in *want (*too_big if not even 64 bits hold it), when
 * what libconfig kept differs. Anything unexpected on the line (a value on the next line, ...)
 * skips the check rather than guess. */
static bool int_wrapped(const char *text, unsigned line, const char *name, long long got,
                        long long *want, bool *too_big)
{
    const char *p = text;
    for (unsigned l = 1; l < line && p; l++)
        if ((p = strchr(p, '\n'))) p++;
    if (!p) return false;
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    size_t nlen = strlen(name);
    for (const char *q = p; q + nlen <= eol; q++) {
        if (strncmp(q, name, nlen) != 0) continue;
        if (q > p && (isalnum((unsigned char)q[-1]) || strchr("_-*", q[-1]))) continue;
        const char *r = q + nlen;
        while (r < eol && (*r == ' ' || *r == '\t'))
            r++;
        if (r >= eol || (*r != '=' && *r != ':')) continue;
        for (r++; r < eol && (*r == ' ' || *r == '\t');)
            r++;
        bool hex = r[0] == '0' && (r[1] == 'x' || r[1] == 'X');
        char *end;
        errno = 0;
        *want = strtoll(r, &end, hex ? 16 : 10);
        if (end == r || end > eol) return false;
        *too_big = errno == ERANGE;
        return *too_big || *want != got;
    }
    return false;
}

/* Applies one section group; returns the number of errors reported. */
static int load_section(tp_config_t *cfg, const config_setting_t *group, const char *text,
                        const char *origin)
{
    const char *section = config_setting_name(group);
    int errors = 0;
    for (int j = 0; j < config_setting_length(group); j++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)j);
        const char *name = config_setting_name(s);
        unsigned line = config_setting_source_line(s);
        const tp_config_key_t *k = tp_config_find_key(section, name);
        if (!k) {
            char hint[160];
            key_hint(section, name, hint, sizeof hint);
            (void)TP_ERR(TP_ERR_CONFIG, "%s:%u: unknown key '%s.%s'%s", origin, line, section, name,
                         hint);
            errors++;
            continue;
        }
        char where[WHERE_MAX];
        snprintf(where, sizeof where, "%s:%u: %s.%s", origin, line, section, name);
        long long want;
        bool too_big;
        if (config_setting_type(s) == CONFIG_TYPE_INT &&
            int_wrapped(text, line, name, config_setting_get_int64(s), &want, &too_big)) {
            if (too_big)
                (void)TP_ERR(TP_ERR_CONFIG, "%s: integer does not fit in 64 bits", where);
            else
                (void)TP_ERR(TP_ERR_CONFIG,
                             "%s: %lld does not fit in 32 bits; write it as %lldL (libconfig)",
                             where, want, want);
            errors++;
            continue;
        }
        cfg_value_t v;
        if (from_setting(k, s, &v, where) != TP_OK || check_value(k, &v, where) != TP_OK) {
            errors++;
            continue;
        }
        store_value(cfg, k, &v);
    }
    return errors;
}

tp_status_t tp_config_load_string(tp_config_t *cfg, const char *text, const char *origin)
{
    if (!origin) origin = "<string>";
    if (!text) return TP_ERR(TP_ERR_INTERNAL, "%s: no config text", origin);
    tp_config_defaults(cfg);
    config_t lc;
    config_init(&lc);
    if (config_read_string(&lc, text) != CONFIG_TRUE) {
        tp_status_t st = TP_ERR(TP_ERR_CONFIG, "%s:%d: %s", origin, config_error_line(&lc),
                                config_error_text(&lc));
        config_destroy(&lc);
        return st;
    }
    const config_setting_t *root = config_root_setting(&lc);
    int errors = 0;
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *group = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(group);
        unsigned line = config_setting_source_line(group);
        char hint[160];
        if (!section_known(name)) {
            section_hint(name, hint, sizeof hint);
            (void)TP_ERR(TP_ERR_CONFIG, "%s:%u: unknown section '%s'%s", origin, line, name, hint);
            errors++;
        } else if (!config_setting_is_group(group)) {
            (void)TP_ERR(TP_ERR_CONFIG, "%s:%u: %s: expected a group (%s = { ... };), got %s",
                         origin, line, name, name, setting_type_name(group));
            errors++;
        } else {
            errors += load_section(cfg, group, text, origin);
        }
    }
    config_destroy(&lc);
    if (errors) return TP_ERR_CONFIG;
    return tp_config_validate(cfg, origin);
}

tp_status_t tp_config_load_file(tp_config_t *cfg, const char *path)
{
    /* Read it ourselves: libconfig's file errors say "file I/O error" without the reason. */
    FILE *f = fopen(path, "rb");
    if (!f) return TP_ERR(TP_ERR_CONFIG, "cannot open config file %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *text = tp_malloc(cap, "config file text");
    tp_status_t st = TP_OK;
    while (text) {
        len += fread(text + len, 1, cap - 1 - len, f);
        if (ferror(f)) {
            st = TP_ERR(TP_ERR_CONFIG, "cannot read config file %s: %s", path, strerror(errno));
            break;
        }
        if (feof(f)) break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            st = TP_ERR(TP_ERR_NOMEM, "out of memory reading config file %s", path);
            break;
        }
        text = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!text) return TP_ERR_NOMEM;
    text[len] = '\0';
    if (st == TP_OK) st = tp_config_load_string(cfg, text, path);
    free(text);
    return st;
}

/* ---- cross-key checks, emitting, comparing ----------------------------------------------------
 */

tp_status_t tp_config_validate(const tp_config_t *cfg, const char *origin)
{
    if (!origin) origin = "config";
    int errors = 0;
    char where[WHERE_MAX], a[40], b[40];
    /* Per-key checks again: the struct may have been filled by other means than the loaders. */
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        cfg_value_t v;
        load_value(cfg, k, &v);
        snprintf(where, sizeof where, "%s: %s.%s", origin, k->section, k->key);
        if (check_value(k, &v, where) != TP_OK) errors++;
    }
    if (cfg->min_lr > cfg->lr) {
        fmt_double(a, sizeof a, cfg->min_lr, false);
        fmt_double(b, sizeof b, cfg->lr, false);
        (void)TP_ERR(TP_ERR_CONFIG, "%s: train.min_lr (%s) must not exceed train.lr (%s)", origin,
                     a, b);
        errors++;
    }
    if (!strcmp(cfg->model_type, "cnn") && cfg->n_channels != 2) {
        (void)TP_ERR(TP_ERR_CONFIG,
                     "%s: model.channels: model.type = \"cnn\" needs exactly 2 entries, got %d",
                     origin, cfg->n_channels);
        errors++;
    }
    if (!strcmp(cfg->model_type, "gpt") && cfg->d_model % cfg->n_head != 0) {
        (void)TP_ERR(TP_ERR_CONFIG,
                     "%s: model.n_head: %lld heads do not divide model.d_model = %lld", origin,
                     (long long)cfg->n_head, (long long)cfg->d_model);
        errors++;
    }
    if (!strcmp(cfg->model_type, "gpt") != !strcmp(cfg->dataset, "tokens")) {
        (void)TP_ERR(TP_ERR_CONFIG,
                     "%s: data.dataset: model.type = \"%s\" cannot train on data.dataset = "
                     "\"%s\" (gpt needs tokens; mlp and cnn need images)",
                     origin, cfg->model_type, cfg->dataset);
        errors++;
    }
    if (cfg->epochs == 0 && cfg->steps == 0) {
        (void)TP_ERR(TP_ERR_CONFIG,
                     "%s: train: set epochs or steps (train.epochs and "
                     "train.steps are both 0)",
                     origin);
        errors++;
    }
    return errors ? TP_ERR_CONFIG : TP_OK;
}

char *tp_config_to_string(const tp_config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        (void)TP_ERR(TP_ERR_NOMEM, "open_memstream for the config text: %s", strerror(errno));
        return NULL;
    }
    char text[VALUE_TEXT_MAX];
    const char *section = NULL;
    fputs("# Tulpar resolved configuration: every key, defaults filled in.\n", f);
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        if (!section || strcmp(section, k->section)) {
            if (section) fputs("};\n", f);
            fprintf(f, "%s = {\n", k->section);
            section = k->section;
        }
        cfg_value_t v;
        load_value(cfg, k, &v);
        format_value(k, &v, text, sizeof text);
        fprintf(f, "    %s = %s;\n", k->key, text);
    }
    if (section) fputs("};\n", f);
    if (fclose(f) != 0) {
        (void)TP_ERR(TP_ERR_NOMEM, "writing the config text: %s", strerror(errno));
        free(buf);
        return NULL;
    }
    return buf;
}

static void write_cell(FILE *out, const char *text, bool code)
{
    fputs(code ? " `" : " ", out);
    for (const char *c = text; *c; c++) {
        if (*c == '|') fputc('\\', out);
        fputc(*c, out);
    }
    fputs(code ? "` |" : " |", out);
}

void tp_config_write_reference(FILE *out)
{
    static const char *const type_names[] = {
        [TP_CFG_INT] = "int",       [TP_CFG_FLOAT] = "float",          [TP_CFG_BOOL] = "bool",
        [TP_CFG_STRING] = "string", [TP_CFG_INT_LIST] = "list of int",
    };
    tp_config_t defaults;
    char text[VALUE_TEXT_MAX];
    tp_config_defaults(&defaults);
    fputs("| key | type | default | allowed | meaning |\n", out);
    fputs("|-----|------|---------|---------|---------|\n", out);
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        snprintf(text, sizeof text, "%s.%s", k->section, k->key);
        fputc('|', out);
        write_cell(out, text, true);
        write_cell(out, type_names[k->type], false);
        cfg_value_t v;
        load_value(&defaults, k, &v);
        format_value(k, &v, text, sizeof text);
        write_cell(out, text, true);
        allowed_text(k, text, sizeof text);
        write_cell(out, text, false);
        write_cell(out, k->doc, false);
        fputc('\n', out);
    }
}

const tp_config_key_t *tp_config_diff(const tp_config_t *a, const tp_config_t *b)
{
    for (int i = 0; i < tp_config_schema_len; i++) {
        const tp_config_key_t *k = &tp_config_schema[i];
        cfg_value_t va, vb;
        load_value(a, k, &va);
        load_value(b, k, &vb);
        bool same = va.i == vb.i && va.f == vb.f && va.slen == vb.slen && va.n == vb.n &&
                    (va.slen == 0 || !memcmp(va.s, vb.s, va.slen)) &&
                    !memcmp(va.list, vb.list, sizeof va.list);
        if (!same) return k;
    }
    return NULL;
}
