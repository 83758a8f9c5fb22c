/* mpos-hsmd: the key vault (vault.h): locked arena, LMK from components, KBPK derivation, key
 * blocks under the KBPK and usage enforcement. The PKCS#11 LMK is in lmk_pkcs11.c. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise, MADV_DONTDUMP */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mpos/kcv.h"
#include "mpos/util.h"
#include "vault_int.h"

#define KDF_MAX_OUT_LEN 1024 /* far below the 2^32 - 1 blocks SP 800-108 allows with r = 32 */

/* Template of a key block header we write: 16 fixed characters, then block 91 with
 * "MP1" + one attribute (ID 2 + length 2 + 5 characters = 9). */
#define OWN_BLOCK_LEN    9
#define OWN_BLOCK_PREFIX "MP1"
#define TEMPLATE_MAX_LEN (MPOS_TR31_FIXED_HEADER_LEN + OWN_BLOCK_LEN)

/* Key blocks under the LMK carry SM4 keys and EC private scalars through lib/tr31's
 * extensions HSM_KEYBLOCK_TR31_EXT (vault.h), the same code as every other key. */
_Static_assert(HSM_ALG_SM4 == MPOS_TR31_ALG_SM4, "the vault's SM4 code is lib/tr31's");

int hsm_vault_refuse(hsm_vault *v, int rc, const char *why)
{
    if (v != NULL) {
        v->why = why;
    }
    return rc;
}

int hsm_vault_check_closed(hsm_vault *v)
{
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    if (v->arena == NULL || !v->cc.ready) {
        return hsm_vault_refuse(v, MPOS_ERR_ARG, "vault not initialised (hsm_vault_init)");
    }
    if (v->open) {
        return hsm_vault_refuse(v, MPOS_ERR_ARG, "vault already open");
    }
    return MPOS_OK;
}

void hsm_vault_wipe_keys(hsm_vault *v)
{
    if (v->arena != NULL) {
        mpos_cleanse(v->arena, v->arena_len);
    }
    MPOS_WIPE_BUFFER(v->lmk_kcv);
    v->open = 0;
}

int hsm_vault_init(hsm_vault *v)
{
    int rc = MPOS_ERR_CRYPTO;
    const char *why = NULL;
    uint8_t *base = MAP_FAILED;
    uint8_t *arena = NULL;
    size_t page = 0;
    long ps;
    int locked = 0;
    if (v == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(v, 0, sizeof(*v));
    ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0 || (size_t)ps < HSM_ARENA_SCRATCH_OFF + HSM_ARENA_SCRATCH_LEN) {
        why = "cannot determine the page size";
        goto exit;
    }
    page = (size_t)ps;
    /* One read-write page between two PROT_NONE guard pages: a linear overrun from a
     * neighbouring buffer faults instead of reaching the keys. */
    base = mmap(NULL, 3 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        why = "cannot map the key arena";
        goto exit;
    }
    arena = base + page;
    if (mprotect(arena, page, PROT_READ | PROT_WRITE) != 0) {
        why = "cannot map the key arena";
        goto exit;
    }
    /* Never swapped: refuse to run rather than hold keys in pageable memory. */
    if (mlock(arena, page) != 0) {
        int e = errno;
        fprintf(stderr,
                "mpos-hsmd: cannot lock the key arena in memory (mlock: %s). Raise the locked-"
                "memory limit (ulimit -l, systemd LimitMEMLOCK=) or grant CAP_IPC_LOCK; "
                "refusing to hold keys in swappable memory.\n",
                strerror(e));
        why = "mlock of the key arena failed (RLIMIT_MEMLOCK?)";
        goto exit;
    }
    locked = 1;
    /* Not in core dumps; not inherited by a child (a fork that touched the arena faults
     * rather than sharing or zeroing keys). */
    if (madvise(arena, page, MADV_DONTDUMP) != 0) {
        why = "madvise(MADV_DONTDUMP) of the key arena failed";
        goto exit;
    }
    if (madvise(arena, page, MADV_DONTFORK) != 0) {
        why = "madvise(MADV_DONTFORK) of the key arena failed";
        goto exit;
    }
    mpos_cleanse(arena, page);
    if (mpos_crypto_init(&v->cc) != MPOS_OK) {
        why = "crypto context initialisation failed";
        goto exit;
    }
    v->arena = arena;
    v->arena_len = page;
    v->lmk = arena + HSM_ARENA_LMK_OFF;
    v->kbpk = arena + HSM_ARENA_KBPK_OFF;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        if (locked) {
            (void)munlock(arena, page);
        }
        if (base != MAP_FAILED) {
            (void)munmap(base, 3 * page);
        }
        memset(v, 0, sizeof(*v));
        v->why = why;
    }
    return rc;
}

