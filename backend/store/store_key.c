/* mpos_store: key blocks. A key leaves mpos-hsmd only as a TR-31 version D block under the
 * LMK's key-block protection key (docs/hsm-design.md); the store accepts nothing else, so no
 * code path can put a clear key into the database. */
#include <stdio.h>
#include <string.h>

#include "mpos/tr31.h"
#include "mpos/util.h"
#include "store_db.h"
#include "store_sql.h"

static int kcv_valid(const char *kcv)
{
    size_t n = kcv != NULL ? strlen(kcv) : 0;
    if (n < 4 || n > MPOS_STORE_KCV_HEX_LEN || n % 2 != 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = kcv[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* A TR-31 version D key block (with the extensions of MPOS_TR31_EXT_ALL): a valid header, then the
 * encrypted key data and the MAC in uppercase hex (whole AES blocks). Fills usage and algorithm
 * from the header. */
static int key_block_check(const char *block, char usage[3], char *algorithm)
{
    mpos_tr31_header hdr;
    size_t n = block != NULL ? strlen(block) : 0;
    int rc = MPOS_OK;
    if (n == 0 || n > MPOS_STORE_KEYBLOCK_LEN) {
        return MPOS_ERR_FORMAT;
    }
    /* Blocks under the LMK may use mpos-hsmd's storage extensions (mpos/tr31.h): algorithm '4'
     * for SM4 keys (an SM4 TMK, key generate --algorithm sm4). */
    rc = mpos_tr31_header_parse_ext(block, n, MPOS_TR31_PARSE_BLOCK, &hdr, MPOS_TR31_EXT_ALL);
    if (rc != MPOS_OK || hdr.version != 'D' || hdr.len >= n) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    size_t body = n - hdr.len;
    /* At least one block of key data and the 16-byte MAC, both in hex. */
    if (body < 2 * (16 + 16) || body % 32 != 0) {
        rc = MPOS_ERR_FORMAT;
        goto exit;
    }
    for (size_t i = hdr.len; i < n; i++) {
        char c = block[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            rc = MPOS_ERR_FORMAT;
            goto exit;
        }
    }
    memcpy(usage, hdr.key_usage, 3);
    *algorithm = hdr.algorithm;
exit:
    MPOS_WIPE_CTX(&hdr);
    return rc;
}

int mpos_store_key_put(mpos_store *st, const char *label, const char *key_block, const char *kcv,
                       int64_t now)
{
    char usage[3] = "", alg[2] = "";
    char object[MPOS_STORE_LABEL_LEN + 8], detail[64];
    int64_t changes = 0;
    if (st == NULL) {
        return MPOS_ERR_ARG;
    }
    if (!mpos_store_label_valid(label) || !kcv_valid(kcv) ||
        key_block_check(key_block, usage, &alg[0]) != MPOS_OK) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_write_begin(st);
    if (rc != MPOS_OK) {
        return rc;
    }
    rc = store_exec(st, sql_key_insert, &changes, "ttttti", label, key_block, kcv, usage, alg, now);
    if (rc == STORE_DONE && changes != 1) {
        rc = MPOS_STORE_EXISTS;
    }
    if (rc == STORE_DONE) {
        snprintf(object, sizeof(object), "key:%s", label);
        snprintf(detail, sizeof(detail), "usage=%s algorithm=%s kcv=%s", usage, alg, kcv);
        rc = store_audit(st, now, "key.add", object, detail);
    }
    return store_tx_end(st, rc == MPOS_OK, rc);
}

static int key_read(mpos_store *st, struct store_stmt *s, struct mpos_store_key *k)
{
    char alg[2];
    memset(k, 0, sizeof(*k));
    int rc = store_column_copy(st, s, 0, k->label, sizeof(k->label));
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 1, k->key_block, sizeof(k->key_block));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 2, k->kcv, sizeof(k->kcv));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 3, k->usage, sizeof(k->usage));
    }
    if (rc == MPOS_OK) {
        rc = store_column_copy(st, s, 4, alg, sizeof(alg));
    }
    k->algorithm = alg[0];
    k->created_at = store_column_int64(st, s, 5);
    return rc;
}

int store_key_load(mpos_store *st, const char *label, struct mpos_store_key *out)
{
    struct store_stmt *s = NULL;
    int rc = store_prepare(st, sql_key_get, &s, "t", label);
    if (rc == MPOS_OK) {
        rc = store_step(st, s);
        rc = rc == STORE_ROW ? key_read(st, s, out) : rc == STORE_DONE ? MPOS_STORE_NOT_FOUND : rc;
    }
    store_finalize(st, s);
    return rc;
}

int mpos_store_key_get(mpos_store *st, const char *label, struct mpos_store_key *out)
{
    if (st == NULL || out == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (!mpos_store_label_valid(label)) {
        return MPOS_ERR_FORMAT;
    }
    int rc = store_require_schema(st);
    return rc == MPOS_OK ? store_key_load(st, label, out) : rc;
}

int mpos_store_key_list(mpos_store *st, int (*cb)(void *cb_ctx, const struct mpos_store_key *k),
                        void *cb_ctx)
{
    struct mpos_store_key k;
    struct store_stmt *s = NULL;
    if (st == NULL || cb == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = store_require_schema(st);
    if (rc == MPOS_OK) {
        rc = store_prepare(st, sql_key_list, &s, "");
    }
    while (rc == MPOS_OK && (rc = store_step(st, s)) == STORE_ROW) {
        rc = key_read(st, s, &k);
        if (rc == MPOS_OK) {
            rc = cb(cb_ctx, &k);
        }
    }
    store_finalize(st, s);
    return rc == STORE_DONE ? MPOS_OK : rc;
}
