/*
 * checksum.c — CRC32C (Castagnoli), the checksum of every model and training-state file llmpy
 * writes (formats.h: the integrity block), and the helpers that seal and check that block.
 *
 * CRC32C because it is fast where it matters and exact about what it catches: every x86-64 CPU
 * since 2008 (SSE4.2) and ARMv8 with the CRC extension compute it in hardware (8 bytes per
 * instruction, three streams at once: several GB/s on one core, small next to writing or reading
 * the file), and as a
 * CRC it detects every single-bit flip and every burst of up to 32 flipped bits in a file, not
 * only with high probability. Without the instructions a slicing-by-8 table does it (~2 GB/s).
 *
 * Reference: the polynomial 0x1EDC6F41 (reflected 0x82F63B78), initial value and final xor
 * 0xFFFFFFFF, as in iSCSI (RFC 3720), ext4, Btrfs; crc32c("123456789") = 0xE3069283.
 */
#include <stdatomic.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "core/model_file.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <nmmintrin.h>
#define HAVE_SSE42_PATH 1
#endif
#if defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define HAVE_ARM_CRC 1
#endif

// ----------------------------------------------------------------------------
// portable: slicing-by-8 over tables built once (thread-safe: the first caller builds them while
// any other waits)

#define POLY 0x82F63B78u
#define LONG_BLOCK 8192 // the hardware path's three streams: blocks of this many bytes, then of SHORT_BLOCK
#define SHORT_BLOCK 256

static uint32_t table[8][256];
static atomic_int table_state; // 0: not built, 1: being built, 2: ready

static void build_shift(uint32_t out[4][256], size_t len);
static uint32_t shift_long[4][256], shift_short[4][256];

static void build_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    build_shift(shift_long, LONG_BLOCK);
    build_shift(shift_short, SHORT_BLOCK);
}

static void tables_ready(void) {
    if (atomic_load_explicit(&table_state, memory_order_acquire) == 2) return;
    int expected = 0;
    if (atomic_compare_exchange_strong(&table_state, &expected, 1)) {
        build_tables();
        atomic_store_explicit(&table_state, 2, memory_order_release);
    } else {
        while (atomic_load_explicit(&table_state, memory_order_acquire) != 2) {
        }
    }
}

// crc here is the running register (already inverted), as the hardware paths keep it.
static uint32_t crc_table(uint32_t crc, const unsigned char *p, size_t n) {
    tables_ready();
    for (; n && ((uintptr_t)p & 7); n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    }
    for (; n; n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

// ----------------------------------------------------------------------------
// shifting a checksum over zeros: the CRC register after n more zero bytes is a linear function of
// the register (GF(2)), applied with four table lookups. It lets the hardware path run three
// independent streams over three consecutive blocks (the instruction has a latency of three cycles
// and a throughput of one per cycle) and join them: reg(A B) = shift_|B|(reg(A)) ^ reg_from_0(B).
// (The method of Mark Adler's crc32c.c, zlib licence.)

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1) sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

// The operator that appends len zero bytes (len a power of two) to a register, as 4 x 256 tables.
static void build_shift(uint32_t out[4][256], size_t len) {
    uint32_t odd[32], even[32];
    odd[0] = POLY; // one zero bit
    for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
    gf2_square(even, odd); // two zero bits
    gf2_square(odd, even); // four
    uint32_t *op = odd;
    for (;;) { // each square doubles: one zero byte first, then len's bits
        gf2_square(even, odd);
        op = even;
        len >>= 1;
        if (!len) break;
        gf2_square(odd, even);
        op = odd;
        len >>= 1;
        if (!len) break;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++) out[k][n] = gf2_times(op, n << (8 * k));
}

static uint32_t shift(uint32_t t[4][256], uint32_t crc) {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

// ----------------------------------------------------------------------------
// hardware

#ifdef HAVE_SSE42_PATH
#ifdef __x86_64__
// Three streams over three blocks of `block` bytes each, while at least that much is left.
__attribute__((target("sse4.2"))) static uint32_t crc_sse42_3way(uint32_t crc, const unsigned char **pp, size_t *nn,
                                                                size_t block, uint32_t t[4][256]) {
    const unsigned char *p = *pp;
    size_t n = *nn;
    uint64_t c0 = crc;
    while (n >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        for (const unsigned char *end = p + block; p < end; p += 8) {
            uint64_t v0, v1, v2;
            memcpy(&v0, p, 8);
            memcpy(&v1, p + block, 8);
            memcpy(&v2, p + 2 * block, 8);
            c0 = _mm_crc32_u64(c0, v0);
            c1 = _mm_crc32_u64(c1, v1);
            c2 = _mm_crc32_u64(c2, v2);
        }
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * block;
        n -= 3 * block;
    }
    *pp = p;
    *nn = n;
    return (uint32_t)c0;
}
#endif

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    for (; n && ((uintptr_t)p & 7); n--) crc = _mm_crc32_u8(crc, *p++);
#ifdef __x86_64__
    if (n >= 3 * SHORT_BLOCK) {
        tables_ready();
        crc = crc_sse42_3way(crc, &p, &n, LONG_BLOCK, shift_long);
        crc = crc_sse42_3way(crc, &p, &n, SHORT_BLOCK, shift_short);
    }
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    crc = (uint32_t)c;
#endif
    for (; n >= 4; n -= 4, p += 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        crc = _mm_crc32_u32(crc, v);
    }
    for (; n; n--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

static int cpu_has_sse42(void) {
    static atomic_int known; // 0: not asked yet, 1: no, 2: yes
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (!k) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}
#endif

#ifdef HAVE_ARM_CRC
static uint32_t crc_arm(uint32_t crc, const unsigned char *p, size_t n) {
    for (; n && ((uintptr_t)p & 7); n--) crc = __crc32cb(crc, *p++);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = __crc32cd(crc, v);
    }
    for (; n; n--) crc = __crc32cb(crc, *p++);
    return crc;
}
#endif

// ----------------------------------------------------------------------------
// public

uint32_t llm_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    if (!n) return crc;
    crc = ~crc;
#ifdef HAVE_SSE42_PATH
    if (cpu_has_sse42()) return ~crc_sse42(crc, p, n);
#endif
#ifdef HAVE_ARM_CRC
    return ~crc_arm(crc, p, n);
#else
    return ~crc_table(crc, p, n);
#endif
}

uint32_t llm_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    return n ? ~crc_table(~crc, data, n) : crc;
}

