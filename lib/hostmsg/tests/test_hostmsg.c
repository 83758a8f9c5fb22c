/* Unit tests: lib/hostmsg (docs/system-design.md 1.1-1.3).
 *
 * The encoding is checked byte for byte against a frame written out by hand from 1.1/1.2, the
 * MAC and the two key derivations against OpenSSL's own HMAC and HKDF (an independent path:
 * the codec goes through the mpos crypto facade), and every strictness rule of 1.1 is shown to
 * refuse a message that differs from a valid one in that rule alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "mpos/hostmsg.h"
#include "mpos/util.h"
#include "testutil.h"

static uint8_t KEY[32];

static void fill_env(struct mpos_hostmsg_envelope *e)
{
    memset(e, 0, sizeof(*e));
    e->lat = 312304000;  /* 31.2304 N */
    e->lon = 1214737000; /* 121.4737 E */
    e->accuracy = 25;
    e->loc_time = 1760000000;
    memset(e->device_id, 0xD1, sizeof(e->device_id));
    e->debugger = 0;
    e->root = 1;
    memset(e->binary_hash, 0xB2, sizeof(e->binary_hash));
    e->counter = 7;
}

/* A TXN_BEGIN with the envelope and its MAC. */
static size_t build_txn(uint8_t *buf, size_t cap)
{
    mpos_hostmsg_writer w;
    struct mpos_hostmsg_envelope e;
    size_t n = 0;
    fill_env(&e);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, cap, MPOS_HOSTMSG_TXN_BEGIN), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u8(&w, MPOS_HM_TXN_TYPE, 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u64(&w, MPOS_HM_AMOUNT, 1234), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u16(&w, MPOS_HM_CURRENCY, 156), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_envelope(&w, &e), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_mac(&w, KEY, sizeof(KEY)), MPOS_OK);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), MPOS_OK);
    return n;
}

static void test_bytes_by_hand(void **state)
{
    (void)state;
    uint8_t buf[64], want[64];
    mpos_hostmsg_writer w;
    size_t n = 0;
    /* ERROR {error = 6, message "envelope"}: 1.1 length 1 + 5 + 11 = 17. */
    size_t wn = tu_hex("00000011"
                       "8F"
                       "08"
                       "0002"
                       "0006"
                       "09"
                       "0008"
                       "656E76656C6F7065",
                       want, sizeof(want));
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), MPOS_HOSTMSG_ERROR), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u16(&w, MPOS_HM_ERROR, MPOS_HMERR_ENVELOPE), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_MESSAGE, "envelope"), MPOS_OK);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), MPOS_OK);
    assert_int_equal(n, wn);
    assert_memory_equal(buf, want, n);

    mpos_hostmsg m;
    uint16_t code = 0;
    char text[16];
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(m.type, MPOS_HOSTMSG_ERROR);
    assert_int_equal(m.field_count, 2);
    assert_int_equal(mpos_hostmsg_get_u16(&m, MPOS_HM_ERROR, &code), MPOS_OK);
    assert_int_equal(code, 6);
    assert_int_equal(mpos_hostmsg_get_text(&m, MPOS_HM_MESSAGE, text, sizeof(text)), MPOS_OK);
    assert_string_equal(text, "envelope");
    assert_int_equal(mpos_hostmsg_get_text(&m, MPOS_HM_MESSAGE, text, 8), MPOS_ERR_LENGTH);
    assert_false(mpos_hostmsg_has(&m, MPOS_HM_MAC));
    assert_int_equal(mpos_hostmsg_get_u16(&m, MPOS_HM_CURRENCY, &code), MPOS_ERR_FORMAT);
    /* Width mismatch is a programming error. */
    assert_int_equal(mpos_hostmsg_get_u16(&m, MPOS_HM_AMOUNT, &code), MPOS_ERR_ARG);
}

