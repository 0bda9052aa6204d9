/*
 * llmpy.h — the public C API of the llmpy GPT-2 engine.
 *
 * Everything a caller (the Python bindings, the train_gpt2 binary, the C tests) needs:
 * an opaque model, its configuration, status codes and the last error message.
 *
 * Rules of the API
 *  - No function exits or aborts on bad input: it returns an llm_status != LLM_OK and
 *    llm_last_error() returns a human-readable message (thread-local).
 *  - Sizes are int64_t/size_t; token ids are int32_t.
 *  - The model owns its buffers. Pointers returned by llm_model_tensor() stay valid for the
 *    model's lifetime. Activation views (llm_model_logits/losses) hold a reference on the
 *    activation block, released with llm_block_release(), so they survive re-allocation.
 */
#ifndef LLMPY_H
#define LLMPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// status codes and errors

typedef enum llm_status {
    LLM_OK = 0,
    LLM_EINVAL = 1,       // bad argument (shape, range, value)
    LLM_EIO = 2,          // file could not be opened, read or written
    LLM_EFORMAT = 3,      // file exists but has the wrong magic/version/size
    LLM_ENOMEM = 4,       // allocation failed
    LLM_ESTATE = 5,       // call out of order (backward before forward, step before backward)
    LLM_EUNSUPPORTED = 6, // feature/backend not built or not supported
    LLM_EBACKEND = 7,     // backend failure (CUDA, MPI, ...)
    LLM_ENOENT = 8,       // a file does not exist (or a pattern matches none): FileNotFoundError
    LLM_EBUSY = 9,        // held by another process (a run folder's lock): BlockingIOError
} llm_status;

// Message describing the most recent failure on this thread ("" if none).
const char *llm_last_error(void);
// Short name of a status code ("LLM_EINVAL", ...).
const char *llm_status_name(llm_status s);

// ----------------------------------------------------------------------------
// element types

// Element type of a backend's parameters, gradients and activations. The CPU computes in fp32;
// CUDA in fp32 ("fp32") or in bf16 with fp32 master weights and optimizer state ("bf16").
typedef enum llm_dtype { LLM_F32 = 0, LLM_BF16 = 1 } llm_dtype;

// ----------------------------------------------------------------------------
// devices: "auto", "cpu", "cuda" or "cuda:N", parsed and resolved here for every caller (the
// Python package, the train_gpt2 binary) so that the rules exist once (device.c)

typedef enum llm_device_kind { LLM_DEVICE_AUTO = 0, LLM_DEVICE_CPU = 1, LLM_DEVICE_CUDA = 2 } llm_device_kind;

typedef struct llm_device {
    llm_device_kind kind;
    int index; // the GPU for LLM_DEVICE_CUDA; -1 when not given ("cuda")
} llm_device;

// Parses spec (case-sensitive, no spaces): "auto", "cpu", "cuda", "cuda:N" with N a decimal index
// in [0, 1024). LLM_EINVAL with a message quoting spec otherwise.
llm_status llm_device_parse(const char *spec, llm_device *out);
// Resolves a parsed device for this process: "auto" is cuda when cuda_count > 0, else cpu;
// "cuda" without an index is cuda:<local_rank> (local_rank < 0 counts as 0: one GPU per rank
// under an MPI launch, GPU 0 otherwise). The result is LLM_DEVICE_CPU, or LLM_DEVICE_CUDA with
// 0 <= index < cuda_count; a CUDA request with cuda_count == 0 is LLM_EUNSUPPORTED (why_no_cuda,
// when not NULL, is appended to the message: "not built", "no driver", ...), an index out of
// range LLM_EINVAL.
llm_status llm_device_resolve(const llm_device *in, int cuda_count, int local_rank, const char *why_no_cuda,
                              llm_device *out);
// Writes "auto", "cpu", "cuda" or "cuda:N" into buf (always NUL-terminated); returns buf.
const char *llm_device_format(const llm_device *d, char *buf, size_t n);

// ----------------------------------------------------------------------------
// configuration

typedef struct llm_config {
    int n_layer;           // L
    int n_head;            // NH
    int n_embd;            // C, divisible by n_head
    int vocab_size;        // V
    int block_size;        // maxT
    int padded_vocab_size; // Vp >= V; 0 on input means "round V up to a multiple of 128"
} llm_config;

// Validates cfg and fills padded_vocab_size when 0.
llm_status llm_config_check(llm_config *cfg);
// GPT-2's shapes by name, for both training programs' --model: "d12" (124M), "d24" (350M), "d36"
// (774M), "d48" (1558M), with GPT-2's vocabulary (50257) and block size (1024), padded_vocab_size 0.
// LLM_EINVAL naming the presets for any other name. llm_config_preset_name(i) is the i-th name,
// NULL past the last.
llm_status llm_config_preset(const char *name, llm_config *out);
const char *llm_config_preset_name(int i);