void hsm_vault_close(hsm_vault *v)
{
    if (v == NULL) {
        return;
    }
    if (v->arena != NULL) {
        (void)mprotect(v->arena, v->arena_len, PROT_READ | PROT_WRITE); /* undo a seal */
        mpos_cleanse(v->arena, v->arena_len);
        (void)munlock(v->arena, v->arena_len);
        (void)munmap(v->arena - v->arena_len, 3 * v->arena_len);
    }
    if (v->cc.ready) {
        mpos_crypto_clear(&v->cc);
    }
    MPOS_WIPE_CTX(v);
}

int hsm_vault_seal(hsm_vault *v)
{
    if (v == NULL || v->arena == NULL || !v->open) {
        return hsm_vault_refuse(v, MPOS_ERR_ARG, "vault not open");
    }
    if (mprotect(v->arena, v->arena_len, PROT_READ) != 0) {
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "mprotect of the key arena failed");
    }
    return MPOS_OK;
}

int hsm_kdf_cmac(mpos_crypto_ctx *cc, const uint8_t *key, size_t key_len, const uint8_t *fixed,
                 size_t fixed_len, uint8_t *out, size_t out_len)
{
    int rc = MPOS_OK;
    uint8_t data[4 + HSM_KDF_MAX_FIXED_LEN];
    uint8_t block[MPOS_AES_BLOCK_LEN];
    size_t done = 0;
    uint32_t i = 1;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc == NULL || key == NULL || (fixed == NULL && fixed_len > 0)) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    if (fixed_len > HSM_KDF_MAX_FIXED_LEN || out_len == 0 || out_len > KDF_MAX_OUT_LEN) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    if (!mpos_cipher_key_len_valid(MPOS_CIPHER_AES, key_len)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    if (fixed_len > 0) {
        memcpy(data + 4, fixed, fixed_len);
    }
    /* SP 800-108r1 4.1 (counter mode), r = 32, counter before the fixed input data:
     * n = ceil(L / h); for i = 1..n: K(i) = PRF(K_IN, [i]_32 || fixed); the result is the
     * leftmost L bits of K(1) || ... || K(n). PRF = AES-CMAC (SP 800-38B), h = 128. */
    for (; done < out_len; i++) {
        size_t n = out_len - done < sizeof(block) ? out_len - done : sizeof(block);
        mpos_store_be32(data, i);
        rc = mpos_cmac(cc, MPOS_CIPHER_AES, key, key_len, data, 4 + fixed_len, block);
        if (rc != MPOS_OK) {
            goto exit;
        }
        memcpy(out + done, block, n);
        done += n;
    }
exit:
    MPOS_WIPE_BUFFER(block);
    MPOS_WIPE_BUFFER(data);
    if (rc != MPOS_OK) {
        mpos_cleanse(out, out_len);
    }
    return rc;
}

