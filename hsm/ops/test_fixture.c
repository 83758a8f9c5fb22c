/* The shared fixture of the hsm/ops tests (test_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mpos/util.h"
#include "test_fixture.h"
#include "testutil.h"

int hsm_test_open(hsm_vault *v, mpos_crypto_ctx *cc)
{
    uint8_t comps[2][HSM_LMK_LEN];
    uint8_t kcvs[2][HSM_KCV_LEN];
    for (size_t i = 0; i < HSM_LMK_LEN; i++) {
        comps[0][i] = (uint8_t)(0x01 + i);
        comps[1][i] = (uint8_t)(0x41 + i);
    }
    tu_hex("40DCDF64CB", kcvs[0], HSM_KCV_LEN);
    tu_hex("FB1523EC5F", kcvs[1], HSM_KCV_LEN);
    int rc = mpos_crypto_init(cc) == MPOS_OK && hsm_vault_init(v) == MPOS_OK &&
                     hsm_vault_open_components(v, (const uint8_t(*)[HSM_LMK_LEN])comps, 2,
                                               (const uint8_t(*)[HSM_KCV_LEN])kcvs) == MPOS_OK
                 ? 0
                 : -1;
    mpos_cleanse(comps, sizeof(comps));
    return rc;
}

void hsm_test_close(hsm_vault *v, mpos_crypto_ctx *cc)
{
    hsm_vault_close(v);
    mpos_crypto_clear(cc);
}

int hsm_test_all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc |= b[i];
    }
    return acc == 0;
}

struct hsm_kb_in hsm_test_in(const struct hsm_kb_out *o)
{
    struct hsm_kb_in r = {o->text, o->len};
    return r;
}

void hsm_test_kb(hsm_vault *v, const char *usage, char alg, char mode, char exp, uint8_t dukpt,
                 const char *hex, struct hsm_kb_out *out)
{
    hsm_key k;
    memset(&k, 0, sizeof(k));
    k.len = tu_hex(hex, k.bytes, sizeof(k.bytes));
    memcpy(k.attr.usage, usage, 3);
    k.attr.algorithm = alg;
    k.attr.mode = mode;
    k.attr.exportability = exp;
    k.attr.dukpt = dukpt;
    memset(out, 0, sizeof(*out));
    int rc = hsm_key_store(v, &k, out->text, sizeof(out->text), &out->len);
    if (rc != MPOS_OK) {
        print_message("hsm_key_store %s %c %c: %d (%s)\n", usage, alg, mode, rc,
                      v->why ? v->why : "");
    }
    hsm_key_clear(&k);
    assert_int_equal(rc, MPOS_OK);
}