// ----------------------------------------------------------------------------
// the model

typedef struct llm_model llm_model;

// device: "cpu", or "cuda" when a CUDA backend is registered in this process (llmpy._cuda, the
// CUDA build of train_gpt2); otherwise LLM_EUNSUPPORTED. precision: "fp32" or "bf16" (mixed:
// bf16 parameters/activations, fp32 master weights and AdamW moments); NULL picks the device's
// default (cpu: fp32, cuda: bf16). The CPU backend is fp32 only.
// GPT-2 init: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2*L), biases 0, LN weights 1.
llm_status llm_model_create(llm_model **out, const llm_config *cfg, const char *device, const char *precision,
                            uint64_t seed);
// Reads an llm.c model file (version 3 = fp32, 5 = bf16), verifying its checksums (a file without
// them, llm.c's or an older llmpy's, has nothing to verify): the messages of llm_model_file_open,
// and "checksum mismatch" for a damaged payload. The model remembers the file's checksums for
// llm_model_load_state.
llm_status llm_model_load(llm_model **out, const char *path, const char *device, const char *precision);
// Writes an llm.c fp32 model file (version 3) with its checksums, atomically and durably (temp file,
// fsync, rename, fsync of the directory): path is the old file or the whole new one, also after a
// crash. A full disk is LLM_EIO saying so; path is then untouched.
llm_status llm_model_save(const llm_model *m, const char *path);
void llm_model_free(llm_model *m);

// What ties a training-state file to its checkpoint (formats.h: version 2 of the state).
typedef struct llm_state_tag {
    const char *model_path; // the model file saved with this state, already written: its checksums are
                            // recorded, and loading the state into a model loaded from another file
                            // is refused. NULL: none recorded
    int64_t step;           // the checkpoint's step (the training loop's); < 0: the AdamW step count
    const char *run_id;     // the run that wrote it: at most 31 of A-Z a-z 0-9 . _ -; NULL or "": none
} llm_state_tag;

// Training state (formats.h): AdamW moments and step, plus a caller's JSON text (may be NULL) and
// the tag (may be NULL), with its checksums, written atomically and durably as llm_model_save.
llm_status llm_model_save_state(const llm_model *m, const char *path, const char *json, const llm_state_tag *tag);
// Restores the AdamW moments and step into m (whose configuration must match the file's), after
// verifying the file's checksums (version 1 files have none). When m was loaded from a model file
// and the state records the one it was saved with, the two must be the same file (LLM_EINVAL "are
// not one checkpoint", naming both). A failure leaves m unchanged.
// *json receives a NUL-terminated copy of the JSON text (free with llm_free), or NULL if json is NULL.
llm_status llm_model_load_state(llm_model *m, const char *path, char **json);
void llm_free(void *p);

llm_config llm_model_config(const llm_model *m);
// Number of real parameters (wte counted with V rows, not Vp): what PyTorch reports.
int64_t llm_model_num_parameters(const llm_model *m);
const char *llm_model_device(const llm_model *m);
// "fp32" or "bf16".
const char *llm_model_precision(const llm_model *m);
// 1 when the model's buffers are host memory in fp32, which callers may view in place.
int llm_model_host_fp32(const llm_model *m);

// Forward pass on idx (B,T). With targets (B,T) computes per-position losses and *loss (mean);
// targets may be NULL (inference), then *loss is left untouched and backward() is refused.
llm_status llm_forward(llm_model *m, const int32_t *idx, const int32_t *targets, int B, int T, float *loss);
// Sets every parameter gradient to zero. Lazily, like PyTorch's zero_grad(set_to_none=True): the
// next backward writes the gradients instead of adding to them, which spares a pass over their
// memory. A gradient pointer (llm_model_tensor) taken afterwards sees zeros; one taken before
// keeps the old values until that backward.
llm_status llm_zero_grad(llm_model *m);
// Backward of (loss_scale * mean loss) of the last forward; parameter gradients accumulate (+=).
// On backends that run the classifier backward in place of the logits (CUDA; ops.h:
// lm_head_in_place) the logits are gone afterwards: llm_model_logits/copy_logits and a second
// backward return LLM_ESTATE until the next forward (the losses stay readable).
llm_status llm_backward(llm_model *m, float loss_scale);
// One AdamW step (t increments). grad_clip 0 disables clipping; a negative or NaN grad_clip is
// LLM_EINVAL, as are a negative or non-finite lr, eps or weight_decay and betas outside [0, 1).
// *norm receives the global gradient norm before clipping. Weight decay applies to 2-D tensors only.
llm_status llm_step(llm_model *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_clip, float *norm);
// The global gradient norm (before clipping) that the next llm_step would see, for a caller that
// decides on it whether to step (--skip-update-grad-z); collective with data parallelism (the
// gradients are averaged across the ranks first). The llm_step that follows reuses the averaged
// gradients and the norm: the pair is llm_step alone, bit for bit. Not stepping is allowed: the
// next llm_zero_grad starts over.
llm_status llm_grad_norm(llm_model *m, float *norm);
// Number of AdamW steps taken so far.
int64_t llm_model_steps(const llm_model *m);

