/* openmpos: TR-31 / ANSI X9.143 key block wrap and unwrap, versions B and D, and the opt-in
 * proprietary extensions of version D (mpos/tr31.h). */
#include <string.h>

#include "mpos/tr31.h"
#include "mpos/util.h"
#include "tr31_int.h"

#define TR31_KBPK_MAX_LEN    32
#define TR31_MAX_BLOCK_FIELD 9999 /* the 4-digit length field */

static enum mpos_cipher cipher_of(char version)
{
    return version == 'B' ? MPOS_CIPHER_TDES : MPOS_CIPHER_AES;
}

/* The KBPK lengths of each version and the algorithm code of the derivation data
 * (X9.143:2021 7.2.2, table 25 for version B; 7.2.1, table 24 for version D). -1 if the
 * length is not allowed. */
static int kbpk_algorithm_code(char version, size_t kbpk_len)
{
    if (version == 'B') {
        return kbpk_len == 16 ? 0x0000 /* 2TDEA */ : kbpk_len == 24 ? 0x0001 /* 3TDEA */ : -1;
    }
    if (version == 'D') {
        return kbpk_len == 16   ? 0x0002 /* AES-128 */
               : kbpk_len == 24 ? 0x0003 /* AES-192 */
               : kbpk_len == 32 ? 0x0004 /* AES-256 */
                                : -1;
    }
    return -1;
}

/* X9.143:2021 7.2.1 (AES) / 7.2.2 (TDES): KBEK and KBAK, each as long as the KBPK, derived
 * with CMAC under the KBPK in counter mode over the 8-byte derivation data
 *   counter (1 byte, from 1) || key usage (0000 encryption, 0001 MAC) || separator 00 ||
 *   algorithm (2 bytes) || length of the derived key in bits (2 bytes);
 * AES-192 keeps the leftmost 8 bytes of the second CMAC block. */
static int derive_keys(mpos_crypto_ctx *cc, char version, const uint8_t *kbpk, size_t kbpk_len,
                       uint8_t kbek[TR31_KBPK_MAX_LEN], uint8_t kbak[TR31_KBPK_MAX_LEN])
{
    int rc = MPOS_OK;
    uint8_t data[8];
    uint8_t out[MPOS_MAX_BLOCK_LEN];
    size_t bs = tr31_block_len(version);
    int algorithm = kbpk_algorithm_code(version, kbpk_len);
    if (algorithm < 0) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    for (uint8_t usage = 0; usage <= 1; usage++) {
        uint8_t *dst = usage == 0 ? kbek : kbak;
        uint8_t counter = 1;
        for (size_t done = 0; done < kbpk_len; done += bs, counter++) {
            data[0] = counter;
            data[1] = 0x00;
            data[2] = usage;
            data[3] = 0x00; /* separator */
            mpos_store_be16(data + 4, (uint16_t)algorithm);
            mpos_store_be16(data + 6, (uint16_t)(kbpk_len * 8));
            rc = mpos_cmac(cc, cipher_of(version), kbpk, kbpk_len, data, sizeof(data), out);
            if (rc != MPOS_OK) {
                goto exit;
            }
            size_t n = kbpk_len - done < bs ? kbpk_len - done : bs;
            memcpy(dst + done, out, n);
        }
    }
exit:
    MPOS_WIPE_BUFFER(out);
    return rc;
}

/* Length of the clear key data when the key is padded to the longest key of its algorithm
 * (X9.143:2021 5 and 6.1, key-length obfuscation): 2 + longest key, to whole cipher blocks. */
static size_t obfuscated_payload_len(char version, char algorithm, unsigned flags)
{
    size_t bs = tr31_block_len(version);
    return (2 + tr31_max_key_len(version, algorithm, flags) + bs - 1) / bs * bs;
}

/* Why an algorithm that parses is not wrapped: asymmetric keys (strict), or an extension
 * algorithm outside version D. */
static const char *not_wrappable_why(char algorithm, unsigned flags)
{
    if ((algorithm == MPOS_TR31_ALG_SM4 && (flags & MPOS_TR31_EXT_SM4) != 0) ||
        (algorithm == 'E' && (flags & MPOS_TR31_EXT_EC_RAW) != 0)) {
        return "proprietary key block extensions are defined for version D only";
    }
    return "asymmetric keys are not supported";
}