int hsm_kbpk_derive(mpos_crypto_ctx *cc, const uint8_t lmk[HSM_LMK_LEN], uint8_t kbpk[HSM_LMK_LEN])
{
    /* SP 800-108r1 4.1 fixed input data: Label || 0x00 || Context || [L]_32, with
     * Label = "openmpos LMK key blocks" (ASCII, no terminator), Context empty, L = 256. */
    static const char label[] = HSM_KBPK_KDF_LABEL;
    uint8_t fixed[sizeof(label) - 1 + 1 + 4];
    memcpy(fixed, label, sizeof(label) - 1);
    fixed[sizeof(label) - 1] = 0x00;
    mpos_store_be32(fixed + sizeof(label), HSM_LMK_LEN * 8);
    return hsm_kdf_cmac(cc, lmk, HSM_LMK_LEN, fixed, sizeof(fixed), kbpk, HSM_LMK_LEN);
}

int hsm_vault_finish_open(hsm_vault *v)
{
    int rc = hsm_kbpk_derive(&v->cc, v->lmk, v->kbpk);
    if (rc != MPOS_OK) {
        hsm_vault_wipe_keys(v);
        return hsm_vault_refuse(v, rc, "KBPK derivation failed");
    }
    /* The LMK's check value, shown to operators: CMAC method, X9.24-1:2017 A.3. */
    rc = mpos_kcv_compute(&v->cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, v->lmk, HSM_LMK_LEN, v->lmk_kcv,
                          HSM_KCV_LEN);
    if (rc != MPOS_OK) {
        hsm_vault_wipe_keys(v);
        return hsm_vault_refuse(v, rc, "LMK check value failed");
    }
    v->open = 1;
    v->why = NULL;
    return MPOS_OK;
}

/* 1 if the len bytes at p are all zero. Branches only on the aggregate, not on any byte. */
static int all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= p[i];
    }
    return mpos_ct_byte_is_zero(acc) != 0;
}

int hsm_vault_open_components(hsm_vault *v, const uint8_t comps[][HSM_LMK_LEN], size_t n,
                              const uint8_t kcvs[][HSM_KCV_LEN])
{
    static const char *const zero_why[HSM_MAX_COMPONENTS] = {
        "component 1 is all zeros", "component 2 is all zeros", "component 3 is all zeros"};
    static const char *const kcv_why[HSM_MAX_COMPONENTS] = {
        "component 1: check value does not match", "component 2: check value does not match",
        "component 3: check value does not match"};
    int rc = hsm_vault_check_closed(v);
    if (rc != MPOS_OK) {
        return rc;
    }
    v->why = NULL;
    if (comps == NULL || kcvs == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "no components");
        goto exit;
    }
    if (n < 2 || n > HSM_MAX_COMPONENTS) {
        rc = hsm_vault_refuse(v, MPOS_ERR_LENGTH, "the LMK takes 2 or 3 components");
        goto exit;
    }
    for (size_t i = 0; i < n; i++) {
        if (all_zero(comps[i], HSM_LMK_LEN)) {
            rc = hsm_vault_refuse(v, MPOS_ERR_KEY, zero_why[i]);
            goto exit;
        }
        /* X9.24-1:2017 A.3 CMAC check value of the component, compared in constant time. */
        rc = mpos_kcv_verify(&v->cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, comps[i], HSM_LMK_LEN, kcvs[i],
                             HSM_KCV_LEN);
        if (rc != MPOS_OK) {
            rc = hsm_vault_refuse(
                v, rc, rc == MPOS_ERR_VERIFY ? kcv_why[i] : "component check value failed");
            goto exit;
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (mpos_ct_equal(comps[i], comps[j], HSM_LMK_LEN)) {
                rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "two components are equal");
                goto exit;
            }
        }
    }
    /* Key components combined by XOR (X9.24-1:2017 6.4, dual control / split knowledge). */
    memcpy(v->lmk, comps[0], HSM_LMK_LEN);
    for (size_t i = 1; i < n; i++) {
        mpos_xor(v->lmk, comps[i], HSM_LMK_LEN);
    }
    if (all_zero(v->lmk, HSM_LMK_LEN)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "the components combine to an all-zero key");
        goto exit;
    }
    rc = hsm_vault_finish_open(v);
