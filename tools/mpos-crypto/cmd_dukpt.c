/* mpos-crypto dukpt: AES DUKPT (X9.24-3-2017) and TDES DUKPT (X9.24-1-2009) keys
 * (docs/mpos-crypto.md, "dukpt"). */
#include <string.h>

#include "cli.h"
#include "mpos/dukpt.h"
#include "mpos/util.h"

static const char help_dukpt[] =
    "usage: mpos-crypto dukpt ik --scheme aes|tdes --bdk HEX --ksn HEX\n"
    "       mpos-crypto dukpt derive --scheme aes|tdes --bdk HEX --ksn HEX [--usage U]\n"
    "                                [--key-type T]\n"
    "  ik      the initial key (aes) or IPEK (tdes) of the KSN's device\n"
    "  derive  a transaction's key: the derivation key (aes) or transaction key (tdes), or\n"
    "          with --usage the working key\n"
    "(mpos-crypto dukpt ik --help, mpos-crypto dukpt derive --help)\n";

static const char help_ik[] =
    "usage: mpos-crypto dukpt ik --scheme aes|tdes --bdk HEX --ksn HEX\n"
    "  aes   BDK of 16, 24 or 32 bytes; KSN of 12 bytes (initial key ID + counter, the\n"
    "        counter is ignored). Prints the initial key (ANSI X9.24-3-2017).\n"
    "  tdes  BDK of 16 or 24 bytes; KSN of 10 bytes (the 21 counter bits are ignored).\n"
    "        Prints the 16-byte IPEK (ANSI X9.24-1-2009).\n";

static const char help_derive[] =
    "usage: mpos-crypto dukpt derive --scheme aes|tdes --bdk HEX --ksn HEX [--usage U]\n"
    "                                [--key-type T]\n"
    "Counter 0 is refused (it names the initial key: use dukpt ik).\n"
    "  aes   (ANSI X9.24-3-2017) BDK of 16, 24 or 32 bytes, KSN of 12 bytes, counter of at\n"
    "        most 16 one-bits. Without --usage: the intermediate derivation key.\n"
    "        --usage pin | mac-gen | mac-verify | mac-both | data-enc | data-dec |\n"
    "                data-both | kek (key encryption key; counter FFFFFFFF only)\n"
    "        --key-type aes128 | aes192 | aes256 | 2tdea | 3tdea | hmac128 | hmac192 |\n"
    "                   hmac256 (default: the BDK's AES type; never longer than the BDK)\n"
    "  tdes  (ANSI X9.24-1-2009) BDK of 16 or 24 bytes, KSN of 10 bytes, counter of at most\n"
    "        10 one-bits. Without --usage: the transaction key.\n"
    "        --usage pin | mac-req | mac-resp | data-req | data-resp (no --key-type)\n";

struct name_value {
    const char *name;
    int value;
};

static const struct name_value aes_usages[] = {
    {"pin", MPOS_DUKPT_AES_USAGE_PIN},
    {"mac-gen", MPOS_DUKPT_AES_USAGE_MAC_GEN},
    {"mac-verify", MPOS_DUKPT_AES_USAGE_MAC_VERIFY},
    {"mac-both", MPOS_DUKPT_AES_USAGE_MAC_BOTH},
    {"data-enc", MPOS_DUKPT_AES_USAGE_DATA_ENC},
    {"data-dec", MPOS_DUKPT_AES_USAGE_DATA_DEC},
    {"data-both", MPOS_DUKPT_AES_USAGE_DATA_BOTH},
    {"kek", MPOS_DUKPT_AES_USAGE_KEK},
};