static void test_round_trip_envelope_mac(void **state)
{
    (void)state;
    static uint8_t buf[1024];
    size_t n = build_txn(buf, sizeof(buf));
    mpos_hostmsg m;
    struct mpos_hostmsg_envelope e, want;
    uint64_t amount = 0;
    uint8_t type = 0;
    uint16_t cur = 0;
    assert_int_equal(mpos_load_be32(buf), n - 4);
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_u8(&m, MPOS_HM_TXN_TYPE, &type), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_u64(&m, MPOS_HM_AMOUNT, &amount), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_u16(&m, MPOS_HM_CURRENCY, &cur), MPOS_OK);
    assert_int_equal(type, 1);
    assert_int_equal(amount, 1234);
    assert_int_equal(cur, 156);
    assert_int_equal(mpos_hostmsg_get_envelope(&m, &e), MPOS_OK);
    fill_env(&want);
    assert_memory_equal(&e, &want, sizeof(e));
    assert_int_equal(mpos_hostmsg_verify_mac(&m, KEY, sizeof(KEY)), MPOS_OK);

    /* The MAC is HMAC-SHA-256 over type .. end of the field before mac (OpenSSL directly). */
    uint8_t mac[32];
    unsigned ml = 0;
    assert_int_equal(m.mac_covered, n - 4 - 35);
    assert_non_null(HMAC(EVP_sha256(), KEY, sizeof(KEY), buf + 4, n - 4 - 35, mac, &ml));
    assert_memory_equal(mac, buf + n - 32, 32);
    assert_int_equal(buf[n - 35], MPOS_HM_MAC);

    /* Wrong key; a flipped bit anywhere the MAC covers (re-parsed: the value stays valid). */
    uint8_t other[32];
    memcpy(other, KEY, 32);
    other[31] ^= 1;
    assert_int_equal(mpos_hostmsg_verify_mac(&m, other, sizeof(other)), MPOS_ERR_VERIFY);
    buf[4 + 3 + 3 + 8] ^= 0x01; /* inside the amount */
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_verify_mac(&m, KEY, sizeof(KEY)), MPOS_ERR_VERIFY);
    buf[4 + 3 + 3 + 8] ^= 0x01;
    buf[n - 1] ^= 0x80; /* inside the mac */
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_verify_mac(&m, KEY, sizeof(KEY)), MPOS_ERR_VERIFY);
}

