/*
 * dist_internal.h — what dist_plan.c needs from the process group (dist.c). Not public.
 */
#ifndef LLMPY_DIST_INTERNAL_H
#define LLMPY_DIST_INTERNAL_H

#include "dist/comm.h"

// Collective. A transport for the buffers of models on `device`: "cpu" -> MPI over the group's
// communicator; another device -> the transport it registered (comm.h), its id made by rank 0 and
// broadcast over MPI; in a launch without MPI, the group's own NCCL communicator (*owned = 0:
// the caller must not destroy it). *out is NULL for a plain process (nothing to move).
llm_status dist_model_comm(llm_comm **out, int *owned, const char *device);

#endif // LLMPY_DIST_INTERNAL_H