static const struct name_value aes_key_types[] = {
    {"aes128", MPOS_DUKPT_AES_KEY_AES128},   {"aes192", MPOS_DUKPT_AES_KEY_AES192},
    {"aes256", MPOS_DUKPT_AES_KEY_AES256},   {"2tdea", MPOS_DUKPT_AES_KEY_2TDEA},
    {"3tdea", MPOS_DUKPT_AES_KEY_3TDEA},     {"hmac128", MPOS_DUKPT_AES_KEY_HMAC128},
    {"hmac192", MPOS_DUKPT_AES_KEY_HMAC192}, {"hmac256", MPOS_DUKPT_AES_KEY_HMAC256},
};

static const struct name_value tdes_usages[] = {
    {"pin", MPOS_DUKPT_TDES_USAGE_PIN},
    {"mac-req", MPOS_DUKPT_TDES_USAGE_MAC_REQ},
    {"mac-resp", MPOS_DUKPT_TDES_USAGE_MAC_RESP},
    {"data-req", MPOS_DUKPT_TDES_USAGE_DATA_REQ},
    {"data-resp", MPOS_DUKPT_TDES_USAGE_DATA_RESP},
};

/* Looks up the value of --option; a name not in the table is a usage error. */
static int lookup(const char *option, const char *name, const struct name_value *table, size_t n,
                  int *value)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, name) == 0) {
            *value = table[i].value;
            return CLI_OK;
        }
    }
    return cli_error(CLI_USAGE, "--%s: unknown value '%.20s' (try --help)", option, name);
}

/* Library errors: a call the contract refuses is a usage error, anything else a failure. */
static int lib_error(int rc)
{
    switch (rc) {
    case MPOS_ERR_KSN:
        return cli_error(CLI_USAGE, "--ksn: counter not allowed");
    case MPOS_ERR_KEY:
        return cli_error(CLI_USAGE, "--bdk: key not allowed");
    case MPOS_ERR_ARG:
    case MPOS_ERR_LENGTH:
        return cli_error(CLI_USAGE, "invalid arguments (try --help)");
    case MPOS_ERR_EXHAUSTED:
        return cli_error(CLI_FAIL, "DUKPT counter exhausted");
    default:
        return cli_error(CLI_FAIL, "derivation failed: %s", mpos_strerror(rc));
    }
}

/* The options both subcommands share, checked and decoded. */
struct dukpt_args {
    int aes;         /* 1: aes, 0: tdes */
    uint8_t bdk[64]; /* room beyond the longest BDK and KSN, so a wrong length is reported */
    size_t bdk_len;
    uint8_t ksn[64];
    size_t ksn_len;
};

static int common_args(const struct cli_opt *opts, size_t nopts, struct dukpt_args *a)
{
    const char *scheme, *bdk, *ksn;
    int rc = cli_need(opts, nopts, "scheme", &scheme);
    if (rc == CLI_OK) {
        rc = cli_need(opts, nopts, "bdk", &bdk);
    }
    if (rc == CLI_OK) {
        rc = cli_need(opts, nopts, "ksn", &ksn);
    }
    if (rc != CLI_OK) {
        return rc;
    }
    if (strcmp(scheme, "aes") == 0) {
        a->aes = 1;
    } else if (strcmp(scheme, "tdes") == 0) {
        a->aes = 0;
    } else {
        return cli_error(CLI_USAGE, "--scheme: must be aes or tdes");
    }
    rc = cli_hex("bdk", bdk, a->bdk, sizeof(a->bdk), &a->bdk_len);
    if (rc != CLI_OK) {
        return rc;
    }
    if (a->aes && a->bdk_len != 16 && a->bdk_len != 24 && a->bdk_len != 32) {
        return cli_error(CLI_USAGE, "--bdk: an AES BDK has 16, 24 or 32 bytes");
    }
    if (!a->aes && a->bdk_len != 16 && a->bdk_len != 24) {
        return cli_error(CLI_USAGE, "--bdk: a TDES BDK has 16 or 24 bytes");
    }
    rc = cli_hex("ksn", ksn, a->ksn, sizeof(a->ksn), &a->ksn_len);
    if (rc != CLI_OK) {
        return rc;
    }
    size_t want = a->aes ? MPOS_DUKPT_AES_KSN_LEN : MPOS_DUKPT_TDES_KSN_LEN;
    if (a->ksn_len != want) {
        return cli_error(CLI_USAGE, "--ksn: must be %zu bytes for --scheme %s", want,
                         a->aes ? "aes" : "tdes");
    }
    return CLI_OK;
}

