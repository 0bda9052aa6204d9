/*
 * device.c — the one place that turns a device string into a device: "auto", "cpu", "cuda",
 * "cuda:N" (llmpy.h). The Python package (llmpy.device), the model bindings and the train_gpt2
 * binary all call these, so the spelling rules, the choice made by "auto" and the GPU a rank
 * takes under an MPI launch are written once.
 *
 * Resolution rules (llm_device_resolve):
 *   auto      -> cuda:<local rank> when a GPU is usable, else cpu
 *   cuda      -> cuda:<local rank>  (one GPU per process; local rank 0 without a launcher)
 *   cuda:N    -> cuda:N             (N must be < the number of GPUs)
 *   cpu       -> cpu
 */
#include <stdio.h>
#include <string.h>

#include "core/common.h"

#define MAX_DEVICE_INDEX 1024

llm_status llm_device_parse(const char *spec, llm_device *out) {
    if (!out) return llm_fail(LLM_EINVAL, "device: output is NULL");
    if (!spec) return llm_fail(LLM_EINVAL, "device is NULL (expected auto, cpu, cuda or cuda:N)");
    if (strcmp(spec, "auto") == 0) { *out = (llm_device){LLM_DEVICE_AUTO, -1}; return LLM_OK; }
    if (strcmp(spec, "cpu") == 0) { *out = (llm_device){LLM_DEVICE_CPU, -1}; return LLM_OK; }
    if (strcmp(spec, "cuda") == 0) { *out = (llm_device){LLM_DEVICE_CUDA, -1}; return LLM_OK; }
    if (strncmp(spec, "cuda:", 5) == 0) {
        const char *p = spec + 5;
        int index = 0, digits = 0;
        for (; *p >= '0' && *p <= '9' && digits < 5; p++, digits++) index = index * 10 + (*p - '0');
        if (digits > 0 && *p == '\0' && index < MAX_DEVICE_INDEX && !(digits > 1 && spec[5] == '0')) {
            *out = (llm_device){LLM_DEVICE_CUDA, index};
            return LLM_OK;
        }
        return llm_fail(LLM_EINVAL, "bad device '%s': the GPU index after 'cuda:' must be a number in [0, %d)",
                        spec, MAX_DEVICE_INDEX);
    }
    return llm_fail(LLM_EINVAL, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)", spec);
}

llm_status llm_device_resolve(const llm_device *in, int cuda_count, int local_rank, const char *why_no_cuda,
                              llm_device *out) {
    if (!in || !out) return llm_fail(LLM_EINVAL, "device: NULL argument");
    const int rank = local_rank > 0 ? local_rank : 0;
    switch (in->kind) {
    case LLM_DEVICE_CPU:
        *out = (llm_device){LLM_DEVICE_CPU, -1};
        return LLM_OK;
    case LLM_DEVICE_AUTO:
        if (cuda_count <= 0) {
            *out = (llm_device){LLM_DEVICE_CPU, -1};
            return LLM_OK;
        }
        // a GPU is usable: the same rule as "cuda" (ranks beyond the machine's GPUs are refused
        // rather than put two to a GPU or some on the CPU)
        break;
    case LLM_DEVICE_CUDA:
        break;
    default:
        return llm_fail(LLM_EINVAL, "device: unknown kind %d", (int)in->kind);
    }
    char name[32];
    llm_device_format(in, name, sizeof name);
    if (cuda_count <= 0)
        return llm_fail(LLM_EUNSUPPORTED, "device '%s': CUDA is not available%s%s%s", name,
                        why_no_cuda && *why_no_cuda ? " (" : "", why_no_cuda && *why_no_cuda ? why_no_cuda : "",
                        why_no_cuda && *why_no_cuda ? ")" : "");
    const int index = in->index >= 0 ? in->index : rank;
    if (index >= cuda_count) {
        if (in->index >= 0)
            return llm_fail(LLM_EINVAL, "device '%s': this machine has %d GPU%s (cuda:0 .. cuda:%d)", name,
                            cuda_count, cuda_count == 1 ? "" : "s", cuda_count - 1);
        return llm_fail(LLM_EINVAL,
                        "device '%s': this process is local rank %d, which takes cuda:%d, but this machine has "
                        "%d GPU%s; start at most %d rank%s per machine (mpirun -np / --map-by), or name the "
                        "GPU with cuda:N", name, rank, rank, cuda_count, cuda_count == 1 ? "" : "s", cuda_count,
                        cuda_count == 1 ? "" : "s");
    }
    *out = (llm_device){LLM_DEVICE_CUDA, index};
    return LLM_OK;
}

const char *llm_device_format(const llm_device *d, char *buf, size_t n) {
    if (!buf || n == 0) return buf;
    if (!d) snprintf(buf, n, "(null)");
    else if (d->kind == LLM_DEVICE_AUTO) snprintf(buf, n, "auto");
    else if (d->kind == LLM_DEVICE_CPU) snprintf(buf, n, "cpu");
    else if (d->index < 0) snprintf(buf, n, "cuda");
    else snprintf(buf, n, "cuda:%d", d->index);
    return buf;
}
