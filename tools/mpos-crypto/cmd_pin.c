/* mpos-crypto pin: ISO 9564-1 PIN blocks, formats 0, 1, 3 (TDES) and 4 (AES or SM4)
 * (docs/mpos-crypto.md, pin). Messages never echo a key, a PIN, a fill or a PAN. */
#include <string.h>

#include "cli.h"
#include "mpos/pin.h"
#include "mpos/util.h"

/* Hex inputs are decoded into buffers larger than any valid value, so that a wrong length is
 * reported with the length expected rather than a bare "too long". */
#define PIN_CLI_HEX_CAP 64

static const char help_pin[] =
    "usage: mpos-crypto pin encrypt | decrypt [options]   (mpos-crypto pin <sub> --help)\n"
    "  encrypt   build and encrypt an ISO 9564-1 PIN block (formats 0, 1, 3, 4)\n"
    "  decrypt   decrypt a PIN block, validate it strictly and print the PIN\n";

static const char help_encrypt[] =
    "usage: mpos-crypto pin encrypt --format 0|1|3|4 --pin DIGITS --pan DIGITS --key HEX\n"
    "                               [--cipher aes|tdes|sm4] [--fill HEX]\n"
    "  Prints the encrypted PIN block (ISO 9564-1:2017), 8 bytes (formats 0, 1, 3) or 16\n"
    "  bytes (format 4).\n"
    "  --format 0      0 N PIN F..F XOR 0000 + rightmost 12 PAN digits before the check digit\n"
    "  --format 1      1 N PIN fill; the fill is random 0-F; the PAN is not used\n"
    "  --format 3      like format 0 with a random fill of A-F\n"
    "  --format 4      E(K, E(K, PIN field) XOR PAN field); PIN field 4 N PIN A..A + 8 random\n"
    "                  bytes; PAN field M PAN 0..0 with M = PAN length - 12\n"
    "  --pin DIGITS    4 to 12 decimal digits\n"
    "  --pan DIGITS    12 to 19 decimal digits (optional and ignored for format 1)\n"
    "  --key HEX       formats 0, 1, 3: TDES, 16 or 24 bytes; format 4: AES, 16, 24 or 32\n"
    "                  bytes, or SM4, 16 bytes\n"
    "  --cipher C      tdes (default for formats 0, 1, 3), aes (default for format 4) or sm4\n"
    "                  (format 4 only)\n"
    "  --fill HEX      deterministic fill, for tests (default: from the CSPRNG); formats 1\n"
    "                  and 3: exactly 14 - (PIN length) hex digits, format 3 each A-F;\n"
    "                  format 4: exactly 16 hex digits (the random half); not with format 0\n";

static const char help_decrypt[] =
    "usage: mpos-crypto pin decrypt --format 0|1|3|4 --key HEX --block HEX --pan DIGITS\n"
    "                               [--cipher aes|tdes|sm4]\n"
    "  Decrypts a PIN block (ISO 9564-1:2017) and prints the PIN. The block is validated\n"
    "  strictly (control nibble, PIN length 4-12, digits, fill F / A-F / A by format); a block\n"
    "  that does not decode is exit 1, with no detail.\n"
    "  --format F      0, 1, 3 (8-byte block) or 4 (16-byte block)\n"
    "  --key HEX       formats 0, 1, 3: TDES, 16 or 24 bytes; format 4: AES, 16, 24 or 32\n"
    "                  bytes, or SM4, 16 bytes\n"
    "  --block HEX     the encrypted PIN block\n"
    "  --pan DIGITS    12 to 19 decimal digits (optional and ignored for format 1)\n"
    "  --cipher C      tdes (default for formats 0, 1, 3), aes (default for format 4) or sm4\n"
    "                  (format 4 only)\n";

/* The options both subcommands share, checked in the order of the contract. */
struct pin_common {
    enum mpos_pin_format format;
    enum mpos_cipher cipher;
    uint8_t key[PIN_CLI_HEX_CAP];
    size_t key_len;
    const char *pan; /* NULL for format 1 */
};

static const char *cipher_name(enum mpos_cipher cipher)
{
    return cipher == MPOS_CIPHER_AES ? "aes" : cipher == MPOS_CIPHER_SM4 ? "sm4" : "tdes";
}

