/*
 * comm_mpi.h — creating the "mpi" transport of comm.h (comm_mpi.c). Internal to the core: the
 * process group (dist.c) creates it over its MPI communicator.
 */
#ifndef LLMPY_COMM_MPI_H
#define LLMPY_COMM_MPI_H

#include "comm.h"

// A communicator over a duplicate of *(MPI_Comm *)mpi_comm (errors returned, not fatal);
// LLM_EUNSUPPORTED in a build without MPI.
llm_status comm_mpi_create(llm_comm **out, const void *mpi_comm, double timeout_s);

#endif // LLMPY_COMM_MPI_H
