/* Unit test: after mpos_crypto_init() no operation allocates memory (mpos/crypto.h; style.md
 * rule 1: caller-allocated contexts, libcrypto's contexts created once at init).
 *
 * How it counts. Normal builds interpose the allocator in this executable: malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign and valloc are defined
 * here (exported to the dynamic symbol table, see tests/unit/CMakeLists.txt) and forward to
 * glibc's __libc_* entry points, so every allocation of our code, of libcrypto and of libc
 * itself lands here. While `counting` is set each call (free of NULL excepted) is counted and
 * the call stacks of the first few are kept; the test fails on any count but 0 and prints
 * them. To see a symbolised stack: gdb -batch -ex 'break noalloc_hit' -ex run -ex bt <exe>.
 *
 * Sanitizer builds (MPOS_SANITIZE, and the fuzz build): AddressSanitizer owns malloc and a
 * second definition would corrupt its heap, so there the counter is OpenSSL's
 * CRYPTO_set_mem_functions(), installed first thing in main(). It sees every allocation
 * libcrypto makes (which is where allocations come from in practice) but not a malloc of our
 * own code; the normal build covers that.
 *
 * What is run: every facade operation (ECB/CBC both ways for every cipher and key length,
 * single DES included; AES single block on both paths; CMAC of every cipher; random bytes),
 * then the main operations of each module library that is linked (MPOS_NOALLOC_HAVE_<m>):
 * DUKPT host derivations and terminal next/working key/export, PIN block encrypt/decrypt,
 * the MACs, KCVs, TR-31 wrap/unwrap, EMV session keys and ARQC/ARPC, MK/WK unwrap. Counting
 * starts right after init and covers the first call of each operation: a lazy first-use
 * allocation breaks "afterwards no operation allocates memory" as much as a per-call one.
 * test_counter_works proves the counter sees an allocation; test_rng_reseed_bounded pins down
 * the one periodic allocation libcrypto makes (its DRBG reseeding, see there).
 */
#define _GNU_SOURCE /* reallocarray, memalign, valloc prototypes */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "mpos/crypto.h"
#include "mpos/util.h"
#include "testutil.h"
#ifdef MPOS_NOALLOC_HAVE_dukpt
#include "mpos/dukpt.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_pin
#include "mpos/pin.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_mac
#include "mpos/mac.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_kcv
#include "mpos/kcv.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_tr31
#include "mpos/tr31.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_emv
#include "mpos/emv.h"
#endif
#ifdef MPOS_NOALLOC_HAVE_mkwk
#include "mpos/mkwk.h"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define NOALLOC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NOALLOC_ASAN 1
#endif
#endif

#ifndef NOALLOC_ASAN
#include <execinfo.h>
#include <malloc.h>
#endif

#define NOALLOC_STACKS     4
#define NOALLOC_STACK_SIZE 24

static volatile int counting;
static unsigned long alloc_count;
#ifndef NOALLOC_ASAN
static void *stacks[NOALLOC_STACKS][NOALLOC_STACK_SIZE];
static int stack_depth[NOALLOC_STACKS];
#endif
static const char *current_case; /* cipher and key length, or module */
static const char *current_op;
/* Allocations per (case, operation), for the failure message. */
#define NOALLOC_OPS 64
static struct {
    const char *kase;
    const char *op;
    unsigned long count;
} per_op[NOALLOC_OPS];

/* Called on every counted allocation: a breakpoint target for gdb. */
__attribute__((noinline)) void noalloc_hit(void);
__attribute__((noinline)) void noalloc_hit(void)
{
    __asm__ volatile("" ::: "memory");
}

