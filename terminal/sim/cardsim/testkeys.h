/* openmpos simulator: the virtual card's fixed RSA test keys (PKCS #8 PEM), see testkeys.c. */
#ifndef MPOS_CARDSIM_TESTKEYS_H
#define MPOS_CARDSIM_TESTKEYS_H

extern const char mpos_cardsim_ca_key_pem[];  /* certification authority, 1408 bits, e=3 */
extern const char mpos_cardsim_iss_key_pem[]; /* issuer, 1152 bits, e=3 */
extern const char mpos_cardsim_icc_key_pem[]; /* ICC PIN encipherment, 1024 bits, e=65537 */

#define MPOS_CARDSIM_CA_INDEX 0xF1 /* CA Public Key Index '8F' of the test CA */

#endif
