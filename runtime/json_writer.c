/* Streaming JSON writer. */
#include "json_writer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

void tp_json_init(tp_json_t *j, FILE *f, bool pretty)
{
    j->f = f;
    j->depth = 0;
    j->first[0] = true;
    j->pretty = pretty;
}

static void write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void prefix(tp_json_t *j, const char *key)
{
    if (j->depth > 0) {
        if (!j->first[j->depth]) fputc(',', j->f);
        if (j->pretty) {
            fputc('\n', j->f);
            for (int i = 0; i < j->depth; i++)
                fputs("  ", j->f);
        } else if (!j->first[j->depth]) {
            fputc(' ', j->f);
        }
        j->first[j->depth] = false;
    }
    if (key) {
        write_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void open_(tp_json_t *j, const char *key, char c)
{
    prefix(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < TP_JSON_MAX_DEPTH) j->depth++;
    j->first[j->depth] = true;
}

static void close_(tp_json_t *j, char c)
{
    bool empty = j->first[j->depth];
    if (j->depth > 0) j->depth--;
    if (j->pretty && !empty) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    fputc(c, j->f);
    if (j->depth == 0 && j->pretty) fputc('\n', j->f);
}

void tp_json_object_begin(tp_json_t *j, const char *key)
{
    open_(j, key, '{');
}
void tp_json_object_end(tp_json_t *j)
{
    close_(j, '}');
}
void tp_json_array_begin(tp_json_t *j, const char *key)
{
    open_(j, key, '[');
}
void tp_json_array_end(tp_json_t *j)
{
    close_(j, ']');
}

void tp_json_str(tp_json_t *j, const char *key, const char *value)
{
    prefix(j, key);
    write_string(j->f, value);
}

void tp_json_num(tp_json_t *j, const char *key, double value)
{
    prefix(j, key);
    if (isfinite(value))
        fprintf(j->f, "%.10g", value);
    else
        fputs("null", j->f);
}

void tp_json_int(tp_json_t *j, const char *key, int64_t value)
{
    prefix(j, key);
    fprintf(j->f, "%lld", (long long)value);
}

void tp_json_bool(tp_json_t *j, const char *key, bool value)
{
    prefix(j, key);
    fputs(value ? "true" : "false", j->f);
}

tp_status_t tp_json_file_open(tp_json_file_t *jf, const char *path, bool pretty)
{
    jf->buf = NULL;
    jf->len = 0;
    jf->f = open_memstream(&jf->buf, &jf->len);
    if (!jf->f) return TP_ERR(TP_ERR_NOMEM, "open_memstream for %s: %s", path, strerror(errno));
    tp_json_init(&jf->j, jf->f, pretty);
    return TP_OK;
}

tp_status_t tp_json_file_commit(tp_json_file_t *jf, const char *path)
{
    tp_status_t st;
    if (fclose(jf->f) != 0)
        st = TP_ERR(TP_ERR_IO, "cannot build %s: %s", path, strerror(errno));
    else
        st = tp_write_file_atomic(path, jf->buf, jf->len);
    free(jf->buf);
    jf->f = NULL;
    jf->buf = NULL;
    return st;
}
