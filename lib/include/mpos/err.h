/* openmpos: one error convention for the whole library.
 *
 * 0 is success. A negative value is an enum mpos_err: the call could not do its job (bad
 * argument, malformed input, a check that failed, an internal error). Positive values are
 * reserved for business outcomes of higher layers (declined, retry) and never come from lib/.
 */
#ifndef MPOS_ERR_H
#define MPOS_ERR_H

#if defined(__GNUC__) || defined(__clang__)
#define MPOS_MUST_CHECK __attribute__((warn_unused_result))
#else
#define MPOS_MUST_CHECK
#endif

enum mpos_err {
    MPOS_OK = 0,
    MPOS_ERR_ARG = -1,         /* NULL pointer, unknown enum value, option out of range */
    MPOS_ERR_LENGTH = -2,      /* an input or output length the operation does not take */
    MPOS_ERR_FORMAT = -3,      /* malformed encoding (hex, digits, header, TLV ...) */
    MPOS_ERR_CRYPTO = -4,      /* the crypto provider failed */
    MPOS_ERR_KEY = -5,         /* key of the wrong type, length or attributes */
    MPOS_ERR_VERIFY = -6,      /* a MAC, check value or cryptogram did not verify */
    MPOS_ERR_KSN = -7,         /* a KSN no valid terminal produces */
    MPOS_ERR_EXHAUSTED = -8,   /* DUKPT counter exhausted: the device needs a new key */
    MPOS_ERR_PIN = -9,         /* PIN length or digits not allowed */
    MPOS_ERR_PAN = -10,        /* PAN length or digits not allowed */
    MPOS_ERR_DECODE = -11,     /* a decrypted PIN block or key field is not well formed */
    MPOS_ERR_USAGE = -12,      /* key usage or mode of use does not allow the operation */
    MPOS_ERR_RNG = -13,        /* the random generator failed */
    MPOS_ERR_UNSUPPORTED = -14 /* valid by the standard, but not implemented here */
};

/* A short, fixed English description of an error code (never contains data). */
const char *mpos_strerror(int err);

#endif