exit:
    if (rc != MPOS_OK) {
        const char *why = v->why;
        hsm_vault_wipe_keys(v);
        v->why = why;
    }
    return rc;
}

/* ---- key attributes and key blocks ---- */

static int usage_is(const char *usage, const char *code)
{
    return usage[0] == code[0] && usage[1] == code[1];
}

/* The algorithms of the keys the vault stores (vault.h hsm_key_attr). */
static int algorithm_stored(char algorithm)
{
    static const char stored[] = {'A', 'T', 'H', 'D', 'E', HSM_ALG_SM4, '\0'};
    return algorithm != '\0' && strchr(stored, algorithm) != NULL;
}

/* vault.h: dukpt is 1 (AES DUKPT) for an AES B0/B1 key, 2 (TDES DUKPT) for a TDES one. */
static int dukpt_valid(const struct hsm_key_attr *a)
{
    int bdk = usage_is(a->usage, "B0") || usage_is(a->usage, "B1");
    if (a->dukpt == 0) {
        return 1;
    }
    return bdk &&
           ((a->dukpt == 1 && a->algorithm == 'A') || (a->dukpt == 2 && a->algorithm == 'T'));
}

/* Builds the header template for attr and has lib/tr31 validate it (X9.143:2021 6.2, 6.3). */
static int build_template(hsm_vault *v, const struct hsm_key_attr *a, char t[TEMPLATE_MAX_LEN + 1],
                          size_t *len)
{
    mpos_tr31_header hdr;
    size_t n = MPOS_TR31_FIXED_HEADER_LEN;
    int rc;
    *len = 0;
    if (a->usage[0] == '\0' || a->usage[1] == '\0' || a->usage[2] != '\0') {
        return hsm_vault_refuse(v, MPOS_ERR_ARG, "key usage is not two characters");
    }
    if (!algorithm_stored(a->algorithm)) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "algorithm is not A, T, H, D, E or 4 (SM4)");
    }
    if (a->exportability != 'E' && a->exportability != 'N') {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "exportability is not E or N");
    }
    if (!dukpt_valid(a)) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY,
                                "dukpt must be 0, or 1 (AES) / 2 (TDES) for a B0 or B1 key");
    }
    /* X9.143:2021 6.2: version D (AES KBPK), length (set by wrap), usage, algorithm, mode of
     * use, key version "00" (none), exportability, optional blocks, key context 1 (a storage
     * key: the KBPK never protects a key for exchange), reserved '0'. */
    memcpy(t, "D0000", 5);
    t[5] = a->usage[0];
    t[6] = a->usage[1];
    t[7] = a->algorithm;
    t[8] = a->mode;
    t[9] = '0';
    t[10] = '0';
    t[11] = a->exportability;
    t[12] = '0';
    t[13] = a->dukpt != 0 ? '1' : '0';
    t[14] = '1';
    t[15] = '0';
    if (a->dukpt != 0) {
        /* X9.143:2021 6.3.6: a numeric (proprietary) optional block, ID 2 + length 2 (hex,
         * the whole block) + data "MP1" "D" scheme. */
        memcpy(t + n, HSM_OPT_BLOCK_ID "09" OWN_BLOCK_PREFIX "D", OWN_BLOCK_LEN - 1);
        t[n + OWN_BLOCK_LEN - 1] = (char)('0' + a->dukpt);
        n += OWN_BLOCK_LEN;
    }
    t[n] = '\0';
    rc = mpos_tr31_header_parse_ext(t, n, MPOS_TR31_PARSE_TEMPLATE, &hdr, HSM_KEYBLOCK_TR31_EXT);
    if (rc != MPOS_OK) {
        return hsm_vault_refuse(v, rc, hdr.why);
    }
    *len = n;
    return MPOS_OK;
}

