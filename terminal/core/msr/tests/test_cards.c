/* Test helper: the cards of shared/testdata/cards.tsv (see test_cards.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_cards.h"

static struct tc_card cards[TC_MAX_CARDS];
static size_t ncards;

static FILE *open_cards(void)
{
    char path[4096];
    const char *src = getenv("MPOS_SOURCE_DIR");
    if (src != NULL) {
        snprintf(path, sizeof(path), "%s/../shared/testdata/cards.tsv", src);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            return f;
        }
    }
    const char *pub = getenv("MPOS_PUBLISHED_VECTORS"); /* shared/vectors/published.tsv */
    if (pub != NULL) {
        snprintf(path, sizeof(path), "%s/../../testdata/cards.tsv", pub);
        return fopen(path, "r");
    }
    return NULL;
}

size_t tc_load(const struct tc_card **out)
{
    *out = cards;
    if (ncards > 0) {
        return ncards;
    }
    FILE *f = open_cards();
    if (f == NULL) {
        return 0;
    }
    char line[1024];
    while (ncards < TC_MAX_CARDS && fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') {
            continue;
        }
        /* name, PAN, expiry YYMM, service code, PSN, PIN, CVN2, IMK, behaviour */
        char *save = NULL;
        char *name = strtok_r(line, "\t", &save);
        char *pan = strtok_r(NULL, "\t", &save);
        char *exp = strtok_r(NULL, "\t", &save);
        char *sc = strtok_r(NULL, "\t", &save);
        (void)strtok_r(NULL, "\t", &save); /* PSN */
        char *pin = strtok_r(NULL, "\t", &save);
        if (name == NULL || pan == NULL || exp == NULL || sc == NULL || pin == NULL ||
            strlen(name) > 31 || strlen(pan) > 19 || strlen(exp) != 4 || strlen(sc) != 3 ||
            strlen(pin) > 12) {
            continue;
        }
        struct tc_card *c = &cards[ncards++];
        strcpy(c->name, name);
        strcpy(c->pan, pan);
        strcpy(c->expiry, exp);
        strcpy(c->service_code, sc);
        strcpy(c->pin, pin);
    }
    fclose(f);
    memset(line, 0, sizeof(line));
    return ncards;
}

const struct tc_card *tc_find(const char *name)
{
    const struct tc_card *all;
    size_t n = tc_load(&all);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i].name, name) == 0) {
            return &all[i];
        }
    }
    return NULL;
}

char tc_lrc(const char *track, size_t len, unsigned base, unsigned mask)
{
    unsigned x = 0;
    for (size_t i = 0; i < len; i++) {
        x ^= ((unsigned)(unsigned char)track[i] - base) & mask;
    }
    return (char)(base + x);
}

static size_t frame(char *out, size_t cap, const char *data, char ss, int framed, int with_lrc,
                    unsigned base, unsigned mask)
{
    int n = framed ? snprintf(out, cap, "%c%s?", ss, data) : snprintf(out, cap, "%s", data);
    if (n < 0 || (size_t)n >= cap) {
        abort();
    }
    size_t len = (size_t)n;
    if (framed && with_lrc) {
        if (len + 2 > cap) {
            abort();
        }
        out[len] = tc_lrc(out, len, base, mask);
        out[++len] = '\0';
    }
    return len;
}

size_t tc_track2(const struct tc_card *c, const char *discretionary, int framed, int with_lrc,
                 char *out, size_t cap)
{
    char data[128];
    snprintf(data, sizeof(data), "%s=%s%s%s", c->pan, c->expiry, c->service_code, discretionary);
    return frame(out, cap, data, ';', framed, with_lrc, 0x30, 0x0F);
}

size_t tc_track1(const struct tc_card *c, const char *holder, const char *discretionary, int framed,
                 int with_lrc, char *out, size_t cap)
{
    char data[160];
    snprintf(data, sizeof(data), "B%s^%s^%s%s%s", c->pan, holder, c->expiry, c->service_code,
             discretionary);
    return frame(out, cap, data, '%', framed, with_lrc, 0x20, 0x3F);
}