/* Each rule of 1.1 alone: the message differs from a valid one in that respect only. */
static void test_strict(void **state)
{
    (void)state;
    mpos_hostmsg m;
    uint8_t b[128];
    size_t n;
    /* valid: RESUME with session-token only. */
    n = tu_hex("02"
               "05"
               "0020"
               "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_OK);
    /* unknown tags: 0x00, 0x17, 0x28, 0x3E, 0x40, 0xFF */
    const uint8_t unknown[] = {0x00, 0x17, 0x1F, 0x28, 0x3E, 0x40, 0xFF};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        b[1] = unknown[i];
        assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
        assert_false(mpos_hostmsg_has(&m, MPOS_HM_SESSION_TOKEN));
    }
    b[1] = 0x05;
    /* length out of range: token of 31 with the value shortened accordingly */
    b[3] = 31;
    assert_int_equal(mpos_hostmsg_parse(&m, b, n - 1), MPOS_ERR_FORMAT);
    b[3] = 32;
    /* truncated field, truncated header */
    assert_int_equal(mpos_hostmsg_parse(&m, b, n - 1), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_parse(&m, b, 3), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_parse(&m, b, 1), MPOS_OK); /* type only: no fields */
    assert_int_equal(mpos_hostmsg_parse(&m, b, 0), MPOS_ERR_LENGTH);
    /* duplicate */
    n = tu_hex("01"
               "01"
               "0002"
               "4D31"
               "02"
               "0001"
               "75"
               "01"
               "0002"
               "4D31",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_parse(&m, b, n - 5), MPOS_OK);
    /* merchant must be [A-Z0-9] */
    n = tu_hex("01"
               "01"
               "0002"
               "6D31",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    /* flags 0/1, txn-type 1..4 */
    n = tu_hex("04"
               "24"
               "0001"
               "02",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    b[4] = 1;
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_OK);
    n = tu_hex("04"
               "0B"
               "0001"
               "05",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    b[4] = 4;
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_OK);
    /* masked PAN: digits and '*' only */
    n = tu_hex("87"
               "12"
               "0010"
               "3632323230302A2A2A2A2A2A30303031",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_OK);
    b[10] = 'X';
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    /* ... and only first 6 / last 4 in clear: a whole PAN, or a digit in the middle, is
     * refused */
    n = tu_hex("87"
               "12"
               "0010"
               "36323232303031323334353630303031",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    n = tu_hex("87"
               "12"
               "0010"
               "3632323230302A2A2A312A2A30303031",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    n = tu_hex("87"
               "12"
               "0010"
               "3632323230302A2A2A2A2A2A2A303031",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    /* mac not last */
    n = tu_hex("06"
               "3F"
               "0020"
               "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"
               "27"
               "0008"
               "0000000000000001",
               b, sizeof(b));
    assert_int_equal(mpos_hostmsg_parse(&m, b, n), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_parse(&m, b, n - 11), MPOS_OK);
    assert_int_equal(m.mac_covered, 1);
    assert_int_equal(mpos_hostmsg_tag_range(0x0A, NULL, NULL), 1);
    assert_int_equal(mpos_hostmsg_tag_range(0x30, NULL, NULL), 0);
}

static void test_writer_refusals(void **state)
{
    (void)state;
    uint8_t buf[64];
    mpos_hostmsg_writer w;
    size_t n = 99;
    /* A duplicate sticks: finish reports it and produces nothing. */
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), MPOS_HOSTMSG_LOGIN), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, "M1"), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, "M1"), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_USERNAME, "u"), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), MPOS_ERR_FORMAT);
    assert_int_equal(n, 0);
    /* Bad text, bad lengths, unknown tag, mac by hand, after mac, buffer full. */
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, "abc"), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_text(&w, MPOS_HM_MERCHANT, "ABCDEFGHIJKLMNOP"),
                     MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put(&w, 0x30, "x", 1), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put(&w, MPOS_HM_MAC, KEY, 32), MPOS_ERR_ARG);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 6), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u64(&w, MPOS_HM_COUNTER, 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_mac(&w, KEY, sizeof(KEY)), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_u64(&w, MPOS_HM_EXPIRES, 1), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, 39, 6), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put(&w, MPOS_HM_DEVICE_ID, KEY, 32), MPOS_ERR_LENGTH);
    /* Envelope out of range. */
    struct mpos_hostmsg_envelope e;
    fill_env(&e);
    e.lat = 900000001;
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 6), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_envelope(&w, &e), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), MPOS_ERR_FORMAT);
}

/* A parsed envelope out of range, or missing a field or the mac, is refused. */
static void test_envelope_checks(void **state)
{
    (void)state;
    static uint8_t buf[1024];
    struct mpos_hostmsg_envelope e;
    mpos_hostmsg m;
    mpos_hostmsg_writer w;
    size_t n = 0;
    /* Negative coordinates survive the round trip. */
    fill_env(&e);
    e.lat = -900000000;
    e.lon = -1800000000;
    assert_int_equal(mpos_hostmsg_writer_init(&w, buf, sizeof(buf), 6), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_envelope(&w, &e), MPOS_OK);
    assert_int_equal(mpos_hostmsg_put_mac(&w, KEY, 32), MPOS_OK);
    assert_int_equal(mpos_hostmsg_finish(&w, &n), MPOS_OK);
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    struct mpos_hostmsg_envelope got;
    assert_int_equal(mpos_hostmsg_get_envelope(&m, &got), MPOS_OK);
    assert_int_equal(got.lat, -900000000);
    assert_int_equal(got.lon, -1800000000);
    /* Without the mac (cut off): refused. */
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4 - 35), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_envelope(&m, &got), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_verify_mac(&m, KEY, 32), MPOS_ERR_FORMAT);
    /* A latitude out of range written by hand (the writer would refuse it). */
    n = build_txn(buf, sizeof(buf));
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    size_t lat_off = (size_t)(m.f[MPOS_HM_LAT].value - buf);
    mpos_store_be32(buf + lat_off, 900000001u);
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_envelope(&m, &got), MPOS_ERR_FORMAT);
    /* Counter 0 refused. */
    n = build_txn(buf, sizeof(buf));
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    memset((uint8_t *)(uintptr_t)m.f[MPOS_HM_COUNTER].value, 0, 8);
    assert_int_equal(mpos_hostmsg_parse(&m, buf + 4, n - 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_get_envelope(&m, &got), MPOS_ERR_FORMAT);
}

