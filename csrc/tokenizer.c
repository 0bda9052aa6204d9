/*
 * tokenizer.c — csrc/tokenizer.c (token decoding, BPE training hot loop).
 */
#include "common.h"
