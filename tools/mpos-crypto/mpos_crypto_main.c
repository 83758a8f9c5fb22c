/* mpos-crypto: process entry point. */
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv)
{
    mpos_crypto_ctx cc;
    cli_io.out = stdout;
    cli_io.err = stderr;
    if (mpos_crypto_init(&cc) != MPOS_OK) {
        fputs("mpos-crypto: cannot initialise libcrypto\n", stderr);
        return CLI_FAIL;
    }
    int rc = cli_main(argc, argv, &cc);
    mpos_crypto_clear(&cc);
    if (fflush(stdout) != 0) {
        return CLI_FAIL;
    }
    return rc;
}
