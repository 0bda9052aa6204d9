/*
 * comm.c — the registry of collective transports by device (comm.h), and whether this build has
 * the NCCL transport.
 *
 * A transport lives where its device's backend lives: the CUDA backend (llmpy._cuda, or the CUDA
 * build of train_gpt2) registers "cuda" -> NCCL when it initialises (cuda/nccl.cu), the same way
 * it registers its op tables with the core. The core (csrc/dist/dist.c) looks the transport up by
 * the model's device and so never depends on CUDA or NCCL itself.
 *
 * The registry keeps the factory pointer: a factory is a static table of its transport and must
 * outlive the process's use of it. Not thread-safe (registration happens at backend init, from
 * one thread, like llm_register_backend).
 */
#include <string.h>

#include "dist/comm.h"
#include "core/common.h"

// ----------------------------------------------------------------------------
// registry

#define MAX_COMMS 8
#define DEVICE_NAME_BYTES 16

typedef struct comm_entry {
    char device[DEVICE_NAME_BYTES];
    const llm_comm_factory *factory;
} comm_entry;

static comm_entry comms[MAX_COMMS];
static int num_comms = 0;

llm_status llm_register_comm(const char *device, const llm_comm_factory *factory) {
    if (!device || !factory) return llm_fail(LLM_EINVAL, "register_comm: NULL device or factory");
    const size_t len = strlen(device);
    if (len == 0 || len >= DEVICE_NAME_BYTES)
        return llm_fail(LLM_EINVAL, "register_comm: device name must have 1 to %d characters, got '%s'",
                        DEVICE_NAME_BYTES - 1, device);
    if (!factory->name || !factory->make_id || !factory->create)
        return llm_fail(LLM_EINVAL, "register_comm: the factory for device '%s' lacks its name, make_id or create",
                        device);
    int i = 0;
    while (i < num_comms && strcmp(comms[i].device, device) != 0) i++;
    if (i == MAX_COMMS) return llm_fail(LLM_EINVAL, "register_comm: more than %d devices", MAX_COMMS);
    memcpy(comms[i].device, device, len + 1);
    comms[i].factory = factory;
    if (i == num_comms) num_comms++;
    return LLM_OK;
}

const llm_comm_factory *llm_comm_factory_for(const char *device) {
    if (!device) return NULL;
    for (int i = 0; i < num_comms; i++)
        if (strcmp(comms[i].device, device) == 0) return comms[i].factory;
    return NULL;
}

// ----------------------------------------------------------------------------
// build description

// LLMPY_HAVE_NCCL is defined on the core when the CUDA backend of this build holds the NCCL
// transport (CMake option LLMPY_NCCL), as LLMPY_HAVE_CUDA is for llm_build_has_cuda().
int llm_build_has_nccl(void) {
#ifdef LLMPY_HAVE_NCCL
    return 1;
#else
    return 0;
#endif
}