/* vault.h hsm_key_need: the key modes that permit an operation. */
static int mode_permits(char mode, char operation)
{
    switch (operation) {
    case 'G':
        return mode == 'G' || mode == 'C' || mode == 'B';
    case 'V':
        return mode == 'V' || mode == 'C' || mode == 'B';
    case 'E':
        return mode == 'E' || mode == 'B';
    case 'D':
        return mode == 'D' || mode == 'B';
    case 'X':
        return mode == 'X';
    case 'S':
        return mode == 'S';
    default:
        return 0;
    }
}

static int need_valid(const struct hsm_key_need *need)
{
    if (need == NULL || need->usages == NULL || need->usages[0] == NULL ||
        need->algorithms == NULL || need->algorithms[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; need->usages[i] != NULL; i++) {
        if (strlen(need->usages[i]) != 2) {
            return 0;
        }
    }
    return need->operation != '\0' && strchr("GVEDXS", need->operation) != NULL;
}

/* Checks an attribute set against need (need already valid); why says which part failed. */
static int check_need(const struct hsm_key_attr *a, const struct hsm_key_need *need,
                      const char **why)
{
    int usage_ok = 0;
    for (size_t i = 0; need->usages[i] != NULL; i++) {
        usage_ok |= usage_is(a->usage, need->usages[i]) && a->usage[2] == '\0';
    }
    if (!usage_ok) {
        *why = "key usage not accepted for this argument";
        return MPOS_ERR_USAGE;
    }
    if (a->algorithm == '\0' || strchr(need->algorithms, a->algorithm) == NULL) {
        *why = "key algorithm not accepted for this argument";
        return MPOS_ERR_USAGE;
    }
    if (!mode_permits(a->mode, need->operation)) {
        *why = "key mode of use does not permit the operation";
        return MPOS_ERR_USAGE;
    }
    return MPOS_OK;
}

int hsm_key_check(const hsm_key *key, const struct hsm_key_need *need)
{
    const char *why = NULL;
    if (key == NULL || !need_valid(need)) {
        return MPOS_ERR_ARG;
    }
    return check_need(&key->attr, need, &why);
}

int hsm_key_store(hsm_vault *v, const hsm_key *key, char *block, size_t cap, size_t *block_len)
{
    int rc;
    char t[TEMPLATE_MAX_LEN + 1];
    size_t tlen = 0;
    if (block_len != NULL) {
        *block_len = 0;
    }
    if (v == NULL || key == NULL || block == NULL || block_len == NULL) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    v->why = NULL;
    if (!v->open) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "vault not open");
        goto exit;
    }
    if (key->len > HSM_KEY_MAX_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "key longer than HSM_KEY_MAX_LEN");
        goto exit;
    }
    if ((rc = build_template(v, &key->attr, t, &tlen)) != MPOS_OK) {
        goto exit;
    }
    /* X9.143:2021 7.3 (version D) with key-length obfuscation: random padding to the longest
     * key of the algorithm. */
    rc = mpos_tr31_wrap_ext(&v->cc, v->kbpk, HSM_LMK_LEN, t, tlen, key->bytes, key->len, NULL, 0,
                            block, cap, block_len, HSM_KEYBLOCK_TR31_EXT);
    if (rc == MPOS_ERR_KEY) {
        rc = hsm_vault_refuse(v, rc, "key length not allowed for the algorithm");
    } else if (rc == MPOS_ERR_LENGTH) {
        rc = hsm_vault_refuse(v, rc, "output buffer too small for the key block");
    } else if (rc != MPOS_OK) {
        rc = hsm_vault_refuse(v, rc, "key block wrap failed");
    }
exit:
    if (rc != MPOS_OK && block != NULL && cap > 0) {
        mpos_cleanse(block, cap);
    }
    return rc;
}