/* The stream reader: every chunking of a stream of three frames yields the same messages. */
static void test_reader(void **state)
{
    (void)state;
    static uint8_t stream[4096];
    static mpos_hostmsg_reader r;
    size_t total = 0;
    size_t a = build_txn(stream, sizeof(stream));
    total += a;
    total += tu_hex("00000001"
                    "86",
                    stream + total, sizeof(stream) - total);
    memcpy(stream + total, stream, a);
    total += a;
    for (size_t chunk = 1; chunk <= total; chunk += (chunk < 16 ? 1 : 37)) {
        size_t off = 0, got = 0;
        size_t lens[3] = {0};
        mpos_hostmsg_reader_init(&r);
        while (off < total) {
            size_t take = total - off < chunk ? total - off : chunk;
            while (take > 0) {
                size_t used = 0, ml = 0;
                const uint8_t *msg = NULL;
                int rc = mpos_hostmsg_reader_feed(&r, stream + off, take, &used, &msg, &ml);
                assert_true(rc == 0 || rc == 1);
                if (rc == 1) {
                    assert_true(got < 3);
                    lens[got++] = ml;
                    assert_int_equal(mpos_hostmsg_reader_pending(&r), 0);
                }
                off += used;
                take -= used;
            }
        }
        assert_int_equal(got, 3);
        assert_int_equal(lens[0], a - 4);
        assert_int_equal(lens[1], 1);
        assert_int_equal(lens[2], a - 4);
    }
    /* Length 0 and above 65536 are fatal and sticky; 65536 itself is taken. */
    uint8_t bad[5] = {0, 0, 0, 0, 1};
    size_t used = 0, ml = 0;
    const uint8_t *msg = NULL;
    mpos_hostmsg_reader_init(&r);
    assert_int_equal(mpos_hostmsg_reader_feed(&r, bad, 5, &used, &msg, &ml), MPOS_ERR_LENGTH);
    assert_int_equal(mpos_hostmsg_reader_feed(&r, bad, 5, &used, &msg, &ml), MPOS_ERR_LENGTH);
    mpos_hostmsg_reader_init(&r);
    mpos_store_be32(bad, 65537);
    assert_int_equal(mpos_hostmsg_reader_feed(&r, bad, 5, &used, &msg, &ml), MPOS_ERR_LENGTH);
    assert_int_equal(used, 4);
    mpos_hostmsg_reader_init(&r);
    mpos_store_be32(bad, 65536);
    assert_int_equal(mpos_hostmsg_reader_feed(&r, bad, 5, &used, &msg, &ml), 0);
    assert_int_equal(used, 5);
    assert_int_equal(mpos_hostmsg_reader_pending(&r), 1);
}

static void ossl_hkdf(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, const char *info,
                      uint8_t out[32])
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t ol = 32;
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_derive_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()), 1);
    if (salt_len > 0) {
        assert_int_equal(EVP_PKEY_CTX_set1_hkdf_salt(c, salt, (int)salt_len), 1);
    }
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(c, ikm, 32), 1);
    assert_int_equal(EVP_PKEY_CTX_add1_hkdf_info(c, (const unsigned char *)info, (int)strlen(info)),
                     1);
    assert_int_equal(EVP_PKEY_derive(c, out, &ol), 1);
    EVP_PKEY_CTX_free(c);
}

static void test_keys(void **state)
{
    (void)state;
    uint8_t exp[32], tok[32], k[32], want[32];
    for (int i = 0; i < 32; i++) {
        exp[i] = (uint8_t)i;
        tok[i] = (uint8_t)(0xA0 + i);
    }
    assert_int_equal(mpos_hostmsg_login_key(exp, k), MPOS_OK);
    ossl_hkdf(NULL, 0, exp, "openmpos login v1", want);
    assert_memory_equal(k, want, 32);
    assert_int_equal(mpos_hostmsg_env_key(tok, exp, k), MPOS_OK);
    ossl_hkdf(exp, 32, tok, "openmpos host envelope v1", want);
    assert_memory_equal(k, want, 32);
    /* Bound to the connection: another exporter value gives another key. */
    exp[0] ^= 1;
    assert_int_equal(mpos_hostmsg_env_key(tok, exp, want), MPOS_OK);
    assert_memory_not_equal(k, want, 32);
}

