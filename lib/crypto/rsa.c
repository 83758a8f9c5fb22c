/* openmpos: raw RSA public operation (mpos/rsa.h), portable C.
 *
 * Numbers are little-endian arrays of 32-bit limbs. Modular exponentiation is left-to-right
 * square-and-multiply in the Montgomery domain (Montgomery, "Modular multiplication without
 * trial division", Math. Comp. 44, 1985; the CIOS loop of Koc, Acar and Kaliski, "Analyzing
 * and comparing Montgomery multiplication algorithms", IEEE Micro 16(3), 1996).
 * RSA itself: PKCS #1 v2.2 (RFC 8017) 5.1.1 RSAEP, c = m ^ e mod n, with the m < n check.
 */
#include <string.h>

#include "mpos/rsa.h"
#include "mpos/util.h"

#define LIMBS ((MPOS_RSA_MAX_MOD_LEN + 3) / 4)

struct mont {
    uint32_t n[LIMBS];
    size_t nl;     /* limbs in use */
    uint32_t n0inv; /* -n^-1 mod 2^32 */
};

/* Big-endian bytes to nl limbs (len <= 4 * nl). */
static void from_bytes(uint32_t *x, size_t nl, const uint8_t *b, size_t len)
{
    memset(x, 0, nl * sizeof(*x));
    for (size_t i = 0; i < len; i++) {
        size_t bit = 8 * (len - 1 - i);
        x[bit / 32] |= (uint32_t)b[i] << (bit % 32);
    }
}

static void to_bytes(uint8_t *b, size_t len, const uint32_t *x)
{
    for (size_t i = 0; i < len; i++) {
        size_t bit = 8 * (len - 1 - i);
        b[i] = (uint8_t)(x[bit / 32] >> (bit % 32));
    }
}

/* 1 if a >= b (nl limbs each). */
static int geq(const uint32_t *a, const uint32_t *b, size_t nl)
{
    for (size_t i = nl; i-- > 0;) {
        if (a[i] != b[i]) {
            return a[i] > b[i];
        }
    }
    return 1;
}

/* a -= b (nl limbs), returns the borrow. */
static uint32_t sub(uint32_t *a, const uint32_t *b, size_t nl)
{
    uint64_t borrow = 0;
    for (size_t i = 0; i < nl; i++) {
        uint64_t d = (uint64_t)a[i] - b[i] - borrow;
        a[i] = (uint32_t)d;
        borrow = (d >> 32) & 1u;
    }
    return (uint32_t)borrow;
}

/* out = a * b * 2^(-32 nl) mod n, for a, b < n (CIOS). out may alias a or b. */
static void mont_mul(const struct mont *m, uint32_t *out, const uint32_t *a, const uint32_t *b)
{
    uint32_t t[LIMBS + 2];
    size_t nl = m->nl;
    memset(t, 0, sizeof(t));
    for (size_t i = 0; i < nl; i++) {
        uint64_t c = 0;
        for (size_t j = 0; j < nl; j++) {
            uint64_t s = (uint64_t)t[j] + (uint64_t)a[j] * b[i] + c;
            t[j] = (uint32_t)s;
            c = s >> 32;
        }
        uint64_t s = (uint64_t)t[nl] + c;
        t[nl] = (uint32_t)s;
        t[nl + 1] = (uint32_t)(s >> 32);

        uint32_t q = t[0] * m->n0inv;
        s = (uint64_t)t[0] + (uint64_t)q * m->n[0];
        c = s >> 32;
        for (size_t j = 1; j < nl; j++) {
            s = (uint64_t)t[j] + (uint64_t)q * m->n[j] + c;
            t[j - 1] = (uint32_t)s;
            c = s >> 32;
        }
        s = (uint64_t)t[nl] + c;
        t[nl - 1] = (uint32_t)s;
        t[nl] = t[nl + 1] + (uint32_t)(s >> 32);
    }
    /* t < 2n: one conditional subtraction. */
    if (t[nl] != 0 || geq(t, m->n, nl)) {
        (void)sub(t, m->n, nl);
    }
    memcpy(out, t, nl * sizeof(*out));
}

/* r = 2^(64 nl) mod n by doubling, the constant that moves a number into the domain. */
static void mont_r2(const struct mont *m, uint32_t *r)
{
    size_t nl = m->nl;
    memset(r, 0, nl * sizeof(*r));
    r[0] = 1;
    for (size_t k = 0; k < 64 * nl; k++) {
        uint32_t carry = r[nl - 1] >> 31;
        for (size_t i = nl; i-- > 1;) {
            r[i] = (r[i] << 1) | (r[i - 1] >> 31);
        }
        r[0] <<= 1;
        if (carry != 0 || geq(r, m->n, nl)) {
            (void)sub(r, m->n, nl);
        }
    }
}

int mpos_rsa_public(const uint8_t *mod, size_t mod_len, const uint8_t *exp, size_t exp_len,
                    const uint8_t *in, size_t in_len, uint8_t *out)
{
    struct mont m;
    uint32_t x[LIMBS], acc[LIMBS], r2[LIMBS], one[LIMBS];
    uint32_t e = 0;
    int r = MPOS_OK;
    if (mod == NULL || exp == NULL || in == NULL || out == NULL) {
        r = MPOS_ERR_ARG;
        goto exit;
    }
    if (mod_len == 0 || mod_len > MPOS_RSA_MAX_MOD_LEN || mod[0] == 0 ||
        (mod[mod_len - 1] & 1u) == 0 || (mod_len == 1 && mod[0] == 1)) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    if (exp_len == 0 || exp_len > MPOS_RSA_MAX_EXP_LEN) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    for (size_t i = 0; i < exp_len; i++) {
        e = (e << 8) | exp[i];
    }
    if (e == 0) {
        r = MPOS_ERR_KEY;
        goto exit;
    }
    if (in_len != mod_len) {
        r = MPOS_ERR_LENGTH;
        goto exit;
    }
    m.nl = (mod_len + 3) / 4;
    from_bytes(m.n, m.nl, mod, mod_len);
    from_bytes(x, m.nl, in, in_len);
    /* RFC 8017 5.1.1 step 1: the message representative must be below n. */
    if (geq(x, m.n, m.nl)) {
        r = MPOS_ERR_FORMAT;
        goto exit;
    }
    /* n0inv = -n^-1 mod 2^32 by Newton iteration (each step doubles the correct bits). */
    uint32_t inv = 1;
    for (int i = 0; i < 5; i++) {
        inv *= 2u - m.n[0] * inv;
    }
    m.n0inv = (uint32_t)0 - inv;

    mont_r2(&m, r2);
    mont_mul(&m, x, x, r2); /* x R mod n */
    memcpy(acc, x, m.nl * sizeof(*acc));
    int top = 31;
    while (((e >> top) & 1u) == 0) {
        top--;
    }
    for (int bit = top - 1; bit >= 0; bit--) {
        mont_mul(&m, acc, acc, acc);
        if (((e >> bit) & 1u) != 0) {
            mont_mul(&m, acc, acc, x);
        }
    }
    memset(one, 0, sizeof(one));
    one[0] = 1;
    mont_mul(&m, acc, acc, one); /* out of the domain */
    to_bytes(out, mod_len, acc);

exit:
    if (r != MPOS_OK && out != NULL && mod_len <= MPOS_RSA_MAX_MOD_LEN) {
        mpos_cleanse(out, mod_len);
    }
    MPOS_WIPE_BUFFER(x);
    MPOS_WIPE_BUFFER(acc);
    return r;
}
