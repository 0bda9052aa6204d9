/*
 * common.h — internal helpers shared by the C sources (not part of the public API).
 */
#ifndef LLMPY_COMMON_H
#define LLMPY_COMMON_H

#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// Records a printf-style message for llm_last_error() and returns s (so: return llm_fail(...)).
llm_status llm_fail(llm_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// Seconds on a monotonic clock (timeouts and timings; only differences mean anything).
double llm_now_s(void);

// Propagate a failing status from a call.
#define LLM_TRY(call)                                                                              \
    do {                                                                                           \
        llm_status s_ = (call);                                                                    \
        if (s_ != LLM_OK) return s_;                                                               \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif // LLMPY_COMMON_H