/* A message of the given type with the given fields (by hand: the writer has no table), each
 * with a value valid for its tag; parsed into *m. */
static int parse_with(mpos_hostmsg *m, uint8_t *buf, uint8_t type, const uint8_t *tags,
                      size_t n_tags)
{
    size_t n = 0;
    buf[n++] = type;
    for (size_t i = 0; i < n_tags; i++) {
        uint16_t min = 0;
        assert_true(mpos_hostmsg_tag_range(tags[i], &min, NULL));
        uint16_t len = min > 0 ? min : 1;
        buf[n++] = tags[i];
        mpos_store_be16(buf + n, len);
        n += 2;
        /* '1' is valid for every kind of value of the tags used below. */
        memset(buf + n, tags[i] == MPOS_HM_TXN_TYPE ? 1 : '1', len);
        if (tags[i] == MPOS_HM_DEBUGGER || tags[i] == MPOS_HM_ROOT) {
            buf[n] = 0; /* a flag: 0/1 */
        }
        n += len;
    }
    return mpos_hostmsg_parse(m, buf, n);
}

static const uint8_t ENV_TAGS[] = {MPOS_HM_LAT,      MPOS_HM_LON,         MPOS_HM_ACCURACY,
                                   MPOS_HM_LOC_TIME, MPOS_HM_DEVICE_ID,   MPOS_HM_DEBUGGER,
                                   MPOS_HM_ROOT,     MPOS_HM_BINARY_HASH, MPOS_HM_COUNTER};

