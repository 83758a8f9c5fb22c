/* openmpos: counter arithmetic and state checksum shared by the AES and TDES DUKPT
 * terminals (internal to lib/dukpt). */
#ifndef MPOS_DUKPT_INTERNAL_H
#define MPOS_DUKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/util.h"

/* The lowest one-bit of c (0 when c is 0). */
static inline uint32_t dukpt_lowest_bit(uint32_t c)
{
    return c & (0u - c);
}

/* Position of the one-bit of bit (a power of two). */
static inline unsigned dukpt_bit_index(uint32_t bit)
{
    unsigned i = 0;
    while (bit > 1u) {
        bit >>= 1;
        i++;
    }
    return i;
}

/* The counter whose lowest one-bit is bit p, with the bits of c above p. */
static inline uint32_t dukpt_register_counter(uint32_t c, unsigned p)
{
    uint32_t at_or_below = (uint32_t)((UINT64_C(2) << p) - 1u);
    return (c & ~at_or_below) | ((uint32_t)1 << p);
}

/* The registers a terminal holds when `next` is its next counter (bit p set: register p
 * holds the key of dukpt_register_counter(next, p)): the register of next's lowest one-bit
 * and, above it, those whose bit in next is zero (the counters reached by a carry into that
 * bit). None when next is 0 (exhausted). */
static inline uint32_t dukpt_live_registers(uint32_t next, uint32_t counter_mask)
{
    uint32_t low = dukpt_lowest_bit(next);
    return next == 0 ? 0 : (~next | low) & ~(low - 1u) & counter_mask;
}

/* The counter after c (X9.24-3-2017 6.1, X9.24-1-2009 A.2 "New Key"): c + 1 while c has fewer
 * than max_one_bits one-bits; otherwise c + its lowest one-bit, which skips every counter
 * with too many one-bits. 0 when the result leaves the counter space (exhausted). */
static inline uint32_t dukpt_following(uint32_t c, unsigned max_one_bits, uint32_t counter_mask)
{
    uint64_t n =
        (uint64_t)c + (mpos_popcount32(c) < max_one_bits ? 1u : (uint64_t)dukpt_lowest_bit(c));
    return n > counter_mask ? 0 : (uint32_t)n;
}

/* 1 if the len bytes at p are all zero (time depends only on len). */
static inline int dukpt_all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

/* CRC-32 (ISO 3309 / IEEE 802.3, reflected, as zlib's crc32) of the exported states: it
 * detects storage corruption, not tampering. */
uint32_t mpos_dukpt_crc32(const uint8_t *p, size_t len);

#endif
