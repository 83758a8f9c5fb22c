/* openmpos: AES-NI path for DUKPT's "one block under a fresh key" pattern.
 *
 * libcrypto is the reference: this file only exists because X9.24-3 host derivation costs
 * up to 18 dependent AES operations, each under a new key, and re-keying an EVP context costs
 * more than the whole AES-NI computation. The round keys are computed on the fly with the
 * AESENCLAST key-expansion form (FIPS 197 5.2: SubWord(RotWord(w)) xor Rcon, where
 * AESENCLAST on a broadcast word is SubWord because ShiftRows moves equal columns), so the
 * encryption rounds overlap the expansion. Every result is cross-checked against libcrypto
 * in tests/unit/test_crypto.c.
 */
#include "aes_ni.h"

#if defined(MPOS_HAVE_AESNI)

#include <immintrin.h>
#include <string.h>

#include "mpos/util.h"

int mpos_aesni_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("ssse3");
}

/* w0..w3 -> w0, w0^w1, w0^w1^w2, w0^w1^w2^w3 (the chained XOR of FIPS 197 5.2). */
static inline __m128i prefix_xor(__m128i k)
{
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, _mm_slli_si128(k, 8));
}

/* Next four words when the word before them needs SubWord(RotWord(.)) xor Rcon. */
static inline __m128i next_rot(__m128i prev4, __m128i last4, int rcon)
{
    const __m128i rot_bcast = _mm_set1_epi32(0x0c0f0e0d); /* RotWord of word 3, in every lane */
    __m128i t = _mm_aesenclast_si128(_mm_shuffle_epi8(last4, rot_bcast), _mm_set1_epi32(rcon));
    return _mm_xor_si128(prefix_xor(prev4), t);
}

/* AES-256's odd steps: SubWord only (FIPS 197 5.2, Nk > 6 and i mod Nk = 4). */
static inline __m128i next_sub(__m128i prev4, __m128i last4)
{
    const __m128i bcast = _mm_set1_epi32(0x0f0e0d0c); /* word 3 in every lane */
    __m128i t = _mm_aesenclast_si128(_mm_shuffle_epi8(last4, bcast), _mm_setzero_si128());
    return _mm_xor_si128(prefix_xor(prev4), t);
}

static __m128i encrypt128(const uint8_t *key, __m128i s)
{
    __m128i k = _mm_loadu_si128((const __m128i *)key);
    s = _mm_xor_si128(s, k);
    k = next_rot(k, k, 0x01);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x02);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x04);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x08);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x10);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x20);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x40);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x80);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x1b);
    s = _mm_aesenc_si128(s, k);
    k = next_rot(k, k, 0x36);
    s = _mm_aesenclast_si128(s, k);
    k = _mm_setzero_si128();
    return s;
}

static __m128i encrypt256(const uint8_t *key, __m128i s)
{
    __m128i a = _mm_loadu_si128((const __m128i *)key);
    __m128i b = _mm_loadu_si128((const __m128i *)(key + 16));
    static const int rcon[7] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40};
    s = _mm_xor_si128(s, a);
    s = _mm_aesenc_si128(s, b);
    for (int i = 0; i < 6; i++) {
        a = next_rot(a, b, rcon[i]);
        s = _mm_aesenc_si128(s, a);
        b = next_sub(b, a);
        s = _mm_aesenc_si128(s, b);
    }
    a = next_rot(a, b, rcon[6]);
    s = _mm_aesenclast_si128(s, a);
    a = _mm_setzero_si128();
    b = _mm_setzero_si128();
    return s;
}

/* SubWord of one little-endian word: AESENCLAST on the word broadcast, round key 0. */
static uint32_t sub_word(uint32_t w)
{
    __m128i t = _mm_aesenclast_si128(_mm_set1_epi32((int)w), _mm_setzero_si128());
    return (uint32_t)_mm_cvtsi128_si32(t);
}

/* AES-192 is rare in payments: the plain word-by-word expansion of FIPS 197 5.2. */
static __m128i encrypt192(const uint8_t *key, __m128i s)
{
    uint32_t w[52];
    uint8_t rcon = 0x01;
    memcpy(w, key, 24);
    for (int i = 6; i < 52; i++) {
        uint32_t t = w[i - 1];
        if (i % 6 == 0) {
            t = sub_word((t >> 8) | (t << 24)) ^ rcon;
            rcon = (uint8_t)((rcon << 1) ^ ((rcon & 0x80) ? 0x1b : 0));
        }
        w[i] = w[i - 6] ^ t;
    }
    s = _mm_xor_si128(s, _mm_loadu_si128((const __m128i *)&w[0]));
    for (int r = 1; r < 12; r++) {
        s = _mm_aesenc_si128(s, _mm_loadu_si128((const __m128i *)&w[4 * r]));
    }
    s = _mm_aesenclast_si128(s, _mm_loadu_si128((const __m128i *)&w[48]));
    MPOS_WIPE_BUFFER(w);
    return s;
}

void mpos_aesni_encrypt_block(const uint8_t *key, size_t key_len, const uint8_t in[16],
                              uint8_t out[16])
{
    __m128i s = _mm_loadu_si128((const __m128i *)in);
    if (key_len == 16) {
        s = encrypt128(key, s);
    } else if (key_len == 32) {
        s = encrypt256(key, s);
    } else {
        s = encrypt192(key, s);
    }
    _mm_storeu_si128((__m128i *)out, s);
}

#else /* !MPOS_HAVE_AESNI */

int mpos_aesni_supported(void)
{
    return 0;
}

void mpos_aesni_encrypt_block(const uint8_t *key, size_t key_len, const uint8_t in[16],
                              uint8_t out[16])
{
    (void)key;
    (void)key_len;
    (void)in;
    (void)out;
}

#endif