static int parse_common(const struct cli_opt *opts, size_t nopts, struct pin_common *c)
{
    const char *format_s, *key_s, *cipher_s, *pan_s;
    int rc;
    if ((rc = cli_need(opts, nopts, "format", &format_s)) != CLI_OK) {
        return rc;
    }
    if (strcmp(format_s, "0") == 0) {
        c->format = MPOS_PIN_FORMAT_0;
    } else if (strcmp(format_s, "1") == 0) {
        c->format = MPOS_PIN_FORMAT_1;
    } else if (strcmp(format_s, "3") == 0) {
        c->format = MPOS_PIN_FORMAT_3;
    } else if (strcmp(format_s, "4") == 0) {
        c->format = MPOS_PIN_FORMAT_4;
    } else {
        return cli_error(CLI_USAGE, "--format: must be 0, 1, 3 or 4");
    }

    cipher_s = cli_get(opts, nopts, "cipher");
    if (cipher_s == NULL) {
        c->cipher = c->format == MPOS_PIN_FORMAT_4 ? MPOS_CIPHER_AES : MPOS_CIPHER_TDES;
    } else if (strcmp(cipher_s, "tdes") == 0) {
        c->cipher = MPOS_CIPHER_TDES;
    } else if (strcmp(cipher_s, "aes") == 0) {
        c->cipher = MPOS_CIPHER_AES;
    } else if (strcmp(cipher_s, "sm4") == 0) {
        c->cipher = MPOS_CIPHER_SM4;
    } else {
        return cli_error(CLI_USAGE, "--cipher: must be aes, tdes or sm4");
    }
    if (mpos_pin_cipher_check(c->format, c->cipher, 16) == MPOS_ERR_ARG) {
        return cli_error(CLI_USAGE,
                         "--cipher %s is not allowed with format %d (formats 0, 1, 3: tdes; "
                         "format 4: aes or sm4)",
                         cipher_name(c->cipher), (int)c->format);
    }

    if ((rc = cli_need(opts, nopts, "key", &key_s)) != CLI_OK ||
        (rc = cli_hex("key", key_s, c->key, sizeof(c->key), &c->key_len)) != CLI_OK) {
        return rc;
    }
    if (mpos_pin_cipher_check(c->format, c->cipher, c->key_len) != MPOS_OK) {
        return cli_error(CLI_USAGE, "--key: format %d with %s takes a key of %s bytes",
                         (int)c->format, cipher_name(c->cipher),
                         c->cipher == MPOS_CIPHER_TDES  ? "16 or 24"
                         : c->cipher == MPOS_CIPHER_AES ? "16, 24 or 32"
                                                        : "16");
    }

    /* Format 1 does not use the PAN: --pan is optional and ignored. */
    c->pan = NULL;
    if (c->format != MPOS_PIN_FORMAT_1) {
        if ((rc = cli_need(opts, nopts, "pan", &pan_s)) != CLI_OK) {
            return rc;
        }
        if (!mpos_pin_pan_valid(pan_s)) {
            return cli_error(CLI_USAGE, "--pan: must be 12 to 19 decimal digits");
        }
        c->pan = pan_s;
    }
    return CLI_OK;
}

/* --fill: one nibble per hex digit (an odd count is allowed: formats 1 and 3 take 14 - N). */
static int parse_fill(const char *fill_s, enum mpos_pin_format format, size_t pin_len,
                      uint8_t fill[MPOS_PIN_FILL_MAX_LEN], size_t *fill_len)
{
    if (format == MPOS_PIN_FORMAT_0) {
        return cli_error(CLI_USAGE, "--fill is not allowed with format 0 (its fill is F)");
    }
    size_t want = mpos_pin_fill_len(format, pin_len);
    size_t n = strlen(fill_s);
    if (n != want) {
        return cli_error(CLI_USAGE, "--fill: format %d with this PIN takes exactly %zu hex digits",
                         (int)format, want);
    }
    for (size_t i = 0; i < n; i++) {
        char ch = fill_s[i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                         : -1;
        if (v < 0) {
            return cli_error(CLI_USAGE, "--fill: not hex digits");
        }
        if (format == MPOS_PIN_FORMAT_3 && v < 10) {
            return cli_error(CLI_USAGE, "--fill: format 3 fill digits must each be A-F");
        }
        fill[i] = (uint8_t)v;
    }
    *fill_len = n;
    return CLI_OK;
}

/* A library error after the CLI's own checks: the crypto provider or the generator is a failed
 * operation; anything else is a rejected argument. */
static int lib_error(int rc)
{
    if (rc == MPOS_ERR_CRYPTO || rc == MPOS_ERR_RNG) {
        return cli_error(CLI_FAIL, "%s", mpos_strerror(rc));
    }
    return cli_error(CLI_USAGE, "%s", mpos_strerror(rc));
}

static int cmd_encrypt(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"format", 1, NULL}, {"pin", 1, NULL},    {"pan", 1, NULL},
                             {"key", 1, NULL},    {"cipher", 1, NULL}, {"fill", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    struct pin_common c;
    uint8_t fill[MPOS_PIN_FILL_MAX_LEN];
    uint8_t block[MPOS_PIN_BLOCK_MAX_LEN];
    size_t fill_len = 0, block_len = 0;
    const char *pin, *fill_s;
    memset(&c, 0, sizeof(c));
    memset(fill, 0, sizeof(fill));
    int rc = cli_parse(argc, argv, opts, nopts, help_encrypt);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = parse_common(opts, nopts, &c)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "pin", &pin)) != CLI_OK) {
        goto exit;
    }
    if (!mpos_pin_valid(pin)) {
        rc = cli_error(CLI_USAGE, "--pin: must be 4 to 12 decimal digits");
        goto exit;
    }
    fill_s = cli_get(opts, nopts, "fill");
    if (fill_s != NULL &&
        (rc = parse_fill(fill_s, c.format, strlen(pin), fill, &fill_len)) != CLI_OK) {
        goto exit;
    }
    int err = mpos_pin_block_encrypt(cc, c.format, c.cipher, c.key, c.key_len, pin, c.pan,
                                     fill_s != NULL ? fill : NULL, fill_len, block, &block_len);
    if (err != MPOS_OK) {
        rc = lib_error(err);
        goto exit;
    }
    cli_print_hex(block, block_len);
    rc = CLI_OK;