static void count_call(void)
{
    if (!counting) {
        return;
    }
    counting = 0; /* backtrace() must not count itself */
    for (size_t i = 0; i < NOALLOC_OPS; i++) {
        if (per_op[i].op == NULL ||
            (per_op[i].op == current_op && per_op[i].kase == current_case)) {
            per_op[i].kase = current_case;
            per_op[i].op = current_op;
            per_op[i].count++;
            break;
        }
    }
#ifndef NOALLOC_ASAN
    if (alloc_count < NOALLOC_STACKS) {
        stack_depth[alloc_count] = backtrace(stacks[alloc_count], NOALLOC_STACK_SIZE);
    }
#endif
    alloc_count++;
    noalloc_hit();
    counting = 1;
}

#ifndef NOALLOC_ASAN
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);

void *malloc(size_t size)
{
    count_call();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count_call();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count_call();
    return __libc_realloc(p, size);
}

void *reallocarray(void *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n * size);
}

void free(void *p)
{
    if (p != NULL) {
        count_call();
    }
    __libc_free(p);
}

void *memalign(size_t alignment, size_t size)
{
    count_call();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    count_call();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size)
{
    count_call();
    return __libc_valloc(size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    count_call();
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

static void install_counter(void)
{
    /* backtrace() loads libgcc_s on first use (which allocates): do that now. */
    void *warm[2];
    (void)backtrace(warm, 2);
}
#else
static void *count_malloc(size_t size, const char *file, int line)
{
    (void)file;
    (void)line;
    count_call();
    return malloc(size);
}

static void *count_realloc(void *p, size_t size, const char *file, int line)
{
    (void)file;
    (void)line;
    count_call();
    return realloc(p, size);
}

static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p != NULL) {
        count_call();
    }
    free(p);
}

static void install_counter(void)
{
    /* Must come before libcrypto's first allocation, or OpenSSL refuses. */
    if (CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) != 1) {
        fputs("test_noalloc: CRYPTO_set_mem_functions refused\n", stderr);
        exit(1);
    }
}
#endif

static void start_counting(void)
{
    alloc_count = 0;
    memset(per_op, 0, sizeof(per_op));
    counting = 1;
}

/* Stops counting; with report set, prints where allocations happened (per operation, and the
 * first call stacks). */
static unsigned long stop_counting(int report)
{
    counting = 0;
    if (report && alloc_count != 0) {
        fprintf(stderr, "test_noalloc: %lu allocation(s) or free(s) while counting:\n",
                alloc_count);
        for (size_t i = 0; i < NOALLOC_OPS && per_op[i].op != NULL; i++) {
            fprintf(stderr, "  %-20s %-24s %lu\n", per_op[i].kase, per_op[i].op, per_op[i].count);
        }
#ifndef NOALLOC_ASAN
        for (unsigned long i = 0; i < alloc_count && i < NOALLOC_STACKS; i++) {
            fprintf(stderr, "-- allocation %lu:\n", i + 1);
            backtrace_symbols_fd(stacks[i], stack_depth[i], 2);
        }
#endif
    }
    return alloc_count;
}

static mpos_crypto_ctx cc;
static int failures;            /* operations that returned an error while counting */
static const char *failed_case; /* the first of them */
static const char *failed_op;

/* Runs one operation under the current case; it must succeed (checked after counting). */
#define OP(name, call)                                                                             \
    do {                                                                                           \
        current_op = (name);                                                                       \
        if ((call) != MPOS_OK && failures++ == 0) {                                                \
            failed_case = current_case;                                                            \
            failed_op = current_op;                                                                \
        }                                                                                          \
    } while (0)

static const uint8_t key_material[32] = {
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
    0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE};

struct cipher_case {
    const char *name;
    enum mpos_cipher cipher;
    size_t key_len;
};

static const struct cipher_case cipher_cases[] = {{"des (8-byte key)", MPOS_CIPHER_TDES, 8},
                                                  {"tdes 2-key", MPOS_CIPHER_TDES, 16},
                                                  {"tdes 3-key", MPOS_CIPHER_TDES, 24},
                                                  {"aes-128", MPOS_CIPHER_AES, 16},
                                                  {"aes-192", MPOS_CIPHER_AES, 24},
                                                  {"aes-256", MPOS_CIPHER_AES, 32},
                                                  {"sm4", MPOS_CIPHER_SM4, 16}};

