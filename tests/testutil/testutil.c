#include <stdio.h>
#include <stdlib.h>

#include "mpos/util.h"
#include "testutil.h"

size_t tu_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t len = 0;
    if (mpos_hex_decode(hex, out, cap, &len) != MPOS_OK) {
        fprintf(stderr, "bad hex literal in test: %s\n", hex);
        abort();
    }
    return len;
}

unsigned tu_scale(void)
{
    const char *s = getenv("MPOS_TEST_SCALE");
    long v = s != NULL ? strtol(s, NULL, 10) : 1;
    return v >= 1 ? (unsigned)v : 1u;
}

const char *tu_published_vectors(void)
{
    return getenv("MPOS_PUBLISHED_VECTORS");
}
