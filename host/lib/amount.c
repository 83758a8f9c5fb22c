/* libmposhost: amounts in minor units (ISO 4217 exponents). */
#include <stdio.h>
#include <string.h>

#include "mposhost.h"

/* The ISO 4217 numeric codes with an exponent other than 2 that a cashier may meet. */
unsigned mposhost_currency_exponent(uint16_t currency)
{
    switch (currency) {
    case 392: /* JPY */
    case 410: /* KRW */
    case 704: /* VND */
    case 152: /* CLP */
    case 600: /* PYG */
        return 0;
    case 48:  /* BHD */
    case 368: /* IQD */
    case 400: /* JOD */
    case 414: /* KWD */
    case 434: /* LYD */
    case 512: /* OMR */
    case 788: /* TND */
        return 3;
    default:
        return 2;
    }
}

int mposhost_parse_amount(const char *s, unsigned exponent, uint64_t *minor)
{
    uint64_t v = 0;
    size_t digits = 0, frac = 0;
    int dot = 0;
    if (s == NULL || minor == NULL || exponent > 3) {
        return MPOS_ERR_ARG;
    }
    *minor = 0;
    if (s[0] == '\0' || s[0] == '.') {
        return MPOS_ERR_FORMAT;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.') {
            if (dot || exponent == 0) {
                return MPOS_ERR_FORMAT;
            }
            dot = 1;
            continue;
        }
        if (*p < '0' || *p > '9') {
            return MPOS_ERR_FORMAT;
        }
        if (dot) {
            frac++;
        }
        /* n12 on the link: at most 12 digits in all, so no overflow. */
        if (++digits > 12) {
            return MPOS_ERR_FORMAT;
        }
        v = v * 10u + (uint64_t)(*p - '0');
    }
    /* Exactly the currency's decimals when a point is given ("12.3" is ambiguous: refused). */
    if (dot && frac != exponent) {
        return MPOS_ERR_FORMAT;
    }
    if (!dot) {
        for (unsigned i = 0; i < exponent; i++) {
            if (++digits > 12) {
                return MPOS_ERR_FORMAT;
            }
            v *= 10u;
        }
    }
    *minor = v;
    return MPOS_OK;
}

void mposhost_format_amount(uint64_t minor, unsigned exponent, char *out, size_t cap)
{
    uint64_t div = 1;
    if (out == NULL || cap == 0) {
        return;
    }
    for (unsigned i = 0; i < exponent && i < 3; i++) {
        div *= 10u;
    }
    if (exponent == 0) {
        snprintf(out, cap, "%llu", (unsigned long long)minor);
    } else {
        snprintf(out, cap, "%llu.%0*llu", (unsigned long long)(minor / div), (int)exponent,
                 (unsigned long long)(minor % div));
    }
}