/* Every facade operation once, on every cipher and key length. */
static void facade_ops(uint8_t seed)
{
    uint8_t key[32], iv[16], buf[64], out[64], mac[16];
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (uint8_t)(key_material[i] ^ seed);
    }
    memset(iv, seed, sizeof(iv));
    memset(buf, 0x5A ^ seed, sizeof(buf));
    for (size_t c = 0; c < sizeof(cipher_cases) / sizeof(cipher_cases[0]); c++) {
        const struct cipher_case *cs = &cipher_cases[c];
        current_case = cs->name;
        OP("ecb encrypt", mpos_cipher_ecb(&cc, cs->cipher, 1, key, cs->key_len, buf, out, 64));
        OP("ecb decrypt", mpos_cipher_ecb(&cc, cs->cipher, 0, key, cs->key_len, out, out, 64));
        OP("cbc encrypt", mpos_cipher_cbc(&cc, cs->cipher, 1, key, cs->key_len, iv, buf, out, 64));
        OP("cbc decrypt", mpos_cipher_cbc(&cc, cs->cipher, 0, key, cs->key_len, iv, out, out, 64));
        OP("cbc zero iv",
           mpos_cipher_cbc(&cc, cs->cipher, 1, key, cs->key_len, NULL, buf, out, 16));
        OP("cmac", mpos_cmac(&cc, cs->cipher, key, cs->key_len, buf, 37, mac));
        OP("cmac empty", mpos_cmac(&cc, cs->cipher, key, cs->key_len, NULL, 0, mac));
    }
    current_case = "aes";
    for (int aesni = 0; aesni <= 1; aesni++) {
        (void)mpos_crypto_set_aesni(&cc, aesni);
        for (size_t kl = 16; kl <= 32; kl += 8) {
            OP(aesni ? "aes block (aes-ni)" : "aes block (libcrypto)",
               mpos_aes_encrypt_block(&cc, key, kl, buf, out));
        }
    }
    (void)mpos_crypto_set_aesni(&cc, 1);
    current_case = "rng";
    OP("random 8", mpos_random_bytes(out, 8));
    OP("random 64", mpos_random_bytes(out, 64));
}

#ifdef MPOS_NOALLOC_HAVE_dukpt
static mpos_dukpt_aes_terminal aes_terminal;
static mpos_dukpt_tdes_terminal tdes_terminal;
#endif
#ifdef MPOS_NOALLOC_HAVE_tr31
static mpos_tr31_header tr31_hdr;
#endif

/* Loads the terminal-side DUKPT states (also counted: it is no init of the facade). */
static void module_load(void)
{
#ifdef MPOS_NOALLOC_HAVE_dukpt
    static const uint8_t ikid[MPOS_DUKPT_AES_IKID_LEN] = {0x12, 0x34, 0x56, 0x78,
                                                          0x90, 0x12, 0x34, 0x56};
    static const uint8_t iksn[MPOS_DUKPT_TDES_KSN_LEN] = {0xFF, 0xFF, 0x98, 0x76, 0x54,
                                                          0x32, 0x10, 0xE0, 0x00, 0x00};
    current_case = "dukpt";
    OP("aes terminal load",
       mpos_dukpt_aes_terminal_load(&aes_terminal, &cc, key_material, 16, ikid));
    OP("tdes terminal load",
       mpos_dukpt_tdes_terminal_load(&tdes_terminal, &cc, key_material, iksn));
#endif
}

/* The main operation of each module that is linked, once. */
static void module_ops(uint8_t seed)
{
    uint8_t key[32], out[64];
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (uint8_t)(key_material[i] ^ seed);
    }
    (void)out;