// ----------------------------------------------------------------------------
// tensors: the 16 GPT-2 parameter tensors in llm.c order, named, described by one table

typedef enum llm_tensor_id {
    LLM_WTE,      // token embedding (Vp, C), also the tied lm_head
    LLM_WPE,      // position embedding (maxT, C)
    LLM_LN1W,     // (L, C)
    LLM_LN1B,     // (L, C)
    LLM_QKVW,     // (L, 3C, C)
    LLM_QKVB,     // (L, 3C)
    LLM_ATTPROJW, // (L, C, C)
    LLM_ATTPROJB, // (L, C)
    LLM_LN2W,     // (L, C)
    LLM_LN2B,     // (L, C)
    LLM_FCW,      // (L, 4C, C)
    LLM_FCB,      // (L, 4C)
    LLM_FCPROJW,  // (L, C, 4C)
    LLM_FCPROJB,  // (L, C)
    LLM_LNFW,     // (C)
    LLM_LNFB,     // (C)
    LLM_NUM_TENSORS
} llm_tensor_id;

// The size a dimension has for a configuration.
typedef enum llm_dim { LLM_DIM_NONE, LLM_DIM_L, LLM_DIM_VP, LLM_DIM_MAXT, LLM_DIM_C, LLM_DIM_3C, LLM_DIM_4C } llm_dim;

// How llm_model_create initialises a tensor (GPT-2's scheme).
typedef enum llm_init {
    LLM_INIT_ZERO,
    LLM_INIT_ONE,
    LLM_INIT_NORMAL,          // N(0, 0.02); rows beyond the vocabulary (wte's padding) zero
    LLM_INIT_NORMAL_RESIDUAL, // N(0, 0.02 / sqrt(2 L)): projections into the residual stream
} llm_init;

// One row of the table: everything the model, the optimizer, the distributed plan and the
// converters need to know about a tensor. Shapes are in the model-file layout (wte with Vp rows);
// a tensor whose first dimension is LLM_DIM_L holds one slice per layer.
typedef struct llm_tensor_spec {
    const char *name; // llm.c's name: "wte", "qkvw", ...
    llm_dim dims[3];  // LLM_DIM_NONE after the last dimension
    int decays;       // AdamW weight decay applies (the 2-D matrices: embeddings, matmul weights)
    llm_init init;
} llm_tensor_spec;

// The table, indexed by llm_tensor_id (LLM_NUM_TENSORS rows); NULL for an index out of range.
const llm_tensor_spec *llm_tensor_spec_of(int i);
// 1 for the tensors with one slice per layer (first dimension L).
int llm_tensor_per_layer(int i);
// Tensor i's shape for cfg (padded_vocab_size set, e.g. by llm_config_check) in the model-file
// layout; returns ndim (1..3), 0 for an index out of range.
int llm_tensor_shape(const llm_config *cfg, int i, int64_t shape[3]);

typedef struct llm_tensor {
    const char *name;   // "wte", "wpe", "ln1w", ...
    void *data;         // parameter values in backend memory (element type: dtype)
    void *grad;         // its gradient (same type and layout)
    llm_dtype dtype;    // element type of data and grad
    int host;           // 1: data/grad are host memory the caller may read and write in place
    int ndim;           // 1..3
    int64_t shape[3];   // visible shape (wte: (V, C) — the padding rows are hidden)
    int64_t row_stride; // elements between rows of the first dim (for wte: C, rows are contiguous)
} llm_tensor;

llm_status llm_model_tensor(llm_model *m, int i, llm_tensor *out);
// The same without the gradient (out->grad = NULL), for callers that only read or write the
// parameter: handing out the gradient's host memory makes every later gradient norm a pass over it
// (the backward's running sum could miss the caller's writes).
llm_status llm_model_tensor_info(llm_model *m, int i, llm_tensor *out);
// Copies tensor i (its visible shape, as llm_model_tensor reports it) to host fp32: the parameter
// (the fp32 master copy under mixed precision, so nothing is lost) or, with grad != 0, its gradient.
llm_status llm_model_read_tensor(llm_model *m, int i, int grad, float *dst);
// Sets parameter tensor i from host fp32 values (visible shape); mixed precision keeps them as the
// master copy and rounds them to bf16 for the compute copy.
llm_status llm_model_write_tensor(llm_model *m, int i, const float *src);
// Name of tensor i ("wte", ...), NULL when out of range (llm_tensor_spec_of(i)->name).
const char *llm_tensor_name(int i);

