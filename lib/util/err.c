/* openmpos: error descriptions. */
#include "mpos/err.h"

const char *mpos_strerror(int err)
{
    switch (err) {
    case MPOS_OK:
        return "success";
    case MPOS_ERR_ARG:
        return "invalid argument";
    case MPOS_ERR_LENGTH:
        return "wrong length";
    case MPOS_ERR_FORMAT:
        return "malformed input";
    case MPOS_ERR_CRYPTO:
        return "crypto provider failure";
    case MPOS_ERR_KEY:
        return "key not allowed for this operation";
    case MPOS_ERR_VERIFY:
        return "verification failed";
    case MPOS_ERR_KSN:
        return "KSN not valid";
    case MPOS_ERR_EXHAUSTED:
        return "DUKPT counter exhausted";
    case MPOS_ERR_PIN:
        return "PIN not valid";
    case MPOS_ERR_PAN:
        return "PAN not valid";
    case MPOS_ERR_DECODE:
        return "decrypted block does not decode";
    case MPOS_ERR_USAGE:
        return "key usage does not allow this operation";
    case MPOS_ERR_RNG:
        return "random generator failure";
    case MPOS_ERR_UNSUPPORTED:
        return "not supported";
    default:
        return "unknown error";
    }
}