#ifdef MPOS_NOALLOC_HAVE_dukpt
    {
        uint8_t ksn[MPOS_DUKPT_AES_KSN_LEN] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12,
                                               0x34, 0x56, 0x00, 0x00, 0x10, 0x01};
        uint8_t tksn[MPOS_DUKPT_TDES_KSN_LEN] = {0xFF, 0xFF, 0x98, 0x76, 0x54,
                                                 0x32, 0x10, 0xE0, 0x00, 0x15};
        uint8_t state[MPOS_DUKPT_AES_STATE_LEN];
        current_case = "dukpt";
        OP("aes host working key",
           mpos_dukpt_aes_working_key(&cc, key, 16, ksn, MPOS_DUKPT_AES_USAGE_PIN,
                                      MPOS_DUKPT_AES_KEY_AES128, out));
        OP("aes-256 host derivation key", mpos_dukpt_aes_derivation_key(&cc, key, 32, ksn, out));
        OP("tdes host working key",
           mpos_dukpt_tdes_working_key(&cc, key, 16, tksn, MPOS_DUKPT_TDES_USAGE_DATA_REQ, out));
        OP("aes terminal next", mpos_dukpt_aes_terminal_next(&aes_terminal, &cc, ksn));
        OP("aes terminal working key",
           mpos_dukpt_aes_terminal_working_key(&aes_terminal, &cc, MPOS_DUKPT_AES_USAGE_MAC_GEN,
                                               MPOS_DUKPT_AES_KEY_AES128, out));
        OP("aes terminal export", mpos_dukpt_aes_terminal_export(&aes_terminal, state));
        mpos_dukpt_aes_terminal_done(&aes_terminal);
        OP("tdes terminal next", mpos_dukpt_tdes_terminal_next(&tdes_terminal, &cc, tksn));
        OP("tdes terminal working key", mpos_dukpt_tdes_terminal_working_key(
                                            &tdes_terminal, &cc, MPOS_DUKPT_TDES_USAGE_PIN, out));
        OP("tdes terminal export", mpos_dukpt_tdes_terminal_export(&tdes_terminal, state));
        mpos_dukpt_tdes_terminal_done(&tdes_terminal);
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_pin
    {
        uint8_t block[MPOS_PIN_BLOCK_MAX_LEN];
        size_t block_len = 0;
        char pin[MPOS_PIN_BUF_LEN];
        current_case = "pin";
        OP("format 0 encrypt",
           mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key, 16, "1234",
                                  "4012345678909", NULL, 0, block, &block_len));
        OP("format 0 decrypt", mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_0, MPOS_CIPHER_TDES, key,
                                                      16, block, block_len, "4012345678909", pin));
        OP("format 3 encrypt",
           mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key, 24, "123456",
                                  "4012345678909", NULL, 0, block, &block_len));
        OP("format 3 decrypt", mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_3, MPOS_CIPHER_TDES, key,
                                                      24, block, block_len, "4012345678909", pin));
        OP("format 4 encrypt",
           mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, "1234",
                                  "4111111111111111", NULL, 0, block, &block_len));
        OP("format 4 decrypt",
           mpos_pin_block_decrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_AES, key, 16, block,
                                  block_len, "4111111111111111", pin));
        OP("format 4 sm4 encrypt",
           mpos_pin_block_encrypt(&cc, MPOS_PIN_FORMAT_4, MPOS_CIPHER_SM4, key, 16, "1234",
                                  "4111111111111111", NULL, 0, block, &block_len));
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_mac
    {
        static const uint8_t msg[45] = {0x4E, 0x6F, 0x77, 0x20, 0x69, 0x73};
        uint8_t mac[16], mac3[8];
        mpos_mac_ctx ctx;
        current_case = "mac";
        OP("iso9797-1 alg 1", mpos_mac_iso9797_alg1(&cc, key, 8, MPOS_MAC_PAD_1, msg, 45, mac));
        OP("iso9797-1 alg 3", mpos_mac_iso9797_alg3(&cc, key, 16, MPOS_MAC_PAD_2, msg, 45, mac3));
        OP("cup-ecb", mpos_mac_cup_ecb(&cc, MPOS_CIPHER_TDES, key, 8, msg, 45, mac));
        OP("cup-ecb sm4", mpos_mac_cup_ecb(&cc, MPOS_CIPHER_SM4, key, 16, msg, 45, mac));
        OP("incremental init", mpos_mac_init(&ctx, &cc, MPOS_MAC_ALG_ISO9797_3, MPOS_CIPHER_TDES,
                                             MPOS_MAC_PAD_2, key, 16));
        OP("incremental update", mpos_mac_update(&ctx, msg, 13));
        OP("incremental update", mpos_mac_update(&ctx, msg + 13, 32));
        OP("incremental verify", mpos_mac_final_verify(&ctx, mac3, 8));
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_kcv
    {
        uint8_t kcv[16];
        current_case = "kcv";
        OP("legacy tdes",
           mpos_kcv_compute(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, kcv, 3));
        OP("legacy verify",
           mpos_kcv_verify(&cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key, 16, kcv, 3));
        OP("cmac aes", mpos_kcv_compute(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 32, kcv, 5));
        OP("cmac verify", mpos_kcv_verify(&cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key, 32, kcv, 5));
        OP("legacy sm4", mpos_kcv_compute(&cc, MPOS_CIPHER_SM4, MPOS_KCV_LEGACY, key, 16, kcv, 3));
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_tr31
    {
        static const char hdr_d[] = "D0000P0AE00E0000";
        static const char hdr_b[] = "B0000P0TE00E0000";
        char block[MPOS_TR31_MAX_BLOCK_LEN + 1];
        size_t block_len = 0, key_len = 0;
        current_case = "tr31";
        OP("wrap d", mpos_tr31_wrap(&cc, key, 32, hdr_d, sizeof(hdr_d) - 1, key_material, 16, NULL,
                                    0, block, sizeof(block), &block_len));
        OP("unwrap d",
           mpos_tr31_unwrap(&cc, key, 32, block, block_len, &tr31_hdr, out, sizeof(out), &key_len));
        OP("wrap b", mpos_tr31_wrap(&cc, key, 16, hdr_b, sizeof(hdr_b) - 1, key_material, 16, NULL,
                                    0, block, sizeof(block), &block_len));
        OP("unwrap b",
           mpos_tr31_unwrap(&cc, key, 16, block, block_len, &tr31_hdr, out, sizeof(out), &key_len));
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_emv
    {
        static const uint8_t atc[2] = {0x00, 0x1C}, arc[2] = {0x30, 0x30};
        static const uint8_t csu[4] = {0x00, 0x80, 0x00, 0x00};
        uint8_t mk[16], sk[16], data[MPOS_EMV_AC_MIN_DATA_LEN], ac[8], arpc[8], iad[10];
        memset(data, seed, sizeof(data));
        current_case = "emv";
        OP("icc mk option a", mpos_emv_derive_icc_mk(&cc, MPOS_EMV_MK_OPTION_A, key, 16,
                                                     "5413330089600010", "01", mk));
        OP("session key", mpos_emv_derive_sk(&cc, MPOS_EMV_SK_COMMON, mk, 16, atc, sk));
        OP("pboc session key", mpos_emv_derive_sk(&cc, MPOS_EMV_SK_PBOC, mk, 16, atc, sk));
        OP("arqc", mpos_emv_ac_generate(&cc, sk, 16, data, sizeof(data), ac));
        OP("arqc verify", mpos_emv_ac_verify(&cc, sk, 16, data, sizeof(data), ac));
        OP("arpc 1", mpos_emv_arpc1_generate(&cc, sk, 16, ac, arc, arpc));
        memcpy(iad, arpc, 8);
        memcpy(iad + 8, arc, 2);
        OP("issuer auth verify 1",
           mpos_emv_issuer_auth_verify(&cc, MPOS_EMV_ARPC_METHOD_1, sk, 16, ac, iad, 10));
        OP("arpc 2", mpos_emv_arpc2_generate(&cc, sk, 16, ac, csu, NULL, 0, arpc));
        OP("arpc 2 verify", mpos_emv_arpc2_verify(&cc, sk, 16, ac, csu, NULL, 0, arpc));
    }
#endif
#ifdef MPOS_NOALLOC_HAVE_mkwk
    {
        uint8_t enc[16], kcv[8], wk[16];
        current_case = "mkwk";
        OP("wrap", mpos_mkwk_wrap(&cc, MPOS_CIPHER_TDES, key, 16, key_material, 16, enc, kcv, 4));
        OP("unwrap", mpos_mkwk_unwrap(&cc, MPOS_CIPHER_TDES, key, 16, enc, 16, kcv, 4, wk));
        OP("sm4 wrap",
           mpos_mkwk_wrap(&cc, MPOS_CIPHER_SM4, key, 16, key_material, 16, enc, kcv, 4));
        OP("sm4 unwrap", mpos_mkwk_unwrap(&cc, MPOS_CIPHER_SM4, key, 16, enc, 16, kcv, 4, wk));
    }
#endif
}

static int setup(void **state)
{
    (void)state;
    return mpos_crypto_init(&cc) == MPOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mpos_crypto_clear(&cc);
    return 0;
}

/* The counter itself: an allocation while counting is seen (else a 0 would prove nothing). */
static void test_counter_works(void **state)
{
    (void)state;
    start_counting();
    current_case = "self-check";
    current_op = "malloc+free";
#ifndef NOALLOC_ASAN
    void *volatile p = malloc(32);
    free(p);
#else
    void *volatile p = OPENSSL_malloc(32);
    OPENSSL_free(p);
#endif
    assert_int_equal(stop_counting(0), 2);
}

static void run_rounds(void (*ops)(uint8_t), void (*load)(void))
{
    unsigned rounds = 100 / tu_scale();
    failures = 0;
    start_counting();
    if (load != NULL) {
        load();
    }
    for (unsigned r = 0; r < rounds; r++) {
        ops((uint8_t)r);
    }
    unsigned long n = stop_counting(1);
    if (failures != 0) {
        fail_msg("%d operation(s) failed, the first '%s / %s'", failures, failed_case, failed_op);
    }
    assert_int_equal(n, 0);
}

/* Every facade operation, from the first call after mpos_crypto_init() on. */
static void test_facade_noalloc(void **state)
{
    (void)state;
    run_rounds(facade_ops, NULL);
}

/* The main operation of every module library that is linked. */
static void test_modules_noalloc(void **state)
{
    (void)state;
    run_rounds(module_ops, module_load);
}

/* libcrypto's DRBGs reseed themselves: the thread's public DRBG every 2^16 requests (or 7
 * minutes) with 32 bytes from the primary DRBG, in a buffer from OPENSSL_secure_malloc (plain
 * malloc unless the process set up a secure heap) that is freed right after; the primary every
 * 2^8 of those (or hourly) from the OS, through a RAND_POOL. That is periodic, not per
 * operation. This test pins it down: across 3 * 2^16 + 1000 requests at most one malloc and one
 * free per reseed, so a per-request allocation would still fail here. */
static void test_rng_reseed_bounded(void **state)
{
    (void)state;
    enum { RESEED_REQUESTS = 1 << 16, CALLS = 3 * RESEED_REQUESTS + 1000 };
    uint8_t out[8];
    failures = 0;
    current_case = "rng";
    start_counting();
    for (unsigned i = 0; i < CALLS; i++) {
        OP("random 8 (reseed)", mpos_random_bytes(out, sizeof(out)));
    }
    unsigned long n = stop_counting(0);
    print_message("rng: %lu allocation(s) and free(s) over %d requests (reseeds)\n", n, CALLS);
    assert_int_equal(failures, 0);
    assert_true(n <= 2 * (CALLS / RESEED_REQUESTS + 1));
}

int main(void)
{
    install_counter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_works),
        cmocka_unit_test(test_facade_noalloc),
        cmocka_unit_test(test_modules_noalloc),
        cmocka_unit_test(test_rng_reseed_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
