/*
 * state_json.c — the JSON of train_gpt2's training-state files: written with a growing buffer and
 * read back by a few helpers that know only what train_gpt2 writes (objects, strings, numbers,
 * arrays of numbers, true/false/null). Not a general JSON parser.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "programs/state_json.h"

void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (int pass = 0; pass < 2 && !b->oom; pass++) { // the second pass after growing the buffer
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k >= 0 && b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap : 1024;
        while (k >= 0 && cap <= b->n + (size_t)k) cap *= 2;
        char *p = k < 0 ? NULL : realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
}

void sb_json_string(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) sb_printf(b, "\\u%04x", (unsigned char)*s);
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

// The shortest text that reads back as v (Python's repr of a float, without its ".0").
void fmt_double(char *buf, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

const char *js_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

// A JSON string at p ('"'), as sb_json_string writes it: decoded into *out (malloc'd) when out is
// not NULL; returns its end, NULL when malformed.
const char *js_string(const char *p, char **out) {
    char *s = out && *p == '"' ? malloc(strlen(p)) : NULL, *w = s;
    if (*p != '"' || (out && !s)) return NULL;
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && (c = *++p) == 'u') { // \", \\ or \u00XX (a control character)
            char hex[5] = {0};
            for (int i = 0; i < 4 && p[1]; i++) hex[i] = *++p;
            c = (char)strtol(hex, NULL, 16);
        }
        if (!c) break;
        if (w) *w++ = c;
    }
    if (*p != '"') { free(s); return NULL; }
    if (w) { *w = '\0'; *out = s; }
    return p + 1;
}

const char *js_skip(const char *p) {
    p = js_ws(p);
    if (*p == '"') return js_string(p, NULL);
    if (*p == '{' || *p == '[') {
        for (int depth = 0; *p; p++) {
            if (*p == '"') {
                if (!(p = js_string(p, NULL))) return NULL;
                p--;
            } else if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
        }
        return NULL;
    }
    const char *q = p;
    while (*q && !strchr(",}] \n\t\r", *q)) q++;
    return q > p ? q : NULL;
}

// The value of `key` in the JSON object at obj (its first byte, '{'), NULL when absent.
const char *js_get(const char *obj, const char *key) {
    const char *p = obj ? js_ws(obj) : NULL;
    if (!p || *p != '{') return NULL;
    for (p = js_ws(p + 1); *p == '"';) {
        char *k = NULL;
        if (!(p = js_string(p, &k))) return NULL;
        p = js_ws(p);
        const int hit = *p == ':' && !strcmp(k, key);
        free(k);
        if (*p != ':') return NULL;
        p = js_ws(p + 1);
        if (hit) return p;
        if (!(p = js_skip(p))) return NULL;
        p = js_ws(p);
        if (*p != ',') return NULL;
        p = js_ws(p + 1);
    }
    return NULL;
}

int json_int(const char *json, const char *key, long long *out) {
    const char *v = js_get(json, key);
    char *end;
    if (!v) return 0;
    *out = strtoll(v, &end, 10);
    return end != v;
}

// Reads a string field `"key": "abc"` of our own JSON into out (n bytes), or returns 0.
int json_str(const char *json, const char *key, char *out, size_t n) {
    const char *v = js_get(json, key);
    char *str = NULL;
    if (!v || !js_string(v, &str)) return 0;
    const size_t len = strlen(str);
    if (len < n) memcpy(out, str, len + 1);
    free(str);
    return len < n;
}

int json_doubles(const char *json, const char *key, double *out, int max) {
    const char *p = js_get(json, key);
    if (!p || *p != '[') return -1;
    int n = 0;
    for (p = js_ws(p + 1); *p != ']'; n++) {
        char *end;
        const double v = strtod(p, &end);
        if (end == p || n == max) return -1;
        out[n] = v;
        p = js_ws(end);
        if (*p == ',') p = js_ws(p + 1);
        else if (*p != ']') return -1;
    }
    return n;
}

void sb_doubles(sbuf *b, const double *v, int n) {
    sb_printf(b, "[");
    for (int i = 0; i < n; i++) sb_printf(b, "%s%.17g", i ? ", " : "", v[i]);
    sb_printf(b, "]");
}