static void put_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
}

/* Uppercase hex (already checked) to bytes. */
static void get_hex(const char *in, size_t out_len, uint8_t *out)
{
    for (size_t i = 0; i < out_len; i++) {
        out[i] = (uint8_t)((tr31_hex_value(in[2 * i]) << 4) | tr31_hex_value(in[2 * i + 1]));
    }
}

static void put_decimal(char *out, size_t digits, size_t value)
{
    for (size_t i = digits; i > 0; i--) {
        out[i - 1] = (char)('0' + value % 10);
        value /= 10;
    }
}

int mpos_tr31_wrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len, const char *header,
                   size_t header_len, const uint8_t *key, size_t key_len, const uint8_t *padding,
                   size_t padding_len, char *block, size_t block_cap, size_t *block_len)
{
    return mpos_tr31_wrap_ext(cc, kbpk, kbpk_len, header, header_len, key, key_len, padding,
                              padding_len, block, block_cap, block_len, 0);
}

int mpos_tr31_wrap_ext(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len,
                       const char *header, size_t header_len, const uint8_t *key, size_t key_len,
                       const uint8_t *padding, size_t padding_len, char *block, size_t block_cap,
                       size_t *block_len, unsigned flags)
{
    int rc;
    mpos_tr31_header hdr;
    uint8_t kbek[TR31_KBPK_MAX_LEN] = {0};
    uint8_t kbak[TR31_KBPK_MAX_LEN] = {0};
    /* MAC input: the final header, then the clear key data. */
    uint8_t buf[MPOS_TR31_MAX_HEADER_LEN + MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t enc[MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t mac[MPOS_MAX_BLOCK_LEN];
    size_t h, bs, mac_len, pad_len, payload_len, total;
    if (block_len != NULL) {
        *block_len = 0;
    }
    if (cc == NULL || kbpk == NULL || header == NULL || (key == NULL && key_len > 0) ||
        (padding == NULL && padding_len > 0) || block == NULL || block_len == NULL ||
        (flags & ~MPOS_TR31_EXT_ALL) != 0) {
        return MPOS_ERR_ARG;
    }
    rc = mpos_tr31_header_parse_ext(header, header_len, MPOS_TR31_PARSE_TEMPLATE, &hdr, flags);
    if (rc != MPOS_OK) {
        goto exit;
    }
    bs = tr31_block_len(hdr.version);
    mac_len = bs; /* the MAC is one CMAC block: 8 bytes for B, 16 for D */
    if (kbpk_algorithm_code(hdr.version, kbpk_len) < 0) {
        rc = MPOS_ERR_KEY; /* B: 16 or 24 bytes, D: 16, 24 or 32 */
        goto exit;
    }
    if (tr31_max_key_len(hdr.version, hdr.algorithm, flags) == 0) {
        rc = MPOS_ERR_UNSUPPORTED; /* asymmetric keys; extensions outside version D */
        goto exit;
    }
    if (!mpos_tr31_key_len_valid_ext(hdr.algorithm, key_len, flags)) {
        rc = MPOS_ERR_KEY;
        goto exit;
    }
    /* Clear key data (X9.143:2021 6.1, figure 2; 7.3.1, table 26): key length in bits ||
     * key || padding, whole cipher blocks, padded at most to the obfuscated length. */
    pad_len = padding != NULL
                  ? padding_len
                  : obfuscated_payload_len(hdr.version, hdr.algorithm, flags) - 2 - key_len;
    payload_len = 2 + key_len + pad_len;
    if (pad_len > MPOS_TR31_MAX_PAYLOAD_LEN || payload_len % bs != 0 ||
        payload_len > obfuscated_payload_len(hdr.version, hdr.algorithm, flags)) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    /* Header: the template, plus a PB block padding the optional blocks to whole cipher
     * blocks (X9.143:2021 6.3.6), then the recomputed length and count fields. */
    h = hdr.len;
    memcpy(buf, hdr.text, h);
    if ((h - MPOS_TR31_FIXED_HEADER_LEN) % bs != 0) {
        size_t pb = 4 + (bs - (h - MPOS_TR31_FIXED_HEADER_LEN + 4) % bs) % bs;
        if (hdr.num_opt_blocks >= MPOS_TR31_MAX_OPT_BLOCKS) {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
        if (h + pb > MPOS_TR31_MAX_HEADER_LEN) {
            rc = MPOS_ERR_LENGTH;
            goto exit;
        }
        buf[h] = 'P';
        buf[h + 1] = 'B';
        put_hex((const uint8_t[]){(uint8_t)pb}, 1, (char *)buf + h + 2);
        memset(buf + h + 4, '0', pb - 4); /* printable filler of a clear header field */
        h += pb;
        put_decimal((char *)buf + 12, 2, hdr.num_opt_blocks + 1);
    }
    total = h + 2 * payload_len + 2 * mac_len;
    if (total > TR31_MAX_BLOCK_FIELD || total >= block_cap) {
        rc = MPOS_ERR_LENGTH;
        goto exit;
    }
    put_decimal((char *)buf + 1, 4, total);
    mpos_store_be16(buf + h, (uint16_t)(key_len * 8));
    if (key_len > 0) {
        memcpy(buf + h + 2, key, key_len);
    }
    if (padding != NULL) {
        if (pad_len > 0) {
            memcpy(buf + h + 2 + key_len, padding, pad_len);
        }
    } else if ((rc = mpos_random_bytes(buf + h + 2 + key_len, pad_len)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = derive_keys(cc, hdr.version, kbpk, kbpk_len, kbek, kbak)) != MPOS_OK) {
        goto exit;
    }
    /* X9.143:2021 7.3: MAC = CMAC(KBAK, header || clear key data); the key data is
     * encrypted with CBC under KBEK, the MAC as IV. */
    if ((rc = mpos_cmac(cc, cipher_of(hdr.version), kbak, kbpk_len, buf, h + payload_len, mac)) !=
            MPOS_OK ||
        (rc = mpos_cipher_cbc(cc, cipher_of(hdr.version), 1, kbek, kbpk_len, mac, buf + h, enc,
                              payload_len)) != MPOS_OK) {
        goto exit;
    }
    memcpy(block, buf, h);
    put_hex(enc, payload_len, block + h);
    put_hex(mac, mac_len, block + h + 2 * payload_len);
    block[total] = '\0';
    /* What we emit must pass our own strict parser (with the caller's extensions). */
    if ((rc = mpos_tr31_header_parse_ext(block, total, MPOS_TR31_PARSE_BLOCK, &hdr, flags)) !=
        MPOS_OK) {
        goto exit;
    }
    *block_len = total;
exit:
    MPOS_WIPE_BUFFER(kbek);
    MPOS_WIPE_BUFFER(kbak);
    MPOS_WIPE_BUFFER(buf);
    MPOS_WIPE_BUFFER(enc);
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK && block != NULL && block_cap > 0) {
        mpos_cleanse(block, block_cap);
    }
    return rc;
}

int mpos_tr31_unwrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len, const char *block,
                     size_t block_len, mpos_tr31_header *hdr, uint8_t *key, size_t key_cap,
                     size_t *key_len)
{
    return mpos_tr31_unwrap_ext(cc, kbpk, kbpk_len, block, block_len, hdr, key, key_cap, key_len,
                                0);
}

int mpos_tr31_unwrap_ext(mpos_crypto_ctx *cc, const uint8_t *kbpk, size_t kbpk_len,
                         const char *block, size_t block_len, mpos_tr31_header *hdr, uint8_t *key,
                         size_t key_cap, size_t *key_len, unsigned flags)
{
    int rc;
    mpos_tr31_header local;
    uint8_t kbek[TR31_KBPK_MAX_LEN] = {0};
    uint8_t kbak[TR31_KBPK_MAX_LEN] = {0};
    /* MAC input: the header, then the decrypted key data; private until the MAC verifies. */
    uint8_t buf[MPOS_TR31_MAX_HEADER_LEN + MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t enc[MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t mac[MPOS_MAX_BLOCK_LEN];
    uint8_t mac_given[MPOS_MAX_BLOCK_LEN];
    size_t h, bs, mac_len, payload_len, rest, klen;
    unsigned bits;
    const char *why = NULL;
    if (hdr == NULL) {
        hdr = &local;
    }
    if (key_len != NULL) {
        *key_len = 0;
    }
    if (key == NULL || key_len == NULL) {
        return MPOS_ERR_ARG;
    }
    if (cc == NULL || kbpk == NULL || block == NULL || (flags & ~MPOS_TR31_EXT_ALL) != 0) {
        rc = MPOS_ERR_ARG;
        goto exit;
    }
    rc = mpos_tr31_header_parse_ext(block, block_len, MPOS_TR31_PARSE_BLOCK, hdr, flags);
    if (rc != MPOS_OK) {
        why = hdr->why;
        goto exit;
    }
    bs = tr31_block_len(hdr->version);
    mac_len = bs;
    h = hdr->len;
    if (kbpk_algorithm_code(hdr->version, kbpk_len) < 0) {
        rc = MPOS_ERR_KEY;
        why = "KBPK length not allowed for the key block version";
        goto exit;
    }
    if (tr31_max_key_len(hdr->version, hdr->algorithm, flags) == 0) {
        rc = MPOS_ERR_UNSUPPORTED;
        why = not_wrappable_why(hdr->algorithm, flags);
        goto exit;
    }
    /* After the header: the encrypted key data (whole cipher blocks) and the MAC, both in
     * uppercase hex (X9.143:2021 6.1). */
    rest = block_len - h;
    if (rest <= 2 * mac_len || (rest - 2 * mac_len) % (2 * bs) != 0 ||
        (rest - 2 * mac_len) / 2 > MPOS_TR31_MAX_PAYLOAD_LEN) {
        rc = MPOS_ERR_LENGTH;
        why = "encrypted key data is not a whole number of cipher blocks";
        goto exit;
    }
    if (!tr31_all_hex(block + h, rest)) {
        rc = MPOS_ERR_FORMAT;
        why = "key data or MAC is not uppercase hex";
        goto exit;
    }
    payload_len = (rest - 2 * mac_len) / 2;
    get_hex(block + h, payload_len, enc);
    get_hex(block + h + 2 * payload_len, mac_len, mac_given);
    if ((rc = derive_keys(cc, hdr->version, kbpk, kbpk_len, kbek, kbak)) != MPOS_OK) {
        goto exit;
    }
    /* X9.143:2021 7.3: decrypt (CBC, the MAC as IV) into the private buffer,
     * CMAC the header and the decrypted data, compare in constant time. Nothing of the
     * decrypted data is looked at before the MAC has verified. */
    memcpy(buf, block, h);
    if ((rc = mpos_cipher_cbc(cc, cipher_of(hdr->version), 0, kbek, kbpk_len, mac_given, enc,
                              buf + h, payload_len)) != MPOS_OK ||
        (rc = mpos_cmac(cc, cipher_of(hdr->version), kbak, kbpk_len, buf, h + payload_len, mac)) !=
            MPOS_OK) {
        goto exit;
    }
    if (!mpos_ct_equal(mac, mac_given, mac_len)) {
        rc = MPOS_ERR_VERIFY;
        why = "MAC does not verify";
        goto exit;
    }
    /* Authentic: the key length (bits) must be whole bytes, allowed for the algorithm, fit
     * the data, and the padding must not exceed key-length obfuscation. */
    bits = mpos_load_be16(buf + h);
    klen = bits / 8;
    if (bits % 8 != 0 || !mpos_tr31_key_len_valid_ext(hdr->algorithm, klen, flags) ||
        2 + klen > payload_len ||
        payload_len > obfuscated_payload_len(hdr->version, hdr->algorithm, flags)) {
        rc = MPOS_ERR_DECODE;
        why = "key length or padding not allowed";
        goto exit;
    }
    if (klen > key_cap) {
        rc = MPOS_ERR_LENGTH;
        why = "key buffer too small";
        goto exit;
    }
    memcpy(key, buf + h + 2, klen);
    *key_len = klen;
    rc = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(kbek);
    MPOS_WIPE_BUFFER(kbak);
    MPOS_WIPE_BUFFER(buf);
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK) {
        /* No key bytes, and no unauthenticated header, for a block that failed. */
        mpos_cleanse(key, key_cap);
        *key_len = 0;
        memset(hdr, 0, sizeof(*hdr));
        hdr->why = why;
    }
    if (hdr == &local) {
        memset(&local, 0, sizeof(local));
    }
    return rc;
}
