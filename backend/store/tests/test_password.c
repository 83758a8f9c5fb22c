/* Unit tests: operator password policy and Argon2id hashing (mpos/password.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <argon2.h>
#include <cmocka.h>

#include "mpos/password.h"

static void test_policy(void **state)
{
    (void)state;
    static const struct {
        const char *user;
        const char *pw;
        int reason;
    } cases[] = {
        {"alice", "", MPOS_PASSWORD_TOO_SHORT},
        {"alice", "Abcdefgh123", MPOS_PASSWORD_TOO_SHORT}, /* 11 characters */
        {"alice", "Abcdefgh1234", MPOS_PASSWORD_OK},       /* 12 */
        {"alice",
         "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
         "abcd1",
         MPOS_PASSWORD_TOO_SHORT},
        {"alice", "abcdefghijklmnop", MPOS_PASSWORD_ONE_CLASS},
        {"alice", "ABCDEFGHIJKLMNOP", MPOS_PASSWORD_ONE_CLASS},
        {"alice", "1234567890123456", MPOS_PASSWORD_ONE_CLASS},
        {"alice", "!@#$%^&*()_+-=[]", MPOS_PASSWORD_ONE_CLASS},
        {"alice", "abababababab1212", MPOS_PASSWORD_REPETITIVE},
        {"alice", "aaaaaaaaaaaaaaa1", MPOS_PASSWORD_REPETITIVE},
        {"alice", "xxALICExx-2024-ok", MPOS_PASSWORD_HAS_USERNAME},
        {"alice", "correct horse battery staple", MPOS_PASSWORD_OK}, /* space counts as a class */
        {"bob", "Bob's own phrase 42", MPOS_PASSWORD_HAS_USERNAME},
        {NULL, "Bob's own phrase 42", MPOS_PASSWORD_OK},
        {"alice", "new\nline-Password1", MPOS_PASSWORD_BAD_CHARS},
        {"alice",
         "del\x7F"
         "-Password12",
         MPOS_PASSWORD_BAD_CHARS},
        {"alice",
         "bad\xC3"
         "-utf8-Password1",
         MPOS_PASSWORD_BAD_CHARS},
        {"alice",
         "overlong\xC0\xAF"
         "-Password1",
         MPOS_PASSWORD_BAD_CHARS},
        {"alice",
         "p\xC3\xA4ssw\xC3\xB6rd-f\xC3\xBC"
         "r-mich",
         MPOS_PASSWORD_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = mpos_password_policy_check(cases[i].user, cases[i].pw);
        if (r != cases[i].reason) {
            print_error("case %zu: reason %d, expected %d\n", i, r, cases[i].reason);
        }
        assert_int_equal(r, cases[i].reason);
    }
    char longpw[MPOS_PASSWORD_MAX_BYTES + 2];
    memset(longpw, 'a', sizeof(longpw) - 1);
    longpw[0] = 'B';
    longpw[1] = '1';
    longpw[2] = 'c';
    longpw[3] = 'd';
    longpw[4] = 'e';
    longpw[sizeof(longpw) - 1] = '\0';
    assert_int_equal(mpos_password_policy_check("alice", longpw), MPOS_PASSWORD_TOO_LONG);
    longpw[sizeof(longpw) - 2] = '\0';
    assert_int_equal(mpos_password_policy_check("alice", longpw), MPOS_PASSWORD_OK);
    /* Every message is one line and never echoes the password. */
    for (int r = 0; r <= MPOS_PASSWORD_HAS_USERNAME; r++) {
        const char *m = mpos_password_policy_message(r);
        assert_non_null(m);
        assert_null(strchr(m, '\n'));
    }
}

static void test_hash_verify(void **state)
{
    (void)state;
    char h1[MPOS_PASSWORD_HASH_LEN + 1], h2[MPOS_PASSWORD_HASH_LEN + 1];
    const char pw[] = "correct horse battery staple";
    assert_int_equal(mpos_password_hash(pw, h1, sizeof(h1)), MPOS_OK);
    assert_int_equal(mpos_password_hash(pw, h2, sizeof(h2)), MPOS_OK);
    /* Argon2id, the documented parameters, a fresh salt each time. */
    assert_int_equal(strncmp(h1, "$argon2id$v=19$m=65536,t=3,p=1$", 31), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(mpos_password_needs_rehash(h1), 0);
    assert_int_equal(mpos_password_verify(h1, pw), MPOS_OK);
    assert_int_equal(mpos_password_verify(h2, pw), MPOS_OK);
    assert_int_equal(mpos_password_verify(h1, "correct horse battery stapl"), MPOS_ERR_VERIFY);
    assert_int_equal(mpos_password_verify(h1, ""), MPOS_ERR_VERIFY);
    /* The salt field: 16 bytes, unpadded base64. */
    char salt_b64[32];
    const char *p = h1 + 31;
    const char *dollar = strchr(p, '$');
    assert_non_null(dollar);
    memcpy(salt_b64, p, (size_t)(dollar - p));
    salt_b64[dollar - p] = '\0';
    assert_int_equal(strlen(salt_b64), 22); /* 16 bytes, unpadded base64 */
    /* Older or other parameters: still verify, but flagged for re-hash. */
    char weak[128];
    uint8_t salt[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    assert_int_equal(argon2id_hash_encoded(1, 1024, 1, pw, strlen(pw), salt, sizeof(salt), 32, weak,
                                           sizeof(weak)),
                     ARGON2_OK);
    assert_int_equal(mpos_password_verify(weak, pw), MPOS_OK);
    assert_int_equal(mpos_password_needs_rehash(weak), 1);
    /* Not Argon2id: refused outright (no argon2i/argon2d downgrade). */
    char argon2i[128];
    assert_int_equal(argon2i_hash_encoded(3, 1024, 1, pw, strlen(pw), salt, sizeof(salt), 32,
                                          argon2i, sizeof(argon2i)),
                     ARGON2_OK);
    assert_int_equal(mpos_password_verify(argon2i, pw), MPOS_ERR_FORMAT);
    assert_int_equal(mpos_password_verify("$argon2id$garbage", pw), MPOS_ERR_FORMAT);
    char small[16];
    assert_int_equal(mpos_password_hash(pw, small, sizeof(small)), MPOS_ERR_LENGTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_hash_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