static int cmd_ik(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"scheme", 1, NULL}, {"bdk", 1, NULL}, {"ksn", 1, NULL}};
    struct dukpt_args a;
    uint8_t key[MPOS_DUKPT_AES_MAX_KEY_LEN];
    size_t key_len = 0;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_ik);
    if (rc == CLI_OK) {
        rc = common_args(opts, CLI_NOPTS(opts), &a);
    }
    if (rc != CLI_OK) {
        goto exit;
    }
    if (a.aes) {
        key_len = a.bdk_len;
        rc = mpos_dukpt_aes_initial_key(cc, a.bdk, a.bdk_len, a.ksn, key);
    } else {
        key_len = MPOS_DUKPT_TDES_KEY_LEN;
        rc = mpos_dukpt_tdes_ipek(cc, a.bdk, a.bdk_len, a.ksn, key);
    }
    if (rc != MPOS_OK) {
        rc = lib_error(rc);
        goto exit;
    }
    cli_print_hex(key, key_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(a.bdk);
    return rc;
}

static int derive_aes(mpos_crypto_ctx *cc, const struct dukpt_args *a, const char *usage_name,
                      const char *type_name, uint8_t *key, size_t *key_len)
{
    int usage = 0, type = 0;
    uint32_t counter = mpos_load_be32(a->ksn + MPOS_DUKPT_AES_IKID_LEN);
    if (type_name != NULL && usage_name == NULL) {
        return cli_error(CLI_USAGE, "--key-type needs --usage");
    }
    int rc = usage_name == NULL
                 ? CLI_OK
                 : lookup("usage", usage_name, aes_usages, CLI_NOPTS(aes_usages), &usage);
    if (rc == CLI_OK && type_name != NULL) {
        rc = lookup("key-type", type_name, aes_key_types, CLI_NOPTS(aes_key_types), &type);
    }
    if (rc != CLI_OK) {
        return rc;
    }
    /* The contract's counter rules, with a message for each. */
    if (counter == 0) {
        return cli_error(CLI_USAGE, "--ksn: counter 0 names the initial key (use dukpt ik)");
    }
    if (usage == MPOS_DUKPT_AES_USAGE_KEK) {
        if (counter != MPOS_DUKPT_AES_UPDATE_COUNTER) {
            return cli_error(CLI_USAGE, "--usage kek: needs the counter FFFFFFFF");
        }
    } else if (mpos_popcount32(counter) > MPOS_DUKPT_AES_MAX_ONE_BITS) {
        return cli_error(CLI_USAGE, "--ksn: counter has more than %d one-bits",
                         MPOS_DUKPT_AES_MAX_ONE_BITS);
    }
    if (usage == 0) {
        *key_len = a->bdk_len;
        rc = mpos_dukpt_aes_derivation_key(cc, a->bdk, a->bdk_len, a->ksn, key);
        return rc == MPOS_OK ? CLI_OK : lib_error(rc);
    }
    if (type == 0) {
        type = a->bdk_len == 16   ? MPOS_DUKPT_AES_KEY_AES128
               : a->bdk_len == 24 ? MPOS_DUKPT_AES_KEY_AES192
                                  : MPOS_DUKPT_AES_KEY_AES256;
    }
    *key_len = mpos_dukpt_aes_key_len((enum mpos_dukpt_aes_key_type)type);
    if (*key_len > a->bdk_len) {
        return cli_error(CLI_USAGE, "--key-type: longer than the BDK (X9.24-3 derives no "
                                    "stronger key)");
    }
    rc =
        mpos_dukpt_aes_working_key(cc, a->bdk, a->bdk_len, a->ksn, (enum mpos_dukpt_aes_usage)usage,
                                   (enum mpos_dukpt_aes_key_type)type, key);
    return rc == MPOS_OK ? CLI_OK : lib_error(rc);
}

