/*
 * dataloader.c — csrc/dataloader.c (token shards for the binary).
 */
#include "common.h"