/* The data of our proprietary block: "MP1" then "D1" or "D2". 0 and *dukpt set, or -1. */
static int parse_own_block(const char *s, size_t n, uint8_t *dukpt)
{
    if (n != OWN_BLOCK_LEN - 4 || memcmp(s, OWN_BLOCK_PREFIX, 3) != 0 || s[3] != 'D' ||
        (s[4] != '1' && s[4] != '2')) {
        return -1;
    }
    *dukpt = (uint8_t)(s[4] - '0');
    return 0;
}

int hsm_key_load(hsm_vault *v, const char *block, size_t block_len, const struct hsm_key_need *need,
                 hsm_key *out)
{
    int rc;
    mpos_tr31_header hdr;
    const struct mpos_tr31_opt_block *own;
    const char *why = NULL;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    hsm_key_clear(out);
    if (v == NULL || block == NULL) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    v->why = NULL;
    if (!v->open) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "vault not open");
        goto exit;
    }
    if (!need_valid(need)) {
        rc =
            hsm_vault_refuse(v, MPOS_ERR_ARG, "malformed key need (usages, algorithms, operation)");
        goto exit;
    }
    if (block_len > HSM_KEYBLOCK_MAX_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_LENGTH, "key block longer than HSM_KEYBLOCK_MAX_LEN");
        goto exit;
    }
    /* X9.143:2021 7.3.3: header checks, decryption, MAC verified in constant time before the
     * key is released. Any failure here is "does not verify" for the caller. */
    hdr.why = NULL;
    rc = mpos_tr31_unwrap_ext(&v->cc, v->kbpk, HSM_LMK_LEN, block, block_len, &hdr, out->bytes,
                              sizeof(out->bytes), &out->len, HSM_KEYBLOCK_TR31_EXT);
    if (rc != MPOS_OK) {
        rc = hsm_vault_refuse(v, MPOS_ERR_VERIFY,
                              hdr.why != NULL ? hdr.why : "key block does not verify");
        goto exit;
    }
    /* Authentic: only a holder of this LMK made it. Still refuse what we never write. */
    if (!algorithm_stored(hdr.algorithm)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "key block algorithm is not one the vault stores");
        goto exit;
    }
    if (hdr.exportability != 'E' && hdr.exportability != 'N') {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "key block exportability is not E or N");
        goto exit;
    }
    memcpy(out->attr.usage, hdr.key_usage, 2);
    out->attr.usage[2] = '\0';
    out->attr.algorithm = hdr.algorithm;
    out->attr.mode = hdr.mode_of_use;
    out->attr.exportability = hdr.exportability;
    out->attr.dukpt = 0;
    own = mpos_tr31_header_find(&hdr, HSM_OPT_BLOCK_ID);
    if (own != NULL && parse_own_block(hdr.text + own->offset, own->len, &out->attr.dukpt) != 0) {
        rc = hsm_vault_refuse(v, MPOS_ERR_FORMAT, "optional block 91 is not openmpos MP1 data");
        goto exit;
    }
    if (!dukpt_valid(&out->attr)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_FORMAT, "DUKPT attribute on a key that cannot carry it");
        goto exit;
    }
    if ((rc = check_need(&out->attr, need, &why)) != MPOS_OK) {
        rc = hsm_vault_refuse(v, rc, why);
        goto exit;
    }
exit:
    if (rc != MPOS_OK) {
        hsm_key_clear(out);
    }
    return rc;
}