// Reference-counted block behind activation views.
typedef struct llm_block llm_block;
void llm_block_release(llm_block *b);

// Logits of the last forward: data points at (B,T,Vp) floats; callers show the first V of each row.
// Host fp32 backends only (LLM_EUNSUPPORTED otherwise: use llm_model_copy_logits). LLM_ESTATE after
// a backward that overwrote them (see llm_backward).
// On success *block holds a reference the caller must release.
llm_status llm_model_logits(llm_model *m, float **data, int *B, int *T, int *V, int *Vp, llm_block **block);
// Per-position losses (B,T) of the last forward with targets (host backends only, as above).
llm_status llm_model_losses(llm_model *m, float **data, int *B, int *T, llm_block **block);
// Shape of the last forward (0, 0 when there is none) and whether it had targets.
void llm_model_last_shape(const llm_model *m, int *B, int *T, int *has_targets);
// Copies of the same for any backend: dst (B,T,V) logits (padding columns dropped) / (B,T) losses, fp32.
llm_status llm_model_copy_logits(llm_model *m, float *dst);
llm_status llm_model_copy_losses(llm_model *m, float *dst);

// ----------------------------------------------------------------------------
// training rules shared by the two training programs (python -m llmpy.train and train_gpt2):
// the learning-rate schedule and the batch arithmetic, with errors that name the flags

typedef enum llm_lr_schedule { LLM_LR_COSINE, LLM_LR_LINEAR, LLM_LR_CONSTANT, LLM_LR_WSD } llm_lr_schedule;

typedef struct llm_schedule {
    llm_lr_schedule kind;
    double lr;          // --lr: peak learning rate, >= 0
    int warmup_steps;   // --warmup-steps: linear warmup from lr / warmup_steps to lr, >= 0
    int max_steps;      // --max-steps, >= 1
    double min_lr_frac; // --min-lr-frac: the decay ends at lr * min_lr_frac at max_steps, in [0, 1]
} llm_schedule;

// "cosine", "linear", "constant" or "wsd"; LLM_EINVAL naming --lr-schedule otherwise.
llm_status llm_schedule_parse(const char *name, llm_lr_schedule *out);
// Checks every field (finite, in range); the message names the flag.
llm_status llm_schedule_check(const llm_schedule *s);
// Learning rate of 0-based step: lr * (step + 1) / warmup_steps during the warmup, then the decay
// from lr to lr * min_lr_frac over [warmup_steps, max_steps] (held after it); computed in double.
// wsd (warmup-stable-decay, llm.c's "wsd", arXiv 2405.18392): after the warmup lr stays until the
// decay's start D = floor(0.8 * max_steps), then falls as min_lr + (1 - sqrt(r)) * (lr - min_lr),
// r = (step - D) / (max_steps - D): the last 20% of the steps decay (the warmup wins where the two
// overlap).
double llm_lr_at(const llm_schedule *s, int64_t step);
// The step where wsd's decay starts: floor(0.8 * max_steps).
int64_t llm_wsd_decay_start(int max_steps);
// Micro-batches per optimizer step: total_batch_size / (B * T * world_size) (total 0: one). The
// message names --total-batch-size when it is not a positive multiple.
llm_status llm_grad_accumulation(int64_t total_batch_size, int B, int T, int world_size, int *accum);

// The other training flags both programs take, checked by one rule (the message names the flag).
typedef struct llm_train_flags {
    int batch_size;       // --batch-size, >= 1
    int seq_len;          // --seq-len, >= 1
    int val_steps;        // --val-steps, >= 1
    int eval_every;       // --eval-every, >= 0 (0: off); likewise the four below
    int sample_every;     // --sample-every
    int sample_tokens;    // --sample-tokens
    int checkpoint_every; // --checkpoint-every
    int hellaswag_every;  // --hellaswag-every
    int keep_checkpoints; // --keep-checkpoints, >= 0 (0: all)
    int threads;          // --threads, >= 0 (0: all cores)
    int zero_stage;       // --zero-stage, 0 or 1
    double beta1, beta2;  // --beta1, --beta2: in [0, 1)
    double weight_decay;  // --weight-decay: finite, >= 0
    double grad_clip;     // --grad-clip: finite, >= 0 (0: off; NaN must not switch clipping off unseen)
    int major_checkpoint_every; // --major-checkpoint-every, >= 0 (0: none)
    double skip_update_loss_z;  // --skip-update-loss-z: finite, >= 0 (0: off)
    double skip_update_grad_z;  // --skip-update-grad-z: finite, >= 0 (0: off)
} llm_train_flags;