exit:
    MPOS_WIPE_CTX(&c);
    MPOS_WIPE_BUFFER(fill);
    MPOS_WIPE_BUFFER(block);
    return rc;
}

static int cmd_decrypt(int argc, char **argv, mpos_crypto_ctx *cc)
{
    struct cli_opt opts[] = {{"format", 1, NULL},
                             {"key", 1, NULL},
                             {"block", 1, NULL},
                             {"pan", 1, NULL},
                             {"cipher", 1, NULL}};
    const size_t nopts = CLI_NOPTS(opts);
    struct pin_common c;
    uint8_t block[PIN_CLI_HEX_CAP];
    size_t block_len = 0;
    char pin[MPOS_PIN_BUF_LEN];
    const char *block_s;
    memset(&c, 0, sizeof(c));
    memset(pin, 0, sizeof(pin));
    int rc = cli_parse(argc, argv, opts, nopts, help_decrypt);
    if (rc != CLI_OK) {
        goto exit;
    }
    if ((rc = parse_common(opts, nopts, &c)) != CLI_OK ||
        (rc = cli_need(opts, nopts, "block", &block_s)) != CLI_OK ||
        (rc = cli_hex("block", block_s, block, sizeof(block), &block_len)) != CLI_OK) {
        goto exit;
    }
    if (block_len != mpos_pin_block_len(c.format)) {
        rc = cli_error(CLI_USAGE, "--block: format %d takes a block of %zu bytes", (int)c.format,
                       mpos_pin_block_len(c.format));
        goto exit;
    }
    int err = mpos_pin_block_decrypt(cc, c.format, c.cipher, c.key, c.key_len, block, block_len,
                                     c.pan, pin);
    if (err == MPOS_ERR_DECODE) {
        /* One message whatever failed: no oracle on the clear block. */
        rc = cli_error(CLI_FAIL, "PIN block does not decode");
        goto exit;
    }
    if (err != MPOS_OK) {
        rc = lib_error(err);
        goto exit;
    }
    cli_print_text(pin);
    rc = CLI_OK;
exit:
    MPOS_WIPE_CTX(&c);
    MPOS_WIPE_BUFFER(pin);
    return rc;
}

int cli_cmd_pin(int argc, char **argv, mpos_crypto_ctx *cc)
{
    if (argc < 2) {
        return cli_error(CLI_USAGE, "missing pin subcommand: encrypt or decrypt (try --help)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help_pin, cli_io.out != NULL ? cli_io.out : stdout);
        return CLI_HELP;
    }
    if (strcmp(argv[1], "encrypt") == 0) {
        return cmd_encrypt(argc - 2, argv + 2, cc);
    }
    if (strcmp(argv[1], "decrypt") == 0) {
        return cmd_decrypt(argc - 2, argv + 2, cc);
    }
    /* Not echoed: a misplaced PIN must not reach the terminal's log. */
    return cli_error(CLI_USAGE, "unknown pin subcommand: encrypt or decrypt (try --help)");
}
