/* mpos-hsmd: key check values for the audit log. A command names its keys by their check
 * values: the ones it returns, and those of the key blocks it was given. The latter are
 * remembered per worker by the block's text (public: it is stored outside hsmd), so the hot
 * path does not unwrap a BDK or ZPK a second time; a miss unwraps the block under the KBPK
 * once, computes the check value (CMAC for AES, legacy for TDES and SM4) and wipes the key. */
#include "hsmd.h"

#include <stdio.h>
#include <string.h>

#include "mpos/kcv.h"
#include "mpos/tr31.h"
#include "mpos/util.h"

static void append_hex(struct hsmd_call *call, const uint8_t *kcv, size_t len)
{
    size_t used = strlen(call->kcvs);
    char hex[2 * HSM_KCV_LEN + 1];
    if (len == 0 || len > HSM_KCV_LEN || used + 2 * len + 2 > sizeof(call->kcvs)) {
        return;
    }
    mpos_hex_encode(kcv, len, hex);
    snprintf(call->kcvs + used, sizeof(call->kcvs) - used, "%s%s", used > 0 ? "," : "", hex);
}

void hsmd_audit_kcv_bytes(struct hsmd_call *call, const uint8_t *kcv, size_t len)
{
    append_hex(call, kcv, len);
}

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* Unwraps the block and computes its check value; 0 and *kcv_len (0 for HMAC or EC keys),
 * or -1 for a block that does not verify. */
static int compute(hsm_vault *v, const char *text, size_t len, uint8_t kcv[HSM_KCV_LEN],
                   size_t *kcv_len)
{
    mpos_tr31_header hdr;
    uint8_t key[MPOS_TR31_MAX_KEY_LEN];
    size_t key_len = 0;
    int rc = -1;
    *kcv_len = 0;
    if (!v->open || mpos_tr31_unwrap_ext(&v->cc, v->kbpk, HSM_LMK_LEN, text, len, &hdr, key,
                                         sizeof(key), &key_len, HSM_KEYBLOCK_TR31_EXT) != MPOS_OK) {
        goto exit;
    }
    enum mpos_cipher cipher;
    enum mpos_kcv_method method = MPOS_KCV_LEGACY;
    switch (hdr.algorithm) {
    case 'A':
        cipher = MPOS_CIPHER_AES;
        method = MPOS_KCV_CMAC;
        break;
    case 'T':
    case 'D':
        cipher = MPOS_CIPHER_TDES;
        break;
    case '4':
        cipher = MPOS_CIPHER_SM4;
        break;
    default:
        rc = 0; /* no check value for this kind of key */
        goto exit;
    }
    size_t n = mpos_kcv_default_len(method);
    if (mpos_kcv_compute(&v->cc, cipher, method, key, key_len, kcv, n) != MPOS_OK) {
        goto exit;
    }
    *kcv_len = n;
    rc = 0;
exit:
    MPOS_WIPE_BUFFER(key);
    return rc;
}

void hsmd_audit_kcv_block(struct hsmd_call *call, const uint8_t *text, size_t len)
{
    struct hsmd_worker *w = call->w;
    if (len == 0 || len > HSM_KEYBLOCK_MAX_LEN) {
        return;
    }
    uint32_t h = fnv1a(text, len);
    struct hsmd_kcv_entry *e = &w->kcv_cache[h % HSMD_KCV_CACHE_SIZE];
    if (e->len != len || e->hash != h || memcmp(e->text, text, len) != 0) {
        uint8_t kcv[HSM_KCV_LEN];
        size_t kcv_len = 0;
        if (compute(&w->vault, (const char *)text, len, kcv, &kcv_len) != 0) {
            return; /* the command refused it too */
        }
        e->hash = h;
        e->len = (uint16_t)len;
        e->kcv_len = (uint8_t)kcv_len;
        memcpy(e->kcv, kcv, HSM_KCV_LEN);
        memcpy(e->text, text, len);
    }
    append_hex(call, e->kcv, e->kcv_len);
}