llm_status llm_train_flags_check(const llm_train_flags *f);

// Outlier detection (llm.c's -sl / -sg): both programs keep a window of the last
// LLM_OUTLIER_WINDOW losses and one of the gradient norms, and skip the update of a step whose loss
// (or norm) has a z-score above --skip-update-loss-z (--skip-update-grad-z). The z-score of x is
// (x - mean) / std over the window after x joined it (population std; 0 when std is 0); NaN until
// the window was full before x came. A non-finite x does not join the window: +inf scores +inf,
// NaN scores NaN. The window is part of a checkpoint's state (an exact resume needs it).
#define LLM_OUTLIER_WINDOW 128
typedef struct llm_outlier_window {
    double values[LLM_OUTLIER_WINDOW]; // a ring: the newest at (count - 1) % LLM_OUTLIER_WINDOW
    int64_t count;                     // values that joined it so far
} llm_outlier_window;

void llm_outlier_init(llm_outlier_window *w);
// Adds x and returns its z-score (above).
double llm_outlier_update(llm_outlier_window *w, double x);
// The values in the window, oldest first, into out (LLM_OUTLIER_WINDOW doubles); returns how many.
// Feeding them to llm_outlier_update of a fresh window restores it exactly.
int llm_outlier_values(const llm_outlier_window *w, double *out);
// Why to skip a step's update: 0 none, 1 its loss (loss_z > max_loss_z > 0), 2 its gradient norm
// (grad_z > max_grad_z > 0); a NaN z-score never skips; the loss is checked first (as in llm.c).
int llm_outlier_skip(double loss_z, double grad_z, double max_loss_z, double max_grad_z);

// Model FLOPs utilisation (MFU), the estimate of PaLM's appendix B and nanoGPT/llm.c:
// FLOPs per token of a training step = 6 * N + 12 * L * T * C, where N counts every parameter
// except wpe, wte with the real vocabulary (not the padded rows) (dev/bench/cpu_step.py explains
// the terms). LLM_EINVAL for an invalid configuration or T outside [1, block_size].
llm_status llm_flops_per_token(const llm_config *c, int T, double *flops);
// A device's dense peak in FLOP/s for precision "bf16" or "fp32" (fp32 without tensor cores: our
// fp32 parity path), from a small table of datacenter GPUs matched on their CUDA name ("NVIDIA
// H100 80GB HBM3"); 0 when unknown (the CPU, other GPUs): no MFU then.
double llm_peak_flops(const char *device_name, const char *precision);
// flops_per_token * tokens / seconds / peak_flops; NaN when peak_flops or seconds are not > 0.
double llm_mfu(double flops_per_token, double tokens, double seconds, double peak_flops);

// ----------------------------------------------------------------------------
// run folders (run.c): the rules both training programs follow for their --out-dir
//
// One writer per folder: a run holds <dir>/.lock (flock) from before it reads or writes anything
// there until it ends; the OS releases it when the process dies, so the lock file of a killed run
// is taken over, with a note. Under MPI only rank 0 takes it (rank 0 writes every file of a run;
// an error on rank 0 ends the job). A new run refuses a folder that holds another run; a resumed
// run rewinds its log (llm_log_rewind) and keeps the flags that define the run (llm_resume_check_flag).

typedef struct llm_dir_lock llm_dir_lock; // a run folder's lock, held by llm_run_lock

typedef struct llm_run_lock_info {
    long stale_pid; // > 0: the lock file of this process, which ended without releasing it, was taken over
    int created;    // the folder (or one of its parents) was created by llm_run_lock
    char note[512]; // the take-over, for the caller to print ("" when none)
} llm_run_lock_info;

// Creates dir when missing (its parents too) and locks it for this process, writing "PID\nprogram\n
// host\n" into <dir>/.lock. LLM_EBUSY when another process holds it, with a message naming its PID
// (and host and program): "runs/x is in use by PID 1234 (another training run: train_gpt2); wait for
// it or pick another --out-dir". info may be NULL.
llm_status llm_run_lock(llm_dir_lock **out, const char *dir, const char *program, llm_run_lock_info *info);
// Releases the lock and removes <dir>/.lock. discard != 0 (a start that failed) also removes the
// folders llm_run_lock created, when they are empty. NULL is a no-op.
void llm_run_unlock(llm_dir_lock *lock, int discard);
// The newest step with a checkpoint file (ckpt_NNNNNN.bin/.state) in dir (0: none) and how many
// such files there are (count may be NULL); a missing dir holds none.
llm_status llm_run_newest_step(const char *dir, int64_t *step, int *count);
// LLM_EINVAL when dir holds checkpoints or log_path is a non-empty file (another run's): a new run
// would mix its checkpoints with them and truncate the log. The message says how to continue it.
llm_status llm_run_check_new(const char *dir, const char *log_path);

