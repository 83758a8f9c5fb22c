/* openmpos: AES-NI single-block encryption under a fresh key (internal to the facade). */
#ifndef MPOS_AES_NI_H
#define MPOS_AES_NI_H

#include <stddef.h>
#include <stdint.h>

/* 1 if this CPU has AES-NI and SSSE3, and the path was built. */
int mpos_aesni_supported(void);

/* Expands the key while encrypting one block (key_len 16, 24 or 32). The round keys live
 * only in registers and the stack frame, which is wiped before return. */
void mpos_aesni_encrypt_block(const uint8_t *key, size_t key_len, const uint8_t in[16],
                              uint8_t out[16]);

#endif
