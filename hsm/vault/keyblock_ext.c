/* mpos-hsmd vault: TR-31 / X9.143 version D key blocks for the key algorithms lib/tr31 does
 * not wrap: 'E' (an EC private key: the 32-byte scalar of P-256 or SM2) and '4' (SM4, 16
 * bytes; X9.143:2021 6.3.2 reserves numeric algorithm codes for proprietary use and has none
 * for SM4). Same construction as lib/tr31 version D (X9.143:2021 7.3, TR-31:2018 A.3): KBEK
 * and KBAK derived from the KBPK with AES-CMAC, MAC = CMAC(KBAK, header || clear key data),
 * key data encrypted with AES-CBC under KBEK with the MAC as IV. The tests show that on a
 * symmetric header this code and mpos_tr31_wrap produce the same block byte for byte.
 *
 * The header is validated by lib/tr31's own parser; for '4' the parser is shown a copy with
 * 'A' in the algorithm field (SM4 keys take the usages and modes of AES keys).
 *
 * These blocks are storage blocks under the LMK's KBPK (key context 1). The EC scalar is
 * stored raw, not as the DER structure an interchange block would carry. */
#include <string.h>

#include "mpos/util.h"
#include "vault_int.h"

#define EXT_KBPK_LEN   HSM_LMK_LEN
#define EXT_BS         MPOS_AES_BLOCK_LEN
#define EXT_MAC_LEN    MPOS_AES_BLOCK_LEN
#define EXT_MAX_HEADER 64 /* what the vault writes: 16 + block 91 + PB */

/* Key lengths and the key-length obfuscation target of each algorithm handled here. */
static size_t ext_max_key_len(char algorithm)
{
    switch (algorithm) {
    case 'E':
        return 32;
    case HSM_ALG_SM4:
        return 16;
    case 'A': /* for the cross-check against lib/tr31 */
        return 32;
    default:
        return 0;
    }
}

static int ext_key_len_valid(char algorithm, size_t len)
{
    switch (algorithm) {
    case 'E':
        return len == 32;
    case HSM_ALG_SM4:
        return len == 16;
    case 'A':
        return len == 16 || len == 24 || len == 32;
    default:
        return 0;
    }
}

int hsm_kb_ext_algorithm(char algorithm)
{
    return algorithm == 'E' || algorithm == HSM_ALG_SM4;
}

/* 2 + the longest key, to whole AES blocks (X9.143:2021 6.1, key-length obfuscation). */
static size_t ext_payload_len(char algorithm)
{
    return (2 + ext_max_key_len(algorithm) + EXT_BS - 1) / EXT_BS * EXT_BS;
}

int hsm_kb_key_len_valid(char algorithm, size_t len)
{
    return hsm_kb_ext_algorithm(algorithm) ? ext_key_len_valid(algorithm, len)
                                           : mpos_tr31_key_len_valid(algorithm, len);
}

int hsm_kb_parse(const char *text, size_t len, enum mpos_tr31_parse mode, mpos_tr31_header *hdr)
{
    char copy[HSM_KEYBLOCK_MAX_LEN];
    int rc;
    if (len < MPOS_TR31_FIXED_HEADER_LEN || len > sizeof(copy)) {
        memset(hdr, 0, sizeof(*hdr));
        hdr->why = "key block length out of range";
        return MPOS_ERR_LENGTH;
    }
    memcpy(copy, text, len);
    if (copy[7] == HSM_ALG_SM4) {
        copy[7] = 'A';
    }
    rc = mpos_tr31_header_parse(copy, len, mode, hdr);
    if (rc == MPOS_OK) {
        hdr->algorithm = text[7];
        memcpy(hdr->text, text, hdr->len);
    }
    return rc;
}

/* X9.143:2021 7.3.1 (TR-31:2018 A.3.3): KBEK (usage 0000) and KBAK (0001) from a 256-bit
 * KBPK, each two CMAC blocks over counter || usage || 00 || algorithm 0004 (AES-256) ||
 * length 0100 (256 bits). */
static int ext_derive(mpos_crypto_ctx *cc, const uint8_t *kbpk, uint8_t kbek[EXT_KBPK_LEN],
                      uint8_t kbak[EXT_KBPK_LEN])
{
    int rc = MPOS_OK;
    uint8_t data[8];
    for (uint8_t usage = 0; usage <= 1 && rc == MPOS_OK; usage++) {
        uint8_t *dst = usage == 0 ? kbek : kbak;
        for (uint8_t counter = 1; counter <= EXT_KBPK_LEN / EXT_BS && rc == MPOS_OK; counter++) {
            data[0] = counter;
            data[1] = 0x00;
            data[2] = usage;
            data[3] = 0x00;
            mpos_store_be16(data + 4, 0x0004);
            mpos_store_be16(data + 6, EXT_KBPK_LEN * 8);
            rc = mpos_cmac(cc, MPOS_CIPHER_AES, kbpk, EXT_KBPK_LEN, data, sizeof(data),
                           dst + (counter - 1) * EXT_BS);
        }
    }
    return rc;
}