typedef struct llm_log_rewind_info {
    int64_t partial_bytes; // bytes of a partial last line that were trimmed (0: none)
    int64_t dropped;       // records after the resumed step that were cut
    int64_t kept;          // lines kept
    char warning[1024];    // "<path>: trimmed a partial last line (...)", "" when none
    char note[1024];       // "<path>: cut N records after step S (...)", "" when none
} llm_log_rewind_info;

// Prepares the JSONL log at path for a run resumed at `step` that goes on to `max_steps`: a partial
// last line (a record cut off mid-write) is trimmed; records whose "step" is after `step` are cut
// (the resumed run writes them again); every other line stays as it is. LLM_EINVAL, changing
// nothing, when records past max_steps would be cut (the resumed run would not write them again).
// The file is rewritten only when something changes: into path.tmp, every write checked, fsynced,
// then renamed over path, so a failure (a full disk: LLM_EIO) leaves the log as it was. A missing
// file is fine (nothing to do). info may be NULL.
llm_status llm_log_rewind(const char *path, int64_t step, int64_t max_steps, llm_log_rewind_info *info);

// 1 when a resumed run may change flag ("--max-steps", "--eval-every", "--lr", "--threads", ...:
// what to do next, not what the run is); 0 for the flags that define the run (model shape,
// --init-from, batch, sequence length, data, seed, shuffling, overfitting one batch) and for
// unknown flags.
int llm_resume_flag_changeable(const char *flag);
// LLM_OK when a resumed run may take `given` for flag (a changeable flag, or the saved value
// again); else LLM_EINVAL naming the flag, the saved value and why it stays. Values are the flags'
// text ("8", "0.001", "dir/x_*.bin"; "true"/"false" for --shuffle and --overfit-single-batch;
// NULL: not set).
llm_status llm_resume_check_flag(const char *flag, const char *saved, const char *given);

// ----------------------------------------------------------------------------
// model files (model_file.c): llm.c's format (formats.h) streamed one tensor slice at a time, so
// converters never hold a whole model; llm_model_load/llm_model_save use the same code.
//
// A slice is tensor i's layer `layer` for a per-layer tensor (llm_tensor_per_layer), or the whole
// tensor with layer = -1 (every layer, for a per-layer tensor). Slices hold the visible rows only
// (wte: V rows; the file's padding rows up to Vp are skipped on reading and written as zeros), in
// fp32 on the caller's side whatever the file stores. Every message names the file.

typedef struct llm_model_file llm_model_file;

// Opens an llm.c model file for reading, checking its header's checksum, magic, version,
// configuration and size (fp32 version 3 or bf16 version 5), then its payload's checksum (reading
// the file once); LLM_ENOENT when it does not exist, LLM_EIO when it cannot be opened or is a
// directory, LLM_EFORMAT when it is not a valid model file ("checksum mismatch", "not an llm.c model
// file", "unsupported model file version", "file is truncated", "header does not match the file
// size", "invalid configuration"). A file without checksums (llm.c's) has nothing to verify.
llm_status llm_model_file_open(llm_model_file **out, const char *path);
// The file's configuration (padded_vocab_size as the file stores it).
llm_config llm_model_file_config(const llm_model_file *f);
// 1 for a bf16 file (version 5), 0 for fp32 (version 3).
int llm_model_file_bf16(const llm_model_file *f);
// The shape of slice (i, layer), as read and write take it; returns ndim (1..3), 0 when (i, layer)
// is not a slice (i out of range, layer out of [-1, L), a layer of a tensor that has none).
int llm_model_file_shape(const llm_model_file *f, int i, int layer, int64_t shape[3]);
// Reads slice (i, layer) into dst (fp32, shape as llm_model_file_shape says; bf16 widened exactly).
// Any order; only on a file opened with llm_model_file_open.
llm_status llm_model_file_read(llm_model_file *f, int i, int layer, float *dst);

