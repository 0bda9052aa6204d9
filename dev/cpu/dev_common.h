/*
 * dev/cpu/dev_common.h — what the CPU development programs share: their two clocks, and the
 * stand-in for the generic variant's table in the benchmarks that include one production
 * kernel file (they link ops_cpu.c for cpu_scratch, and its dispatch table names that variant:
 * built with -DLLMPY_CPU_HAVE_GENERIC, the stub below defines it).
 */
#ifndef LLMPY_DEV_CPU_COMMON_H
#define LLMPY_DEV_CPU_COMMON_H

#include <time.h>

// Seconds on the monotonic clock.
static inline double dev_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// CPU seconds of the whole process (all threads): robust to other processes on a shared
// machine, where wall time is not (run with OMP_WAIT_POLICY=passive so idle threads sleep).
static inline double dev_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef LLMPY_CPU_HAVE_GENERIC
const llm_ops cpu_isa_ops_generic = {.name = "bench-stub"};
#endif

#endif // LLMPY_DEV_CPU_COMMON_H
