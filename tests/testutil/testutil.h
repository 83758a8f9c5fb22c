/* Test helpers: hex literals and the scale knob for heavy tests. */
#ifndef MPOS_TESTUTIL_H
#define MPOS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Decodes a hex literal into out (aborts the test program on bad input); returns the length. */
size_t tu_hex(const char *hex, uint8_t *out, size_t cap);

/* Divisor for heavy tests: MPOS_TEST_SCALE (sanitizer builds set 10), default 1. */
unsigned tu_scale(void);

/* Path of the published vectors (MPOS_PUBLISHED_VECTORS), or NULL. */
const char *tu_published_vectors(void);

#endif