// Starts writing a model file for cfg (padded_vocab_size 0: rounded up to a multiple of 128) as
// fp32 (version 3) or, with bf16 != 0, bf16 (version 5): into a temp file beside path, which
// llm_model_file_commit renames over path. Until then path is untouched.
llm_status llm_model_file_create(llm_model_file **out, const char *path, const llm_config *cfg, int bf16);
// Writes slice (i, layer) from src (fp32; a bf16 file rounds to nearest, ties to even, NaN stays a
// quiet NaN). Slices go in file order (tensors in llm_tensor_id order, a per-layer tensor layer by
// layer or whole); another order is LLM_ESTATE naming the slice expected next. wte's padding rows
// are written as zeros after its visible rows.
llm_status llm_model_file_write(llm_model_file *f, int i, int layer, const float *src);
// Finishes a written file: LLM_ESTATE (nothing changes, writing may go on) while slices are missing
// or after a failed write; then writes the checksums into the header, flushes, fsyncs, closes and
// renames the temp file over path atomically (and fsyncs the directory). Any failure of those
// removes the temp file and leaves path as it was.
llm_status llm_model_file_commit(llm_model_file *f);
// Closes f (after reading, after a commit, or to abandon a write: the temp file is removed and
// path left as it was) and frees it. NULL is a no-op.
void llm_model_file_close(llm_model_file *f);

// fp32 <-> bf16 bit patterns as model files store them: round to nearest, ties to even; a NaN
// stays a quiet NaN ((bits >> 16) | 0x40) instead of rounding into infinity. Widening is exact.
void llm_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void llm_bf16_to_f32(float *dst, const uint16_t *src, size_t n);

// ----------------------------------------------------------------------------
// generation with a KV cache (generate.c)
//
// A generator runs a model forward for inference a token at a time. Prefill runs whole prompts
// and writes their keys and values into a cache; decode appends one token to each of several
// sequences, attending over its cache, so that a new token costs one pass over the weights
// instead of a forward over the whole sequence. The cache has `slots` sequence slots of up to
// max_len positions each; sequences in one call may have different lengths (positions are kept
// per slot). Logits come back as host fp32, (n, vocab_size) for the n sequences of the call.
// Sampling (greedy, temperature, top-k/top-p) is the caller's: python/llmpy/generate.py.

typedef struct llm_gen llm_gen;

// What decode multiplies by: weights "fp32" or "bf16" (NULL: the model's precision). bf16 weights
// on an fp32 model are a copy converted now (round to nearest even; half the bytes per token) and
// do not follow later changes of the model's parameters; otherwise the generator reads the
// model's own parameters. "fp32" on a bf16 model is LLM_EINVAL. The model must outlive the
// generator and must not be used by another thread during a generator's call.
llm_status llm_gen_create(llm_gen **out, llm_model *m, const char *weights);
void llm_gen_free(llm_gen *g);
// Makes room for `slots` sequences of at most max_len tokens (1 <= max_len <= block_size) and
// empties every slot. A cache at least that large is kept as it is (llm_gen_get_info tells its
// shape); otherwise it grows to the larger of the two in each dimension.
llm_status llm_gen_reserve(llm_gen *g, int slots, int max_len);
// Runs n prompts into slots rows[0..n) (distinct), replacing what those slots held. tokens: the
// prompts one after the other, lengths[i] tokens each (1 <= lengths[i] <= max_len), ids in
// [0, vocab_size). logits: (n, vocab_size) host fp32, the logits after each prompt's last token.
llm_status llm_gen_prefill(llm_gen *g, const int32_t *tokens, const int32_t *lengths, const int32_t *rows, int n,
                           float *logits);
// Appends tokens[i] to slot rows[i] (distinct slots, each prefilled and holding fewer than max_len
// tokens) and writes the logits that follow it into logits (n, vocab_size) host fp32.
llm_status llm_gen_decode(llm_gen *g, const int32_t *tokens, const int32_t *rows, int n, float *logits);

typedef struct llm_gen_info {
    const char *weights; // "fp32" or "bf16"
    int slots, max_len;  // the cache's shape (0, 0 before llm_gen_reserve)
    size_t cache_bytes;  // the KV cache: 2 * n_layer * slots * max_len * n_embd elements
    size_t work_bytes;   // activations and staging of the calls so far
    size_t copy_bytes;   // the converted weights (0 when the generator reads the model's)
    size_t step_bytes;   // bytes of parameters one decode step reads (matrices in `weights`)
} llm_gen_info;
void llm_gen_get_info(const llm_gen *g, llm_gen_info *out);
// Tokens slot s holds (0 when empty or out of range).
int llm_gen_length(const llm_gen *g, int slot);
// How the CPU multiplies bf16 weights here: "avx512_bf16" (VDPBF16PS) or "convert" (widened to fp32).
const char *llm_cpu_bf16_path(void);
// checkpoints: checksums, verification, the newest intact pair of a run folder
// (checksum.c, checkpoint.c, checkpoint_dir.c; formats.h: the integrity block)

// CRC32C (Castagnoli) of n bytes continuing crc (0 to start): crc32c("123456789") = 0xE3069283.
// SSE4.2 or ARMv8 CRC instructions when the CPU has them, else a table (llm_crc32c_impl() says
// which: "sse4.2", "armv8-crc", "table"); llm_crc32c_portable always takes the table (for tests).
uint32_t llm_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t llm_crc32c_portable(uint32_t crc, const void *data, size_t n);
const char *llm_crc32c_impl(void);

