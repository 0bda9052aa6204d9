/*
 * state_json.h — train_gpt2's state JSON: the writer's buffer and the reader's helpers
 * (state_json.c). Every reader takes a JSON object at its first byte and a key of it.
 */
#ifndef LLMPY_STATE_JSON_H
#define LLMPY_STATE_JSON_H

#include <stddef.h>

// A growing text buffer; oom is set (and the text kept as it was) when it cannot grow.
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

void sb_printf(sbuf *b, const char *fmt, ...);
// s as a JSON string (quotes, backslash escapes, \u00XX for control characters).
void sb_json_string(sbuf *b, const char *s);
// v[0..n) as a JSON array, each with %.17g (a double's exact value).
void sb_doubles(sbuf *b, const double *v, int n);
// The shortest text that reads back as v (Python's repr of a float, without its ".0").
void fmt_double(char *buf, size_t n, double v);

// Readers: p at a value, obj at an object's '{'.
const char *js_ws(const char *p);
// A JSON string at p, decoded into *out (malloc'd) when out is not NULL; returns its end, NULL when malformed.
const char *js_string(const char *p, char **out);
// The end of the value at p, NULL when malformed.
const char *js_skip(const char *p);
// The value of key in the object at obj, NULL when absent.
const char *js_get(const char *obj, const char *key);
// json's key as an integer / a string (into out, n bytes) / an array of at most max numbers (into
// out): 1 / 1 / the count when present and well-formed, else 0 / 0 / -1.
int json_int(const char *json, const char *key, long long *out);
int json_str(const char *json, const char *key, char *out, size_t n);
int json_doubles(const char *json, const char *key, double *out, int max);

#endif // LLMPY_STATE_JSON_H
