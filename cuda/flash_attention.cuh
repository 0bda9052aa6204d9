/*
 * flash_attention.cuh — causal multi-head self-attention that never stores the (T,T) matrix
 * (FlashAttention-2 style: online softmax forward, recomputing backward). See flash_attention.cu.
 *
 * Shapes (letters as in csrc/core/ops.h; hs = C/NH, only 64 and 128 are supported):
 *   qkv  (B,T,3C)  each row is [q | k | v], each part (NH, hs): q of head h at row (b,t) is
 *                  qkv[(b*T+t)*3C + h*hs + d], k at + C, v at + 2C
 *   out  (B,T,C)   head h at columns h*hs .. h*hs+hs-1
 *   lse  (B,NH,T)  fp32 natural-log logsumexp of each row of scaled, masked scores
 *                  (score = q·k / sqrt(hs)); the forward's saved "state"
 *   dqkv (B,T,3C)  layout of qkv; WRITTEN (=), per the gradient convention of ops.h
 *   dout (B,T,C)
 * Element type floatX: float (fp32 on CUDA cores) or __nv_bfloat16 (tensor cores, fp32
 * accumulation). bf16 pointers must be 16-byte aligned (cudaMalloc'd buffers and offsets of
 * whole rows are).
 */
#ifndef LLMPY_CUDA_FLASH_ATTENTION_CUH
#define LLMPY_CUDA_FLASH_ATTENTION_CUH

#include "common.cuh"

// Bytes of the per-layer state the forward writes for the backward: the (B,NH,T) fp32 logsumexp.
size_t flash_attention_state_bytes(int B, int T, int C, int NH);
// Bytes of scratch the backward needs (contents not preserved between calls): D = rowsum(dO∘O),
// (B,NH,T) fp32. dQ is computed by its own deterministic pass, so no fp32 accumulator is needed.
size_t flash_attention_scratch_bytes(int B, int T, int C, int NH);
// 1 when this kernel supports the head size C/NH (64 or 128), 0 otherwise.
int flash_attention_supported(int C, int NH);

// out: (B,T,C) written; lse: (B,NH,T) written; qkv: (B,T,3C). Causal, scale 1/sqrt(hs).
// LLM_EUNSUPPORTED for a head size other than 64 or 128; LLM_EINVAL for bad sizes or pointers.
template <typename floatX>
llm_status flash_attention_forward(floatX *out, float *lse, const floatX *qkv, int B, int T, int C,
                                   int NH, cudaStream_t stream);

// dqkv: (B,T,3C) written (=); scratch: flash_attention_scratch_bytes() bytes; dout, out: (B,T,C);
// qkv: (B,T,3C) and lse: (B,NH,T) as the forward saw and left them.
template <typename floatX>
llm_status flash_attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                    const floatX *out, const float *lse, int B, int T, int C, int NH,
                                    cudaStream_t stream);

#endif // LLMPY_CUDA_FLASH_ATTENTION_CUH