const char *llm_crc32c_impl(void) {
#ifdef HAVE_SSE42_PATH
    if (cpu_has_sse42()) return "sse4.2";
#endif
#ifdef HAVE_ARM_CRC
    return "armv8-crc";
#else
    return "table";
#endif
}

// ----------------------------------------------------------------------------
// the integrity block of a header (formats.h)

static uint32_t u32(int32_t v) { return (uint32_t)v; }

uint32_t llm_header_checksum(const int32_t header[LLM_HEADER_INTS]) {
    int32_t h[LLM_HEADER_INTS];
    memcpy(h, header, sizeof h);
    h[LLM_INTEGRITY_AT + 3] = 0;
    return llm_crc32c(0, h, sizeof h);
}

void llm_integrity_seal(int32_t header[LLM_HEADER_INTS], uint32_t payload_crc) {
    header[LLM_INTEGRITY_AT + 0] = LLM_INTEGRITY_MAGIC;
    header[LLM_INTEGRITY_AT + 1] = LLM_CHECKSUM_CRC32C;
    header[LLM_INTEGRITY_AT + 2] = (int32_t)payload_crc;
    header[LLM_INTEGRITY_AT + 3] = (int32_t)llm_header_checksum(header);
}

llm_status llm_integrity_check(const int32_t header[LLM_HEADER_INTS], const char *path, llm_integrity *out) {
    const int32_t *b = header + LLM_INTEGRITY_AT;
    memset(out, 0, sizeof *out);
    if (!b[0] && !b[1] && !b[2] && !b[3]) return LLM_OK; // no checksum: llm.c's files, llmpy's before them
    if (b[0] != LLM_INTEGRITY_MAGIC)
        return llm_fail(LLM_EFORMAT,
                        "%s: checksum mismatch: the file is damaged (its header's integrity block, ints %d..%d, "
                        "holds %d %d %d %d, not a block written by llmpy); restore it from a copy, or use an older "
                        "checkpoint",
                        path, LLM_INTEGRITY_AT, LLM_INTEGRITY_AT + 3, b[0], b[1], b[2], b[3]);
    if (b[1] != LLM_CHECKSUM_CRC32C)
        return llm_fail(LLM_EFORMAT,
                        "%s: unknown checksum algorithm %d (this llmpy knows %d = CRC32C): the file is damaged, or "
                        "was written by a newer llmpy (upgrade llmpy to read it)",
                        path, b[1], LLM_CHECKSUM_CRC32C);
    uint32_t want = u32(b[3]), got = llm_header_checksum(header);
    if (want != got)
        return llm_fail(LLM_EFORMAT,
                        "%s: checksum mismatch in the header (stored 0x%08x, computed 0x%08x): the file is damaged; "
                        "restore it from a copy, or use an older checkpoint",
                        path, want, got);
    out->present = 1;
    out->payload = u32(b[2]);
    out->header = want;
    return LLM_OK;
}

llm_status llm_payload_mismatch(const char *path, uint32_t want, uint32_t got) {
    return llm_fail(LLM_EFORMAT,
                    "%s: checksum mismatch (stored 0x%08x, computed 0x%08x over the data after the header): the file "
                    "is damaged; restore it from a copy, or use an older checkpoint",
                    path, want, got);
}
