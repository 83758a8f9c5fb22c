/* libFuzzer target: lib/iso8583.
 *
 * Unpacks the input as one message; when it is accepted, packs it again and checks the bytes
 * are the same (the profile has one encoding per message), that one byte less room gives
 * MPOS_ERR_LENGTH, that every value points inside the input, and that mac_range agrees with
 * the MAC field. Also reads the input as a framed stream.
 *
 * Build and run by hand:
 *   clang -fsanitize=fuzzer,address,undefined -I lib/include fuzz/fuzz_iso8583.c \
 *       lib/iso8583/iso8583.c lib/util/err.c lib/util/util.c -lcrypto -o /tmp/fuzz_iso8583 \
 *       && /tmp/fuzz_iso8583 -max_total_time=30
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpos/iso8583.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mpos_iso8583_msg m;
    static uint8_t out[70000];
    size_t out_len = 0, mac_in = 0;

    /* As a framed stream. */
    const uint8_t *md = NULL;
    size_t ml = 0, fl = 0;
    int r = mpos_iso8583_frame_parse(data, size, &md, &ml, &fl);
    CHECK(r == MPOS_OK || r == MPOS_ERR_LENGTH || r == MPOS_ERR_FORMAT);
    if (r == MPOS_OK) {
        CHECK(md == data + 2 && fl == ml + 2 && fl <= size);
    } else {
        CHECK(md == NULL && ml == 0 && fl == 0);
    }

    /* As one message. */
    r = mpos_iso8583_unpack(data, size, &m);
    int mr = mpos_iso8583_mac_range(data, size, &mac_in);
    if (r != MPOS_OK) {
        CHECK(r == MPOS_ERR_FORMAT && mr == MPOS_ERR_FORMAT && mac_in == 0);
        return 0;
    }
    int mac_field = mpos_iso8583_has(&m, 128) ? 128 : mpos_iso8583_has(&m, 64) ? 64 : 0;
    CHECK(!(mpos_iso8583_has(&m, 64) && mpos_iso8583_has(&m, 128)));
    if (mac_field != 0) {
        CHECK(mr == MPOS_OK && mac_in == size - 8 && m.value[mac_field] == data + mac_in);
    } else {
        CHECK(mr == MPOS_ERR_FORMAT);
    }
    for (unsigned f = 0; f <= MPOS_ISO8583_MAX_FIELD; f++) {
        const uint8_t *v;
        size_t l;
        int p;
        if (mpos_iso8583_get(&m, f, &v, &l, &p) != MPOS_OK) {
            CHECK(!mpos_iso8583_has(&m, f));
            continue;
        }
        if (p) {
            CHECK(v >= data && l <= size && (size_t)(v - data) <= size - l);
        }
    }
    r = mpos_iso8583_pack(&m, out, sizeof(out), &out_len);
    CHECK(r == MPOS_OK && out_len == size && memcmp(out, data, size) == 0);
    r = mpos_iso8583_pack(&m, out, size - 1, &out_len);
    CHECK(r == MPOS_ERR_LENGTH && out_len == 0);
    return 0;
}
