/* mpos-hsmd LMK sources at start-up: key components typed under dual control (here through a
 * pipe on standard input: component, check value, for each custodian, then "yes"), the refusal
 * of a wrong check value or of an unconfirmed LMK, and the PKCS#11 token (SoftHSM2 in a
 * temporary token folder; skipped without SoftHSM2). Each case starts hsmd and stops it by
 * pid. */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "harness.h"
#include "mpos/kcv.h"
#include "mpos/util.h"

#ifndef HSMD_PATH
#error "HSMD_PATH: path of the mpos-hsmd executable"
#endif
#ifndef MPOS_SOFTHSM_MODULE
#define MPOS_SOFTHSM_MODULE ""
#define MPOS_SOFTHSM_UTIL   ""
#endif

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/* What the custodians type: component and check value each, then the confirmation. */
static void custodian_input(struct hsmd_harness *h, const char *path, int bad_kcv,
                            const char *confirm)
{
    char text[512] = "", kcv_hex[2 * HSM_KCV_LEN + 1];
    uint8_t comp[HSM_LMK_LEN], kcv[HSM_KCV_LEN];
    for (int i = 0; i < 2; i++) {
        harness_hex(harness_component_hex[i], comp, sizeof(comp));
        assert_int_equal(mpos_kcv_compute(&h->vault.cc, MPOS_CIPHER_AES, MPOS_KCV_CMAC, comp,
                                          sizeof(comp), kcv, sizeof(kcv)),
                         0);
        if (bad_kcv && i == 1) {
            kcv[0] ^= 1;
        }
        mpos_hex_encode(kcv, sizeof(kcv), kcv_hex);
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n%s\n",
                 harness_component_hex[i], kcv_hex);
    }
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", confirm);
    write_file(path, text);
    MPOS_WIPE_BUFFER(comp);
}

static void test_components_dual_control(void **state)
{
    static const char *const lmk_args[] = {"--lmk-components", "2", NULL};
    struct hsmd_harness h;
    char input[160];
    hsm_client c;
    struct hsm_client_status st;
    (void)state;
    assert_int_equal(harness_init(&h), 0);
    snprintf(input, sizeof(input), "%s/custodians", h.dir);
    h.lmk_args = lmk_args;
    h.stdin_path = input;
    custodian_input(&h, input, 0, "yes");
    assert_int_equal(harness_start(&h, HSMD_PATH, NULL), 0);
    assert_int_equal(hsm_client_open(&c, h.sock[HARNESS_TOOLS], 5000), 0);
    assert_int_equal(hsm_client_status(&c, &st), 0);
    assert_memory_equal(st.lmk_kcv, h.lmk_kcv, HSM_KCV_LEN);
    hsm_client_close(&c);
    assert_int_equal(harness_stop(&h), 0);
    /* A component whose check value does not match, or an LMK nobody confirms: no start. */
    custodian_input(&h, input, 1, "yes");
    assert_int_not_equal(harness_start(&h, HSMD_PATH, NULL), 0);
    custodian_input(&h, input, 0, "no");
    assert_int_not_equal(harness_start(&h, HSMD_PATH, NULL), 0);
    unlink(input);
    harness_cleanup(&h);
}

static void test_pkcs11_token(void **state)
{
    struct hsmd_harness h;
    char conf[160], tokens[160], cmd[1024], wrapped[160], pin_file[160];
    hsm_vault v;
    hsm_client c;
    struct hsm_client_status st;
    (void)state;
    if (MPOS_SOFTHSM_MODULE[0] == '\0' || MPOS_SOFTHSM_UTIL[0] == '\0') {
        skip();
    }
    assert_int_equal(harness_init(&h), 0);
    snprintf(tokens, sizeof(tokens), "%s/tokens", h.dir);
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", h.dir);
    snprintf(wrapped, sizeof(wrapped), "%s/lmk.wrapped", h.dir);
    snprintf(pin_file, sizeof(pin_file), "%s/token.pin", h.dir);
    assert_int_equal(mkdir(tokens, 0700), 0);
    snprintf(cmd, sizeof(cmd), "directories.tokendir = %s\nobjectstore.backend = file\n", tokens);
    write_file(conf, cmd);
    assert_int_equal(setenv("SOFTHSM2_CONF", conf, 1), 0); /* hsmd inherits it */
    snprintf(cmd, sizeof(cmd),
             "'%s' --init-token --free --label mpos-test --so-pin 87654321 --pin 12345678 "
             ">/dev/null 2>&1",
             MPOS_SOFTHSM_UTIL);
    assert_int_equal(system(cmd), 0);
    /* mposctl hsm init, in-process: a new LMK, wrapped by the token. */
    struct hsm_pkcs11_config p11 = {MPOS_SOFTHSM_MODULE, "mpos-test", "12345678"};
    assert_int_equal(hsm_vault_init(&v), 0);
    assert_int_equal(hsm_vault_create_pkcs11(&v, &p11, wrapped), 0);
    uint8_t kcv[HSM_KCV_LEN];
    memcpy(kcv, v.lmk_kcv, sizeof(kcv));
    hsm_vault_close(&v);
    write_file(pin_file, "12345678\n");
    const char *const lmk_args[] = {
        "--lmk-pkcs11", "--pkcs11-module", MPOS_SOFTHSM_MODULE, "--token-label", "mpos-test",
        "--pin-file",   pin_file,          "--lmk-wrapped",     wrapped,         NULL};
    h.lmk_args = lmk_args;
    assert_int_equal(harness_start(&h, HSMD_PATH, NULL), 0);
    assert_int_equal(hsm_client_open(&c, h.sock[HARNESS_BACKEND], 5000), 0);
    assert_int_equal(hsm_client_status(&c, &st), 0);
    assert_memory_equal(st.lmk_kcv, kcv, HSM_KCV_LEN);
    hsm_client_close(&c);
    assert_int_equal(harness_stop(&h), 0);
    /* A PIN file others can read: refused. */
    assert_int_equal(chmod(pin_file, 0644), 0);
    assert_int_not_equal(harness_start(&h, HSMD_PATH, NULL), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s' '%s'", tokens, conf, wrapped, pin_file);
    assert_int_equal(system(cmd), 0);
    harness_cleanup(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_components_dual_control),
        cmocka_unit_test(test_pkcs11_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