/* The per-type table of 1.3: what a type may carry, what it must, unknown types. */
static void test_type_fields(void **state)
{
    (void)state;
    static uint8_t buf[1024];
    uint8_t tags[40];
    mpos_hostmsg m;
    uint64_t allowed = 1;
    uint64_t required = 1;
    const uint64_t env = MPOS_HOSTMSG_ENVELOPE_FIELDS;

    /* The table itself, written out from 1.3. */
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_LOGIN, &allowed, &required), 1);
    assert_true(allowed ==
                (env | MPOS_HOSTMSG_BIT(MPOS_HM_MERCHANT) | MPOS_HOSTMSG_BIT(MPOS_HM_USERNAME) |
                 MPOS_HOSTMSG_BIT(MPOS_HM_PASSWORD)));
    assert_true(required == allowed);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_RESUME, &allowed, &required), 1);
    assert_true(allowed == (env | MPOS_HOSTMSG_BIT(MPOS_HM_SESSION_TOKEN)) && required == allowed);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_TUNNEL, &allowed, &required), 1);
    assert_true(allowed == (env | MPOS_HOSTMSG_BIT(MPOS_HM_DATA)) && required == allowed);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_TXN_BEGIN, &allowed, &required), 1);
    assert_true((allowed & MPOS_HOSTMSG_BIT(MPOS_HM_REFERENCE)) != 0);
    assert_true(required == (allowed & ~MPOS_HOSTMSG_BIT(MPOS_HM_REFERENCE)));
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_SETTLE, &allowed, &required), 1);
    assert_true(allowed == env && required == env);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_LOGOUT, &allowed, &required), 1);
    assert_true(allowed == env && required == env);
    /* Back end -> host: no envelope. */
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_TUNNEL_DOWN, &allowed, &required), 1);
    assert_true(allowed == MPOS_HOSTMSG_BIT(MPOS_HM_DATA) && required == allowed);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_TXN_OK, &allowed, &required), 1);
    assert_true(allowed ==
                    (MPOS_HOSTMSG_BIT(MPOS_HM_AMOUNT) | MPOS_HOSTMSG_BIT(MPOS_HM_CURRENCY)) &&
                required == 0);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_LOGOUT_OK, &allowed, &required), 1);
    assert_true(allowed == 0 && required == 0);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_TXN_RESULT, &allowed, &required), 1);
    assert_true((allowed & MPOS_HOSTMSG_BIT(MPOS_HM_MASKED_PAN)) != 0);
    assert_true((required & MPOS_HOSTMSG_BIT(MPOS_HM_MASKED_PAN)) == 0);
    assert_true((required & MPOS_HOSTMSG_BIT(MPOS_HM_SEQUENCE)) != 0);
    assert_int_equal(mpos_hostmsg_type_fields(MPOS_HOSTMSG_ERROR, &allowed, &required), 1);
    assert_true(required == MPOS_HOSTMSG_BIT(MPOS_HM_ERROR) &&
                allowed == (required | MPOS_HOSTMSG_BIT(MPOS_HM_MESSAGE)));
    /* Every required set lies in its allowed set, for every type byte; unknown: 0 and masks 0. */
    unsigned known = 0;
    for (unsigned t = 0; t < 256; t++) {
        int k = mpos_hostmsg_type_fields((uint8_t)t, &allowed, &required);
        known += (unsigned)k;
        assert_true((required & ~allowed) == 0);
        if (!k) {
            assert_true(allowed == 0 && required == 0);
        }
    }
    assert_int_equal(known, 14);
    assert_int_equal(mpos_hostmsg_type_fields(0x7E, NULL, NULL), 0);

    /* A TUNNEL with data and the envelope: allowed and complete (mac as a plain 32-byte
     * field here: the table, not the MAC, is under test). */
    size_t nt = 0;
    tags[nt++] = MPOS_HM_DATA;
    memcpy(tags + nt, ENV_TAGS, sizeof(ENV_TAGS));
    nt += sizeof(ENV_TAGS);
    tags[nt++] = MPOS_HM_MAC;
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TUNNEL, tags, nt), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK);
    /* Each envelope field and data missing in turn: still allowed, not complete. */
    for (size_t drop = 0; drop < nt; drop++) {
        uint8_t fewer[40];
        size_t k = 0;
        for (size_t i = 0; i < nt; i++) {
            if (i != drop) {
                fewer[k++] = tags[i];
            }
        }
        assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TUNNEL, fewer, k), MPOS_OK);
        assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
        assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_ERR_FORMAT);
    }
    /* A field of another message (password in a TUNNEL): not allowed, though complete. */
    uint8_t more[40];
    memcpy(more, tags, nt - 1);
    more[nt - 1] = MPOS_HM_PASSWORD;
    more[nt] = MPOS_HM_MAC;
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TUNNEL, more, nt + 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK);
    /* The envelope on a back end -> host message: not allowed. */
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TUNNEL_DOWN, tags, nt), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK);
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TUNNEL_DOWN, tags, 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
    /* TXN_BEGIN: reference optional (it comes first here so that it can be left out). */
    const uint8_t txn[] = {MPOS_HM_REFERENCE, MPOS_HM_TXN_TYPE, MPOS_HM_AMOUNT, MPOS_HM_CURRENCY};
    nt = 0;
    memcpy(tags, txn, sizeof(txn));
    nt += sizeof(txn);
    memcpy(tags + nt, ENV_TAGS, sizeof(ENV_TAGS));
    nt += sizeof(ENV_TAGS);
    tags[nt++] = MPOS_HM_MAC;
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TXN_BEGIN, tags, nt), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK);
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TXN_BEGIN, tags + 1, nt - 1), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK); /* no reference: fine */
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TXN_BEGIN, tags + 2, nt - 2), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_ERR_FORMAT); /* no txn-type */
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_TXN_BEGIN, tags, 4), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_ERR_FORMAT); /* no envelope */
    /* An unknown type: neither check passes, even for an empty message. */
    assert_int_equal(parse_with(&m, buf, 0x7E, tags, 0), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_ERR_FORMAT);
    /* LOGOUT_OK: nothing allowed, nothing required. */
    assert_int_equal(parse_with(&m, buf, MPOS_HOSTMSG_LOGOUT_OK, tags, 0), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(&m), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_required(&m), MPOS_OK);
    assert_int_equal(mpos_hostmsg_check_allowed(NULL), MPOS_ERR_ARG);
    assert_int_equal(mpos_hostmsg_check_required(NULL), MPOS_ERR_ARG);
}

int main(void)
{
    for (int i = 0; i < 32; i++) {
        KEY[i] = (uint8_t)(0x40 + i);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_by_hand),
        cmocka_unit_test(test_round_trip_envelope_mac),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_envelope_checks),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_type_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
