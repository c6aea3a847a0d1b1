/* A small streaming JSON writer (objects, arrays, numbers, strings with escaping) for
 * metrics.jsonl, summary.json and benchmark reports. Non-finite numbers are written as null,
 * since JSON has no NaN. */
#ifndef TP_JSON_WRITER_H
#define TP_JSON_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tp_error.h"

#define TP_JSON_MAX_DEPTH 16

typedef struct tp_json {
    FILE *f;
    int depth;
    bool first[TP_JSON_MAX_DEPTH];
    bool pretty;
} tp_json_t;

void tp_json_init(tp_json_t *j, FILE *f, bool pretty);
void tp_json_object_begin(tp_json_t *j, const char *key); /* key NULL at top level / in arrays */
void tp_json_object_end(tp_json_t *j);
void tp_json_array_begin(tp_json_t *j, const char *key);
void tp_json_array_end(tp_json_t *j);
void tp_json_str(tp_json_t *j, const char *key, const char *value);
void tp_json_num(tp_json_t *j, const char *key, double value);
void tp_json_int(tp_json_t *j, const char *key, int64_t value);
void tp_json_bool(tp_json_t *j, const char *key, bool value);

/* A JSON document for a file, built in memory and written in one piece (tp_write_file_atomic):
 * readers never see half a file. tp_json_file_open fills jf->j to write into; commit ends it,
 * writes the file and frees the buffer, also on failure. */
typedef struct tp_json_file {
    tp_json_t j;
    FILE *f;
    char *buf;
    size_t len;
} tp_json_file_t;
tp_status_t tp_json_file_open(tp_json_file_t *jf, const char *path, bool pretty);
tp_status_t tp_json_file_commit(tp_json_file_t *jf, const char *path);

#endif