int hsm_key_generate(hsm_vault *v, const struct hsm_key_attr *attr, size_t len, hsm_key *out)
{
    int rc;
    char t[TEMPLATE_MAX_LEN + 1];
    size_t tlen = 0;
    if (out == NULL) {
        return MPOS_ERR_ARG;
    }
    hsm_key_clear(out);
    if (v == NULL || attr == NULL) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    v->why = NULL;
    if (!v->cc.ready) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "vault not initialised (hsm_vault_init)");
        goto exit;
    }
    /* Only keys hsm_key_store will accept. */
    if ((rc = build_template(v, attr, t, &tlen)) != MPOS_OK) {
        goto exit;
    }
    if (attr->algorithm == 'E') {
        rc = hsm_vault_refuse(v, MPOS_ERR_UNSUPPORTED,
                              "EC keys are generated as key pairs by the command, then stored");
        goto exit;
    }
    if (len > HSM_KEY_MAX_LEN ||
        !mpos_tr31_key_len_valid_ext(attr->algorithm, len, HSM_KEYBLOCK_TR31_EXT)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "key length not allowed for the algorithm");
        goto exit;
    }
    for (int attempt = 0;; attempt++) {
        if ((rc = mpos_random_bytes(out->bytes, len)) != MPOS_OK) {
            rc = hsm_vault_refuse(v, rc, "random generator failed");
            goto exit;
        }
        if (attr->algorithm == 'D') {
            mpos_des_set_odd_parity(out->bytes, len); /* FIPS 46-3: odd parity per byte */
            break;
        }
        if (attr->algorithm != 'T') {
            break;
        }
        /* FIPS 46-3 / SP 800-67r2 3.3: odd parity per byte. Keying options 1 and 2 need
         * K1 != K2 and K2 != K3 (else TDEA collapses to single DES). */
        mpos_des_set_odd_parity(out->bytes, len);
        if (!mpos_ct_equal(out->bytes, out->bytes + 8, 8) &&
            (len == 16 || !mpos_ct_equal(out->bytes + 8, out->bytes + 16, 8))) {
            break;
        }
        if (attempt == 8) {
            rc = hsm_vault_refuse(v, MPOS_ERR_RNG, "random generator repeats itself");
            goto exit;
        }
    }
    out->len = len;
    out->attr = *attr;
    rc = MPOS_OK;
exit:
    if (rc != MPOS_OK) {
        hsm_key_clear(out);
    }
    return rc;
}

int hsm_key_kcv(hsm_vault *v, const hsm_key *key, uint8_t kcv[HSM_KCV_LEN])
{
    int rc;
    if (kcv == NULL) {
        return MPOS_ERR_ARG;
    }
    mpos_cleanse(kcv, HSM_KCV_LEN);
    if (v == NULL || key == NULL || !v->cc.ready) {
        return MPOS_ERR_ARG;
    }
    switch (key->attr.algorithm) {
    case 'A': /* X9.24-1:2017 A.3: CMAC of a zero block, 5 bytes */
        rc = mpos_kcv_compute(&v->cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, key->bytes, key->len, kcv,
                              MPOS_KCV_CMAC_DEFAULT_LEN);
        break;
    case 'T': /* legacy: E(K, zero block), 3 bytes, the rest zero */
    case 'D': /* single DES as K|K|K */
        rc = mpos_kcv_compute(&v->cc, MPOS_CIPHER_TDES, MPOS_KCV_LEGACY, key->bytes, key->len, kcv,
                              MPOS_KCV_LEGACY_DEFAULT_LEN);
        break;
    case HSM_ALG_SM4: /* legacy method, as for TDES (mpos/kcv.h default for SM4) */
        rc = mpos_kcv_compute(&v->cc, MPOS_CIPHER_SM4, MPOS_KCV_LEGACY, key->bytes, key->len, kcv,
                              MPOS_KCV_LEGACY_DEFAULT_LEN);
        break;
    default:
        rc = MPOS_ERR_UNSUPPORTED;
        break;
    }
    if (rc != MPOS_OK) {
        mpos_cleanse(kcv, HSM_KCV_LEN);
    }
    return rc;
}

void hsm_key_clear(hsm_key *k)
{
    if (k != NULL) {
        MPOS_WIPE_CTX(k);
    }
}