static int derive_tdes(mpos_crypto_ctx *cc, const struct dukpt_args *a, const char *usage_name,
                       const char *type_name, uint8_t *key, size_t *key_len)
{
    int usage = 0;
    uint32_t counter =
        ((uint32_t)(a->ksn[7] & 0x1F) << 16) | ((uint32_t)a->ksn[8] << 8) | a->ksn[9];
    if (type_name != NULL) {
        return cli_error(CLI_USAGE, "--key-type: not allowed with --scheme tdes");
    }
    if (usage_name != NULL) {
        int rc = lookup("usage", usage_name, tdes_usages, CLI_NOPTS(tdes_usages), &usage);
        if (rc != CLI_OK) {
            return rc;
        }
    }
    if (counter == 0) {
        return cli_error(CLI_USAGE, "--ksn: counter 0 names the IPEK (use dukpt ik)");
    }
    if (mpos_popcount32(counter) > MPOS_DUKPT_TDES_MAX_ONE_BITS) {
        return cli_error(CLI_USAGE, "--ksn: counter has more than %d one-bits",
                         MPOS_DUKPT_TDES_MAX_ONE_BITS);
    }
    *key_len = MPOS_DUKPT_TDES_KEY_LEN;
    int rc = usage == 0 ? mpos_dukpt_tdes_transaction_key(cc, a->bdk, a->bdk_len, a->ksn, key)
                        : mpos_dukpt_tdes_working_key(cc, a->bdk, a->bdk_len, a->ksn,
                                                      (enum mpos_dukpt_tdes_usage)usage, key);
    return rc == MPOS_OK ? CLI_OK : lib_error(rc);
}

static int cmd_derive(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"scheme", 1, NULL},
                             {"bdk", 1, NULL},
                             {"ksn", 1, NULL},
                             {"usage", 1, NULL},
                             {"key-type", 1, NULL}};
    struct dukpt_args a;
    uint8_t key[MPOS_DUKPT_AES_MAX_KEY_LEN];
    size_t key_len = 0;
    int rc = cli_parse(argc, argv, opts, CLI_NOPTS(opts), help_derive);
    if (rc == CLI_OK) {
        rc = common_args(opts, CLI_NOPTS(opts), &a);
    }
    if (rc != CLI_OK) {
        goto exit;
    }
    const char *usage = cli_get(opts, CLI_NOPTS(opts), "usage");
    const char *type = cli_get(opts, CLI_NOPTS(opts), "key-type");
    rc = a.aes ? derive_aes(cc, &a, usage, type, key, &key_len)
               : derive_tdes(cc, &a, usage, type, key, &key_len);
    if (rc == CLI_OK) {
        cli_print_hex(key, key_len);
    }
exit:
    MPOS_WIPE_BUFFER(key);
    MPOS_WIPE_BUFFER(a.bdk);
    return rc;
}

int cli_cmd_dukpt(int argc, char **argv, mpos_crypto_ctx *cc)
{
    if (argc < 2) {
        return cli_error(CLI_USAGE, "dukpt: missing subcommand ik or derive (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help_dukpt, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_HELP;
    }
    if (strcmp(argv[1], "ik") == 0) {
        return cmd_ik(argc - 2, argv + 2, cc);
    }
    if (strcmp(argv[1], "derive") == 0) {
        return cmd_derive(argc - 2, argv + 2, cc);
    }
    return cli_error(CLI_USAGE, "dukpt: unknown subcommand '%s' (try --help)",
                     cli_echo_safe(argv[1]));
}
