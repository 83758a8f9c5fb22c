/* openmpos: TR-31 internals shared by the header parser and the key-block code. */
#ifndef MPOS_TR31_INT_H
#define MPOS_TR31_INT_H

#include <stddef.h>

/* Cipher block length of a supported version ('B' 8, 'D' 16), 0 for any other. */
size_t tr31_block_len(char version);

/* Longest key of an algorithm (the key-length obfuscation target) in a key block of this
 * version with these extension flags (mpos/tr31.h MPOS_TR31_EXT_*), 0 if not wrappable. */
size_t tr31_max_key_len(char version, char algorithm, unsigned flags);

/* 1 if c is '0'-'9' or 'A'-'F' (hex inside a key block is uppercase only). */
int tr31_is_hex(char c);

/* Value of an uppercase hex digit (call only when tr31_is_hex(c)). */
unsigned tr31_hex_value(char c);

/* 1 if s[0..n) are all uppercase hex digits. */
int tr31_all_hex(const char *s, size_t n);

#endif
