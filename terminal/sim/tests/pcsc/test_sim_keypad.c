/* Unit tests of mpos-terminal's scripted keypad (terminal/sim/terminal/sim_io.c, sim_io.h):
 * the at:PROMPT token, which holds a key back until its prompt has been shown, so that the
 * acceptance tests' scripts (test_terminal_flows.py) need no timing assumptions. sim_io.c is
 * built here without PC/SC (the keypad and the display only). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sim_io.h"

struct rig {
    struct sim_keypad kp;
    struct sim_display d;
    mpos_hal_keypad hk;
    mpos_hal_display hd;
};

static void rig_init(struct rig *r, const char *script, int follow)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(sim_keypad_init(&r->kp, script), 0);
    assert_int_equal(sim_display_init(&r->d, NULL, 0), 0); /* no screen, no log */
    sim_keypad_bind(&r->kp, &r->hk);
    sim_display_bind(&r->d, &r->hd);
    if (follow) {
        sim_keypad_follow(&r->kp, &r->d);
    }
}

static void rig_close(struct rig *r)
{
    sim_keypad_close(&r->kp);
    sim_display_close(&r->d);
}

static enum mpos_key key(struct rig *r)
{
    enum mpos_key k = MPOS_KEY_CANCEL;
    assert_int_equal(r->hk.read_key(r->hk.ctx, 0, &k), 0); /* a poll: never waits */
    return k;
}

static void show(struct rig *r, enum mpos_prompt prompt)
{
    mpos_prompt_params p;
    memset(&p, 0, sizeof(p));
    p.present = mpos_prompt_required((unsigned)prompt);
    if (p.present & MPOS_PROMPT_P_TYPE) {
        p.txn_type = 1;
    }
    if (p.present & MPOS_PROMPT_P_AMOUNT) {
        p.amount = 1234;
        p.currency = 156;
    }
    assert_int_equal(r->hd.show(r->hd.ctx, prompt, &p), 0);
}

static void test_parse(void **state)
{
    struct sim_keypad kp;
    (void)state;
    assert_int_equal(sim_keypad_init(&kp, "at:CONFIRM_AMOUNT,ok,at:ENTER_PIN,pin:1234,ok"), 0);
    assert_int_equal(kp.count, 6u);
    assert_int_equal(kp.steps[0].at, MPOS_HAL_PROMPT_CONFIRM_AMOUNT);
    assert_int_equal(kp.steps[1].at, MPOS_HAL_PROMPT_ENTER_PIN);
    assert_int_equal(kp.steps[2].at, 0u); /* only the first digit waits */
    sim_keypad_close(&kp);
    /* the link's name of INSERT_CARD */
    assert_int_equal(sim_keypad_init(&kp, "at:PRESENT_CARD,cancel"), 0);
    assert_int_equal(kp.steps[0].at, MPOS_HAL_PROMPT_INSERT_CARD);
    sim_keypad_close(&kp);
    assert_int_equal(sim_keypad_init(&kp, "at:NO_SUCH_PROMPT,ok"), -1);
    sim_keypad_close(&kp);
    assert_int_equal(sim_keypad_init(&kp, "at:,ok"), -1);
    sim_keypad_close(&kp);
    assert_int_equal(sim_keypad_init(&kp, "at:ENTER_PIN,at:PROCESSING,ok"), -1);
    sim_keypad_close(&kp);
    assert_int_equal(sim_keypad_init(&kp, "at:enter_pin,ok"), -1); /* names are exact */
    sim_keypad_close(&kp);
}

static void test_key_waits_for_its_prompt(void **state)
{
    struct rig r;
    (void)state;
    rig_init(&r, "ok,at:ENTER_PIN,1,2,ok", 1);
    assert_int_equal(key(&r), MPOS_KEY_OK);
    /* the card phase polls: nothing until the PIN prompt */
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_INSERT_CARD);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_ENTER_PIN);
    assert_int_equal(key(&r), MPOS_KEY_1);
    assert_int_equal(key(&r), MPOS_KEY_2);
    assert_int_equal(key(&r), MPOS_KEY_OK);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT); /* the script ran out */
    rig_close(&r);
}

static void test_prompt_shown_before_previous_key(void **state)
{
    struct rig r;
    (void)state;
    /* A prompt shown before the previous key was taken does not count, and a PIN refresh
     * (the same prompt again) is not a new showing. */
    rig_init(&r, "at:ENTER_PIN,1,at:ENTER_PIN,2", 1);
    show(&r, MPOS_HAL_PROMPT_ENTER_PIN);
    assert_int_equal(key(&r), MPOS_KEY_1);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_ENTER_PIN); /* refresh: count 1 */
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_PROCESSING);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_ENTER_PIN); /* a second PIN entry */
    assert_int_equal(key(&r), MPOS_KEY_2);
    rig_close(&r);

    rig_init(&r, "1,at:ENTER_PIN,2", 1);
    show(&r, MPOS_HAL_PROMPT_ENTER_PIN);
    assert_int_equal(key(&r), MPOS_KEY_1); /* taken after ENTER_PIN was shown */
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    rig_close(&r);
}

static void test_leading_at_and_no_display(void **state)
{
    struct rig r;
    (void)state;
    /* a leading at: counts from the start */
    rig_init(&r, "at:CONFIRM_AMOUNT,ok", 1);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    show(&r, MPOS_HAL_PROMPT_CONFIRM_AMOUNT);
    assert_int_equal(key(&r), MPOS_KEY_OK);
    rig_close(&r);
    /* without sim_keypad_follow an at: step is never reached */
    rig_init(&r, "at:CONFIRM_AMOUNT,ok", 0);
    show(&r, MPOS_HAL_PROMPT_CONFIRM_AMOUNT);
    assert_int_equal(key(&r), MPOS_KEY_TIMEOUT);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_key_waits_for_its_prompt),
        cmocka_unit_test(test_prompt_shown_before_previous_key),
        cmocka_unit_test(test_leading_at_and_no_display),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
