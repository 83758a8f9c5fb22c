/* Test helper: the cards of shared/testdata/cards.tsv, read at run time (their PANs are never
 * copied into the source tree), and ISO/IEC 7813 tracks built from them. */
#ifndef MPOS_TERMINAL_TEST_CARDS_H
#define MPOS_TERMINAL_TEST_CARDS_H

#include <stddef.h>

#define TC_MAX_CARDS 32

struct tc_card {
    char name[32];
    char pan[20];
    char expiry[5]; /* YYMM */
    char service_code[4];
    char pin[13];
};

/* Loads the cards once. Returns their number, 0 when the file is not found (tests skip). */
size_t tc_load(const struct tc_card **cards);

/* The card whose name column is name, or NULL. */
const struct tc_card *tc_find(const char *name);

/* Track 2: ';' PAN '=' YYMM SC discretionary '?' LRC (framed, with_lrc) or the bare data.
 * Returns the length written to out (NUL-terminated). */
size_t tc_track2(const struct tc_card *c, const char *discretionary, int framed, int with_lrc,
                 char *out, size_t cap);

/* Track 1 format B: '%' 'B' PAN '^' name '^' YYMM SC discretionary '?' LRC. */
size_t tc_track1(const struct tc_card *c, const char *holder, const char *discretionary, int framed,
                 int with_lrc, char *out, size_t cap);

/* The LRC character of a framed track (ISO/IEC 7811-2: XOR of the character codes). */
char tc_lrc(const char *track, size_t len, unsigned base, unsigned mask);

#endif
