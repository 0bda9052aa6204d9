/*
 * error.c — status codes and the thread-local "last error" message behind llm_last_error().
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/common.h"

#if defined(_MSC_VER)
#define LLM_THREAD_LOCAL __declspec(thread)
#else
#define LLM_THREAD_LOCAL _Thread_local
#endif

static LLM_THREAD_LOCAL char last_error[1024];

const char *llm_last_error(void) { return last_error; }

const char *llm_status_name(llm_status s) {
    switch (s) {
    case LLM_OK: return "LLM_OK";
    case LLM_EINVAL: return "LLM_EINVAL";
    case LLM_EIO: return "LLM_EIO";
    case LLM_EFORMAT: return "LLM_EFORMAT";
    case LLM_ENOMEM: return "LLM_ENOMEM";
    case LLM_ESTATE: return "LLM_ESTATE";
    case LLM_EUNSUPPORTED: return "LLM_EUNSUPPORTED";
    case LLM_EBACKEND: return "LLM_EBACKEND";
    case LLM_ENOENT: return "LLM_ENOENT";
    case LLM_EBUSY: return "LLM_EBUSY";
    }
    return "LLM_UNKNOWN";
}

double llm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Formats into a local buffer first, so that a message may quote the previous one
// (llm_fail(..., "%s: ...: %s", path, llm_last_error())) without reading what it overwrites.
llm_status llm_fail(llm_status s, const char *fmt, ...) {
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return s;
}