static void ext_put_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
}

static int ext_hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Uppercase hex only (X9.143:2021 6.1). 0 or -1. */
static int ext_get_hex(const char *in, size_t out_len, uint8_t *out)
{
    for (size_t i = 0; i < out_len; i++) {
        int hi = ext_hex_value(in[2 * i]);
        int lo = ext_hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return 0;
}

static void ext_put_decimal(char *out, size_t digits, size_t value)
{
    for (size_t i = digits; i > 0; i--) {
        out[i - 1] = (char)('0' + value % 10);
        value /= 10;
    }
}

int hsm_kb_ext_wrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, const char *tmpl, size_t tmpl_len,
                    const uint8_t *key, size_t key_len, const uint8_t *padding, size_t padding_len,
                    char *block, size_t cap, size_t *block_len, const char **why)
{
    int rc;
    mpos_tr31_header hdr;
    uint8_t kbek[EXT_KBPK_LEN], kbak[EXT_KBPK_LEN];
    uint8_t buf[EXT_MAX_HEADER + MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t enc[MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t mac[EXT_MAC_LEN];
    size_t h, payload, pad, total;
    *block_len = 0;
    *why = NULL;
    if ((rc = hsm_kb_parse(tmpl, tmpl_len, MPOS_TR31_PARSE_TEMPLATE, &hdr)) != MPOS_OK) {
        *why = hdr.why;
        goto exit;
    }
    if (hdr.version != 'D' || ext_max_key_len(hdr.algorithm) == 0) {
        rc = MPOS_ERR_UNSUPPORTED;
        *why = "version D with algorithm E or 4 only";
        goto exit;
    }
    if (!ext_key_len_valid(hdr.algorithm, key_len)) {
        rc = MPOS_ERR_KEY;
        *why = "key length not allowed for the algorithm";
        goto exit;
    }
    /* X9.143:2021 6.1: key length in bits || key || padding, whole cipher blocks, at most
     * the obfuscated length; random padding unless the caller gives it. */
    payload = padding != NULL ? 2 + key_len + padding_len : ext_payload_len(hdr.algorithm);
    pad = payload - 2 - key_len;
    if (payload % EXT_BS != 0 || payload > ext_payload_len(hdr.algorithm)) {
        rc = MPOS_ERR_LENGTH;
        *why = "padding length not allowed";
        goto exit;
    }
    /* X9.143:2021 6.3.6: a PB block pads the optional blocks to whole cipher blocks. */
    h = hdr.len;
    if (h + EXT_BS + 4 > EXT_MAX_HEADER) {
        rc = MPOS_ERR_LENGTH;
        *why = "header too long";
        goto exit;
    }
    memcpy(buf, hdr.text, h);
    if ((h - MPOS_TR31_FIXED_HEADER_LEN) % EXT_BS != 0) {
        size_t pb = 4 + (EXT_BS - (h - MPOS_TR31_FIXED_HEADER_LEN + 4) % EXT_BS) % EXT_BS;
        buf[h] = 'P';
        buf[h + 1] = 'B';
        ext_put_hex((const uint8_t[]){(uint8_t)pb}, 1, (char *)buf + h + 2);
        memset(buf + h + 4, '0', pb - 4);
        h += pb;
        ext_put_decimal((char *)buf + 12, 2, hdr.num_opt_blocks + 1);
    }
    total = h + 2 * payload + 2 * EXT_MAC_LEN;
    if (total >= cap) {
        rc = MPOS_ERR_LENGTH;
        *why = "output buffer too small for the key block";
        goto exit;
    }
    ext_put_decimal((char *)buf + 1, 4, total);
    mpos_store_be16(buf + h, (uint16_t)(key_len * 8));
    memcpy(buf + h + 2, key, key_len);
    if (padding != NULL) {
        if (pad > 0) {
            memcpy(buf + h + 2 + key_len, padding, pad);
        }
    } else if ((rc = mpos_random_bytes(buf + h + 2 + key_len, pad)) != MPOS_OK) {
        *why = "random generator failed";
        goto exit;
    }
    /* X9.143:2021 7.3.2: MAC over header || clear key data, then CBC with the MAC as IV. */
    if ((rc = ext_derive(cc, kbpk, kbek, kbak)) != MPOS_OK ||
        (rc = mpos_cmac(cc, MPOS_CIPHER_AES, kbak, EXT_KBPK_LEN, buf, h + payload, mac)) !=
            MPOS_OK ||
        (rc = mpos_cipher_cbc(cc, MPOS_CIPHER_AES, 1, kbek, EXT_KBPK_LEN, mac, buf + h, enc,
                              payload)) != MPOS_OK) {
        *why = "key block cryptography failed";
        goto exit;
    }
    memcpy(block, buf, h);
    ext_put_hex(enc, payload, block + h);
    ext_put_hex(mac, EXT_MAC_LEN, block + h + 2 * payload);
    block[total] = '\0';
    /* What we emit must pass the strict parser as a whole block. */
    if ((rc = hsm_kb_parse(block, total, MPOS_TR31_PARSE_BLOCK, &hdr)) != MPOS_OK) {
        *why = hdr.why;
        goto exit;
    }
    *block_len = total;
exit:
    MPOS_WIPE_BUFFER(kbek);
    MPOS_WIPE_BUFFER(kbak);
    MPOS_WIPE_BUFFER(buf);
    MPOS_WIPE_BUFFER(enc);
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK && cap > 0) {
        mpos_cleanse(block, cap);
    }
    return rc;
}

int hsm_kb_ext_unwrap(mpos_crypto_ctx *cc, const uint8_t *kbpk, const char *block, size_t block_len,
                      mpos_tr31_header *hdr, uint8_t *key, size_t key_cap, size_t *key_len,
                      const char **why)
{
    int rc;
    uint8_t kbek[EXT_KBPK_LEN], kbak[EXT_KBPK_LEN];
    uint8_t buf[HSM_KEYBLOCK_MAX_LEN + MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t enc[MPOS_TR31_MAX_PAYLOAD_LEN];
    uint8_t mac[EXT_MAC_LEN], mac_given[EXT_MAC_LEN];
    size_t h, rest, payload, klen;
    unsigned bits;
    *key_len = 0;
    *why = NULL;
    if ((rc = hsm_kb_parse(block, block_len, MPOS_TR31_PARSE_BLOCK, hdr)) != MPOS_OK) {
        *why = hdr->why;
        goto exit;
    }
    if (hdr->version != 'D' || ext_max_key_len(hdr->algorithm) == 0) {
        rc = MPOS_ERR_UNSUPPORTED;
        *why = "version D with algorithm E or 4 only";
        goto exit;
    }
    h = hdr->len;
    rest = block_len - h;
    /* X9.143:2021 6.1: encrypted key data (whole blocks) and the MAC, uppercase hex. */
    if (rest <= 2 * EXT_MAC_LEN || (rest - 2 * EXT_MAC_LEN) % (2 * EXT_BS) != 0 ||
        (rest - 2 * EXT_MAC_LEN) / 2 > ext_payload_len(hdr->algorithm)) {
        rc = MPOS_ERR_LENGTH;
        *why = "encrypted key data is not a whole number of cipher blocks";
        goto exit;
    }
    payload = (rest - 2 * EXT_MAC_LEN) / 2;
    if (ext_get_hex(block + h, payload, enc) != 0 ||
        ext_get_hex(block + h + 2 * payload, EXT_MAC_LEN, mac_given) != 0) {
        rc = MPOS_ERR_FORMAT;
        *why = "key data or MAC is not uppercase hex";
        goto exit;
    }
    /* X9.143:2021 7.3.3: decrypt privately, MAC header || clear key data, compare in
     * constant time; nothing decrypted is looked at before. */
    memcpy(buf, block, h);
    if ((rc = ext_derive(cc, kbpk, kbek, kbak)) != MPOS_OK ||
        (rc = mpos_cipher_cbc(cc, MPOS_CIPHER_AES, 0, kbek, EXT_KBPK_LEN, mac_given, enc, buf + h,
                              payload)) != MPOS_OK ||
        (rc = mpos_cmac(cc, MPOS_CIPHER_AES, kbak, EXT_KBPK_LEN, buf, h + payload, mac)) !=
            MPOS_OK) {
        *why = "key block cryptography failed";
        goto exit;
    }
    if (!mpos_ct_equal(mac, mac_given, EXT_MAC_LEN)) {
        rc = MPOS_ERR_VERIFY;
        *why = "MAC does not verify";
        goto exit;
    }
    bits = mpos_load_be16(buf + h);
    klen = bits / 8;
    if (bits % 8 != 0 || !ext_key_len_valid(hdr->algorithm, klen) || 2 + klen > payload) {
        rc = MPOS_ERR_DECODE;
        *why = "key length or padding not allowed";
        goto exit;
    }
    if (klen > key_cap) {
        rc = MPOS_ERR_LENGTH;
        *why = "key buffer too small";
        goto exit;
    }
    memcpy(key, buf + h + 2, klen);
    *key_len = klen;
    rc = MPOS_OK;
exit:
    MPOS_WIPE_BUFFER(kbek);
    MPOS_WIPE_BUFFER(kbak);
    MPOS_WIPE_BUFFER(buf);
    MPOS_WIPE_BUFFER(enc);
    MPOS_WIPE_BUFFER(mac);
    if (rc != MPOS_OK) {
        mpos_cleanse(key, key_cap);
        *key_len = 0;
        memset(hdr, 0, sizeof(*hdr));
    }
    return rc;
}
