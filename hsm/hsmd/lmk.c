/* mpos-hsmd: the LMK at start-up, from a PKCS#11 token, from components typed under dual
 * control, or from a components file (tests). Every buffer that held a component, a check
 * value line or the token PIN is wiped before return. */
#include "hsmd.h"

#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "mpos/util.h"

#define LINE_LEN 256

/* Reads one line from f into line (without the newline); echo off on a terminal. */
static int read_line(FILE *f, char *line, size_t cap, int secret)
{
    struct termios old, quiet;
    int tty = secret && isatty(fileno(f)) && tcgetattr(fileno(f), &old) == 0;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
        tty = tcsetattr(fileno(f), TCSAFLUSH, &quiet) == 0;
    }
    char *r = fgets(line, (int)cap, f);
    if (tty) {
        (void)tcsetattr(fileno(f), TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (r == NULL) {
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return 0;
}

static int decode_exact(const char *hex, uint8_t *out, size_t len)
{
    size_t got = 0;
    return mpos_hex_decode(hex, out, len, &got) == MPOS_OK && got == len ? 0 : -1;
}

/* A components file: one "COMPONENT_HEX KCV_HEX" line per component (2 or 3), '#' comments. */
static int read_components_file(const char *path, uint8_t comps[][HSM_LMK_LEN],
                                uint8_t kcvs[][HSM_KCV_LEN], size_t *n)
{
    char line[LINE_LEN], iobuf[4 * LINE_LEN];
    int rc = -1;
    *n = 0;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        perror("mpos-hsmd: components file");
        return -1;
    }
    setvbuf(f, iobuf, _IOFBF, sizeof(iobuf)); /* stdio's copy of the secrets is ours to wipe */
    while (read_line(f, line, sizeof(line), 0) == 0) {
        char *comp = line + strspn(line, " \t");
        if (*comp == '#' || *comp == '\0') {
            continue;
        }
        char *sp = comp + strcspn(comp, " \t");
        if (*sp == '\0' || *n == HSM_MAX_COMPONENTS) {
            goto exit;
        }
        *sp++ = '\0';
        char *kcv = sp + strspn(sp, " \t");
        kcv[strcspn(kcv, " \t")] = '\0';
        if (decode_exact(comp, comps[*n], HSM_LMK_LEN) != 0 ||
            decode_exact(kcv, kcvs[*n], HSM_KCV_LEN) != 0) {
            goto exit;
        }
        (*n)++;
    }
    rc = *n >= 2 ? 0 : -1;
exit:
    if (rc != 0) {
        fprintf(stderr,
                "mpos-hsmd: components file %s: expected 2 or 3 lines of a 64-hex-digit "
                "component and its 10-hex-digit check value\n",
                path);
    }
    MPOS_WIPE_BUFFER(line);
    fclose(f);
    MPOS_WIPE_BUFFER(iobuf);
    return rc;
}

/* Dual control: each custodian types a component and its check value (no echo). */
static int prompt_components(unsigned n, uint8_t comps[][HSM_LMK_LEN], uint8_t kcvs[][HSM_KCV_LEN])
{
    char line[LINE_LEN];
    int rc = -1;
    setvbuf(stdin, NULL, _IONBF, 0); /* no stdio buffer keeps a copy of a component */
    for (unsigned i = 0; i < n; i++) {
        fprintf(stderr, "custodian %u: LMK component %u of %u (64 hex digits, not shown): ", i + 1,
                i + 1, n);
        if (read_line(stdin, line, sizeof(line), 1) != 0 ||
            decode_exact(line, comps[i], HSM_LMK_LEN) != 0) {
            fprintf(stderr, "mpos-hsmd: component %u: not 64 hex digits\n", i + 1);
            goto exit;
        }
        fprintf(stderr, "custodian %u: check value of component %u (10 hex digits): ", i + 1,
                i + 1);
        if (read_line(stdin, line, sizeof(line), 0) != 0 ||
            decode_exact(line, kcvs[i], HSM_KCV_LEN) != 0) {
            fprintf(stderr, "mpos-hsmd: check value %u: not 10 hex digits\n", i + 1);
            goto exit;
        }
    }
    rc = 0;
exit:
    MPOS_WIPE_BUFFER(line);
    return rc;
}

static int confirm_lmk(const hsm_vault *v)
{
    char hex[2 * HSM_KCV_LEN + 1], line[16];
    mpos_hex_encode(v->lmk_kcv, HSM_KCV_LEN, hex);
    fprintf(stderr, "LMK check value %s. Confirm (yes/no): ", hex);
    if (read_line(stdin, line, sizeof(line), 0) != 0 || strcmp(line, "yes") != 0) {
        fprintf(stderr, "mpos-hsmd: LMK not confirmed\n");
        return -1;
    }
    return 0;
}

static int read_pin_file(const char *path, char *pin, size_t cap)
{
    if (hsmd_check_secret_file(path) != 0) {
        return -1;
    }
    char iobuf[LINE_LEN];
    FILE *f = fopen(path, "re");
    int rc = -1;
    if (f == NULL) {
        perror("mpos-hsmd: PIN file");
        return -1;
    }
    setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
    if (read_line(f, pin, cap, 0) == 0 && pin[0] != '\0') {
        rc = 0;
    }
    fclose(f);
    MPOS_WIPE_BUFFER(iobuf);
    return rc;
}

int hsmd_lmk_open(hsm_vault *v, const struct hsmd_config *c)
{
    uint8_t comps[HSM_MAX_COMPONENTS][HSM_LMK_LEN];
    uint8_t kcvs[HSM_MAX_COMPONENTS][HSM_KCV_LEN];
    char pin[LINE_LEN];
    size_t n = 0;
    int rc = -1;
    switch (c->lmk_source) {
    case HSMD_LMK_PKCS11: {
        if (hsmd_check_secret_file(c->lmk_wrapped) != 0 ||
            read_pin_file(c->pin_file, pin, sizeof(pin)) != 0) {
            goto exit;
        }
        struct hsm_pkcs11_config p11 = {c->pkcs11_module, c->token_label, pin};
        if (hsm_vault_open_pkcs11(v, &p11, c->lmk_wrapped) != MPOS_OK) {
            fprintf(stderr, "mpos-hsmd: cannot open the LMK from the token: %s\n",
                    v->why != NULL ? v->why : "refused");
            goto exit;
        }
        break;
    }
    case HSMD_LMK_COMPONENTS_FILE:
        if (hsmd_check_secret_file(c->components_file) != 0 ||
            read_components_file(c->components_file, comps, kcvs, &n) != 0) {
            goto exit;
        }
        if (hsm_vault_open_components(v, (const uint8_t(*)[HSM_LMK_LEN])comps, n,
                                      (const uint8_t(*)[HSM_KCV_LEN])kcvs) != MPOS_OK) {
            fprintf(stderr, "mpos-hsmd: LMK components refused: %s\n",
                    v->why != NULL ? v->why : "a check value does not match");
            goto exit;
        }
        break;
    case HSMD_LMK_COMPONENTS:
        n = c->components;
        if (prompt_components(c->components, comps, kcvs) != 0) {
            goto exit;
        }
        if (hsm_vault_open_components(v, (const uint8_t(*)[HSM_LMK_LEN])comps, n,
                                      (const uint8_t(*)[HSM_KCV_LEN])kcvs) != MPOS_OK) {
            fprintf(stderr, "mpos-hsmd: LMK components refused: %s\n",
                    v->why != NULL ? v->why : "a check value does not match");
            goto exit;
        }
        if (confirm_lmk(v) != 0) {
            goto exit;
        }
        break;
    default:
        goto exit;
    }
    rc = 0;
exit:
    MPOS_WIPE_BUFFER(comps);
    MPOS_WIPE_BUFFER(kcvs);
    MPOS_WIPE_BUFFER(pin);
    return rc;
}