// What a model or training-state file holds, from llm_checkpoint_verify.
typedef struct llm_checkpoint_info {
    int is_state;             // 1: a training-state file, 0: a model file
    int version;              // its format version
    int has_checksum;         // 0: the file has no checksums (llm.c's, an older llmpy's): nothing verified
    uint32_t checksum;        // of the payload (the bytes after the header)
    uint32_t header_checksum; // of the header, which holds the payload's: it identifies the whole file
    llm_config cfg;
    // training-state files only
    int64_t step;             // the checkpoint's step (version 1: the AdamW step count); -1 for models
    int64_t adam_steps;       // AdamW steps taken
    int64_t moment_elems;     // elements of each AdamW moment in the file (0 before the first step)
    int64_t json_bytes;       // length of the JSON text
    int has_model;            // 1: the model file saved with it is recorded here
    uint32_t model_checksum, model_header_checksum;
    char run_id[32];          // "" when none (formats.h: LLM_RUN_ID_MAX + 1 bytes)
} llm_checkpoint_info;

// Reads a model file or a training-state file whole and checks it as loading it would (header,
// size, checksums), without loading it; *out describes it. The messages are those of loading.
llm_status llm_checkpoint_verify(const char *path, llm_checkpoint_info *out);

// Receives one line per checkpoint skipped by llm_checkpoint_find_latest (ctx is the caller's).
typedef void (*llm_checkpoint_log_fn)(void *ctx, const char *message);

// The newest step N of the checkpoints in dir (ckpt_NNNNNN.bin + ckpt_NNNNNN.state, N of 6 or more
// digits) whose pair is intact and matches: both files verify (llm_checkpoint_verify), the state
// records this model file (or records none: files of older llmpy versions), its step is N and its
// configuration the model's. *step = -1 when no pair does. Every newer step that fails is reported
// through log (NULL: on stderr) with the reason, newest first: "skipping checkpoint of step N in dir:
// ...". Whatever the training's --max-steps: every step in dir is a candidate. LLM_ENOENT when dir
// does not exist, LLM_EIO when it cannot be read.
llm_status llm_checkpoint_find_latest(const char *dir, int64_t *step, llm_checkpoint_log_fn log, void *ctx);

// The retention rule of both training programs, run after the checkpoint of `step` was written in
// dir: of the checkpoints (a .state file names one) at steps <= step, the newest `keep` stay (0: all
// stay), and so does every one whose step is a multiple of major_every (> 0: llm.c's "major"
// checkpoints, never deleted); the others lose their .bin and .state. Steps after `step` (those of
// a run resumed from an older checkpoint) are left alone. *removed (may be NULL): how many steps.
llm_status llm_checkpoint_prune(const char *dir, int64_t step, int keep, int major_every, int *removed);

// Removes the temp files that interrupted writes of model and state files left in dir (our temp
// name only: "<name>.tmp.<pid>.<n>", see llm_model_save) whose writer process is no longer alive
// on this machine; files of live writers are kept. *removed (may be NULL) receives how many were
// removed. Meant for the start of a run that holds dir. LLM_ENOENT when dir does not exist.
llm_status llm_checkpoint_clean_temp(const char *dir, int *removed);

// ----------------------------------------------------------------------------
// runtime

// OpenMP threads of the CPU backend; LLM_EINVAL for n < 1 (the setting is then unchanged).
llm_status llm_set_num_threads(int n);
int llm_get_num_threads(void);
// Static build description: compiler, OpenMP, backends.
const char *llm_build_compiler(void);
int llm_build_has_openmp(void);
int llm_build_has_cuda(void);
// This build's CUDA backend has the NCCL transport of comm.h (multi-GPU data parallelism).
int llm_build_has_nccl(void);
int llm_build_has_mpi(void);
// CPU kernels: this build holds one variant per instruction set it targets ("avx512", "avx2",
// "generic" on x86-64, "neon", "generic" on aarch64; or "native" when built with
// LLMPY_NATIVE=ON) and picks the best one the CPU supports on first use (the environment
// variable LLMPY_CPU_ISA=<name> asks for another).
// llm_cpu_isa(): the variant in use. llm_cpu_isa_list(): the built ones, best first,
// comma-separated. llm_set_cpu_isa(): switch (NULL or "auto": the best supported one);
// LLM_EINVAL for a name not built in ("" included: the message lists the built ones), LLM_EUNSUPPORTED when this CPU cannot run it.
const char *llm_cpu_isa(void);
const char *llm_cpu_isa_list(void);
llm_status llm_set_cpu_isa(const char *name);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_H
