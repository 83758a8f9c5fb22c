/* openmpos terminal simulator: a contact card reader through PC/SC (pcsc_reader.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include "pcsc_reader.h"

#include <string.h>
#include <time.h>

#include "mpos/util.h"

#define TRANSCEIVE_ROUNDS 4 /* GET RESPONSE / re-send rounds for one command */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ISO/IEC 7816-3 12.1.2: the four cases of a short C-APDU (and nothing longer than
 * MPOS_CAPDU_MAX). 1 if capdu is one. */
static int short_apdu_valid(const uint8_t *capdu, size_t len)
{
    if (capdu == NULL || len < 4 || len > MPOS_CAPDU_MAX) {
        return 0;
    }
    if (len <= 5) {
        return 1; /* case 1, or case 2 with its Le */
    }
    return capdu[4] != 0 && (len == 5u + capdu[4] || len == 6u + capdu[4]); /* cases 3, 4 */
}

/* 1 if the C-APDU ends with an Le byte (case 2 or 4). */
static int has_le(const uint8_t *capdu, size_t len)
{
    return len == 5 || (len > 5 && len == 6u + capdu[4]);
}

int mpos_pcsc_reader_open(mpos_pcsc_reader *r)
{
    LONG rv;
    if (r == NULL) {
        return MPOS_ERR_ARG;
    }
    memset(r, 0, sizeof(*r));
    r->removal_grace_ms = MPOS_PCSC_REMOVAL_GRACE;
    rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &r->sc);
    if (rv != SCARD_S_SUCCESS) {
        return MPOS_ERR_IO;
    }
    r->sc_valid = 1;
    return 0;
}

/* Handles are given up with SCARD_LEAVE_CARD, not SCARD_UNPOWER_CARD or _RESET_CARD:
 * pcscd 1.9.9 checks the card's presence before such a power action and, when the card has
 * just been pulled out, writes "empty" into the reader's public state itself, behind the back
 * of its event thread (the only one that counts insertions and removals, by polling). If the
 * card is back before that thread's next poll (400 ms), the thread never sees it leave nor
 * come back, and pcscd reports the reader empty, with the card in it, until the card is pulled
 * out again (the flaky re-insertion of docs/terminal-pcsc.md). With SCARD_LEAVE_CARD pcscd
 * makes no call to the driver here; its event thread powers the card down itself once no
 * handle uses it (the next one or two rounds of its poll, 0.4 to 0.8 s). */
static void forget_card(mpos_pcsc_reader *r)
{
    if (r->connected) {
        (void)SCardDisconnect(r->card, SCARD_LEAVE_CARD);
    }
    r->connected = 0;
    r->card = 0;
    r->protocol = 0;
}

/* After a power-up that failed under our own handle (power_on's cold reset): pcscd then marks
 * the card present but not powered, and, while it still counts it as in use (until its event
 * thread powers it down, 0.4 to 0.8 s after SCARD_LEAVE_CARD), refuses every SCardConnect
 * with "Card Not Powered" instead of trying the power-up again: a chip that answers again
 * would look mute for that long. SCARD_UNPOWER_CARD marks it unpowered at once, so the next
 * SCardConnect powers it up. Its hazard (forget_card) is the one this power_on already took:
 * a card pulled out during it. */
static void forget_failed_card(mpos_pcsc_reader *r)
{
    if (r->connected) {
        (void)SCardDisconnect(r->card, SCARD_UNPOWER_CARD);
    }
    r->connected = 0;
    r->card = 0;
    r->protocol = 0;
}

void mpos_pcsc_reader_close(mpos_pcsc_reader *r)
{
    if (r == NULL) {
        return;
    }
    forget_card(r);
    if (r->sc_valid) {
        (void)SCardReleaseContext(r->sc);
    }
    memset(r, 0, sizeof(*r));
}

int mpos_pcsc_reader_list(mpos_pcsc_reader *r, char names[][MPOS_PCSC_READER_NAME_MAX], size_t cap,
                          size_t *count)
{
    char buf[MPOS_PCSC_READERS_MAX * MPOS_PCSC_READER_NAME_MAX + 1];
    DWORD len = (DWORD)sizeof(buf);
    LONG rv;
    size_t n = 0;
    if (r == NULL || !r->sc_valid || count == NULL || (names == NULL && cap > 0)) {
        return MPOS_ERR_ARG;
    }
    *count = 0;
    rv = SCardListReaders(r->sc, NULL, buf, &len);
    if (rv == SCARD_E_NO_READERS_AVAILABLE) {
        return 0;
    }
    if (rv == SCARD_E_INSUFFICIENT_BUFFER) {
        return MPOS_ERR_LENGTH;
    }
    if (rv != SCARD_S_SUCCESS || len == 0 || len > sizeof(buf)) {
        return MPOS_ERR_IO;
    }
    buf[len - 1] = '\0';
    /* A multi-string: names separated by NUL, ended by an empty one. */
    for (size_t off = 0; off < len && buf[off] != '\0' && n < cap;) {
        size_t l = strlen(&buf[off]);
        if (l >= MPOS_PCSC_READER_NAME_MAX) {
            return MPOS_ERR_LENGTH;
        }
        memcpy(names[n++], &buf[off], l + 1);
        off += l + 1;
    }
    *count = n;
    return 0;
}

int mpos_pcsc_reader_select(mpos_pcsc_reader *r, const char *pattern, uint32_t timeout_ms)
{
    char names[MPOS_PCSC_READERS_MAX][MPOS_PCSC_READER_NAME_MAX];
    uint64_t deadline = now_ms() + timeout_ms;
    if (r == NULL || !r->sc_valid || pattern == NULL) {
        return MPOS_ERR_ARG;
    }
    forget_card(r);
    r->name[0] = '\0';
    for (;;) {
        size_t n = 0;
        int rc = mpos_pcsc_reader_list(r, names, MPOS_PCSC_READERS_MAX, &n);
        if (rc != 0) {
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            if (strstr(names[i], pattern) != NULL) {
                memcpy(r->name, names[i], sizeof(r->name));
                r->known_state = SCARD_STATE_UNAWARE;
                r->reported_present = 0;
                r->event_count = 0;
                return 0;
            }
        }
        if (now_ms() >= deadline) {
            return MPOS_HAL_TIMEOUT;
        }
        sleep_ms(50); /* readers come and go rarely: polling the list is enough */
    }
}

/* One SCardGetStatusChange on the followed reader: waits up to timeout_ms for its state to
 * differ from r->known_state (0: just reads it). 0 with *state; MPOS_HAL_TIMEOUT; MPOS_ERR_IO. */
static int reader_state(mpos_pcsc_reader *r, uint32_t timeout_ms, DWORD *state)
{
    SCARD_READERSTATE rs;
    LONG rv;
    memset(&rs, 0, sizeof(rs));
    rs.szReader = r->name;
    rs.dwCurrentState = r->known_state;
    rv = SCardGetStatusChange(r->sc, (DWORD)timeout_ms, &rs, 1);
    if (rv == SCARD_E_TIMEOUT) {
        return MPOS_HAL_TIMEOUT;
    }
    if (rv != SCARD_S_SUCCESS ||
        (rs.dwEventState & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE)) != 0) {
        return MPOS_ERR_IO;
    }
    r->known_state = rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
    *state = rs.dwEventState;
    return 0;
}

int mpos_pcsc_reader_wait_event(void *ctx, uint32_t timeout_ms, enum mpos_card_event *event)
{
    mpos_pcsc_reader *r = ctx;
    uint64_t deadline = now_ms() + timeout_ms;
    int first = 1;
    if (r == NULL || !r->sc_valid || event == NULL || r->name[0] == '\0') {
        return MPOS_ERR_ARG;
    }
    for (;;) {
        DWORD state;
        uint64_t now = now_ms();
        uint32_t left = now >= deadline ? 0 : (uint32_t)(deadline - now);
        /* First look at the state as it is (a card already there is reported at once). */
        int rc = reader_state(r, first ? 0 : left, &state);
        first = 0;
        if (rc == MPOS_HAL_TIMEOUT) {
            if (left == 0) {
                return MPOS_HAL_TIMEOUT;
            }
            continue;
        }
        if (rc != 0) {
            return rc;
        }
        int present = (state & SCARD_STATE_PRESENT) != 0;
        unsigned count = (unsigned)(state >> 16) & 0xFFFFu; /* pcsc-lite's event counter */
        if (r->reported_present && (!present || count != r->event_count)) {
            /* Gone, or gone and back (another card): the removal first. */
            r->reported_present = 0;
            *event = MPOS_CARD_EVENT_REMOVED;
            return 0;
        }
        if (!r->reported_present && present) {
            r->reported_present = 1;
            r->event_count = count;
            *event = MPOS_CARD_EVENT_INSERTED;
            return 0;
        }
        if (now_ms() >= deadline) {
            return MPOS_HAL_TIMEOUT;
        }
    }
}

/* After a failed transmission: MPOS_HAL_CARD_REMOVED if pcscd reports the card gone (or
 * replaced) within removal_grace_ms, else MPOS_HAL_CARD_MUTE. */
static int removed_or_mute(mpos_pcsc_reader *r, unsigned count_at_connect)
{
    uint64_t deadline = now_ms() + r->removal_grace_ms;
    DWORD saved = r->known_state;
    int rc = MPOS_HAL_CARD_MUTE;
    r->known_state = SCARD_STATE_UNAWARE;
    for (;;) {
        DWORD state;
        uint64_t now = now_ms();
        uint32_t left = now >= deadline ? 0 : (uint32_t)(deadline - now);
        int s = reader_state(r, r->known_state == SCARD_STATE_UNAWARE ? 0 : left, &state);
        if (s == 0 && ((state & SCARD_STATE_PRESENT) == 0 ||
                       (((unsigned)(state >> 16) & 0xFFFFu) != count_at_connect))) {
            rc = MPOS_HAL_CARD_REMOVED;
            break;
        }
        if ((s != 0 && s != MPOS_HAL_TIMEOUT) || left == 0) {
            break;
        }
    }
    /* wait_event keeps its own view: the change is reported there too. */
    r->known_state = saved;
    return rc;
}

/* The event counter now (0 when the state cannot be read). */
static unsigned current_count(mpos_pcsc_reader *r)
{
    DWORD saved = r->known_state, state = 0;
    r->known_state = SCARD_STATE_UNAWARE;
    if (reader_state(r, 0, &state) != 0) {
        state = 0;
    }
    r->known_state = saved;
    return (unsigned)(state >> 16) & 0xFFFFu;
}

static int map_connect_error(LONG rv)
{
    switch (rv) {
    case SCARD_E_NO_SMARTCARD:
    case SCARD_W_REMOVED_CARD:
        return MPOS_HAL_NO_CARD;
    case SCARD_W_UNRESPONSIVE_CARD:
    case SCARD_W_UNPOWERED_CARD:
    case SCARD_W_UNSUPPORTED_CARD:
    case SCARD_E_CARD_UNSUPPORTED:
    case SCARD_E_PROTO_MISMATCH:
    case SCARD_E_NOT_TRANSACTED:
    case SCARD_E_COMM_DATA_LOST:
    case SCARD_E_TIMEOUT:
        return MPOS_HAL_CARD_MUTE;
    default:
        return MPOS_ERR_IO;
    }
}

int mpos_pcsc_reader_power_on(void *ctx, uint8_t atr[MPOS_ATR_MAX], size_t *atr_len)
{
    mpos_pcsc_reader *r = ctx;
    BYTE buf[MAX_ATR_SIZE];
    DWORD buf_len = (DWORD)sizeof(buf), proto = 0, state = 0;
    LONG rv;
    int rc;
    if (r == NULL || !r->sc_valid || atr == NULL || atr_len == NULL || r->name[0] == '\0') {
        return MPOS_ERR_ARG;
    }
    *atr_len = 0;
    forget_card(r);
    rv = SCardConnect(r->sc, r->name, SCARD_SHARE_EXCLUSIVE, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                      &r->card, &proto);
    if (rv != SCARD_S_SUCCESS) {
        rc = map_connect_error(rv);
        if (rc == MPOS_HAL_NO_CARD) {
            /* pcscd may have given up the card after a failed power-up while the slot still
             * holds it: a card that is there and gives no ATR is mute, not absent. */
            DWORD saved = r->known_state;
            r->known_state = SCARD_STATE_UNAWARE;
            if (reader_state(r, 0, &state) == 0 && (state & SCARD_STATE_PRESENT) != 0) {
                rc = MPOS_HAL_CARD_MUTE;
            }
            r->known_state = saved;
        }
        r->card = 0;
        return rc;
    }
    r->connected = 1;
    /* A cold reset even when pcscd (or an earlier client) had powered the card (ISO/IEC
     * 7816-3 6.2.2): the session on the card starts afresh. Handles are left with
     * SCARD_LEAVE_CARD (forget_card), so the card may still be powered with the previous
     * session. The one power action asked of pcscd: it has forget_card's hazard only for a
     * card pulled out during this call and put back within 0.4 s. */
    rv = SCardReconnect(r->card, SCARD_SHARE_EXCLUSIVE, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                        SCARD_UNPOWER_CARD, &proto);
    if (rv != SCARD_S_SUCCESS) {
        rc = map_connect_error(rv);
        forget_failed_card(r);
        return rc == MPOS_HAL_NO_CARD ? MPOS_HAL_NO_CARD : MPOS_HAL_CARD_MUTE;
    }
    rv = SCardStatus(r->card, NULL, NULL, &state, &proto, buf, &buf_len);
    if (rv != SCARD_S_SUCCESS || buf_len < 2 || buf_len > MPOS_ATR_MAX ||
        (proto != SCARD_PROTOCOL_T0 && proto != SCARD_PROTOCOL_T1)) {
        rc = rv == SCARD_S_SUCCESS ? MPOS_HAL_CARD_MUTE : map_connect_error(rv);
        forget_card(r);
        return rc == 0 ? MPOS_ERR_IO : rc;
    }
    r->protocol = proto;
    r->conn_count = current_count(r);
    memcpy(atr, buf, buf_len);
    *atr_len = buf_len;
    return 0;
}

int mpos_pcsc_reader_power_off(void *ctx)
{
    mpos_pcsc_reader *r = ctx;
    LONG rv = SCARD_S_SUCCESS;
    if (r == NULL) {
        return MPOS_ERR_ARG;
    }
    if (r->connected) {
        /* SCARD_LEAVE_CARD: see forget_card; pcscd deactivates the contacts itself. */
        rv = SCardDisconnect(r->card, SCARD_LEAVE_CARD);
    }
    r->connected = 0;
    r->card = 0;
    r->protocol = 0;
    if (rv == SCARD_S_SUCCESS || rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD ||
        rv == SCARD_E_INVALID_HANDLE) {
        return 0;
    }
    return MPOS_ERR_IO;
}

int mpos_pcsc_reader_exchange(void *ctx, const uint8_t *capdu, size_t capdu_len,
                              uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    mpos_pcsc_reader *r = ctx;
    BYTE buf[MAX_BUFFER_SIZE]; /* 264: room to see an answer longer than MPOS_RAPDU_MAX */
    DWORD len = (DWORD)sizeof(buf);
    const SCARD_IO_REQUEST *pci;
    LONG rv;
    int rc = MPOS_ERR_IO;
    if (r == NULL || rapdu == NULL || rapdu_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *rapdu_len = 0;
    if (!short_apdu_valid(capdu, capdu_len)) {
        return MPOS_ERR_LENGTH;
    }
    if (!r->connected) {
        return MPOS_ERR_STATE;
    }
    pci = r->protocol == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
    rv = SCardTransmit(r->card, pci, capdu, (DWORD)capdu_len, NULL, buf, &len);
    switch (rv) {
    case SCARD_S_SUCCESS:
        if (len == 0) {
            /* Nothing came back: the vpcd driver reports a connection the card's side reset
             * while it waited (a mute chip, a removal) as a success of 0 bytes. */
            rc = removed_or_mute(r, r->conn_count);
        } else if (len >= 2 && len <= MPOS_RAPDU_MAX) {
            memcpy(rapdu, buf, len);
            *rapdu_len = len;
            rc = 0;
        }
        break;
    case SCARD_W_REMOVED_CARD:
    case SCARD_E_NO_SMARTCARD:
        rc = MPOS_HAL_CARD_REMOVED;
        break;
    case SCARD_E_NOT_TRANSACTED:
    case SCARD_E_COMM_DATA_LOST:
    case SCARD_W_UNRESPONSIVE_CARD:
    case SCARD_W_UNPOWERED_CARD:
    case SCARD_E_TIMEOUT:
        /* No answer: pulled out, or there and silent? pcscd learns it at its next poll. */
        rc = removed_or_mute(r, r->conn_count);
        break;
    default:
        rc = MPOS_ERR_IO; /* includes SCARD_E_INSUFFICIENT_BUFFER: too long, never cut */
        break;
    }
    mpos_cleanse(buf, sizeof(buf));
    return rc;
}

int mpos_pcsc_reader_transceive(mpos_pcsc_reader *r, const uint8_t *capdu, size_t capdu_len,
                                uint8_t rapdu[MPOS_RAPDU_MAX], size_t *rapdu_len)
{
    uint8_t cmd[MPOS_CAPDU_MAX];
    uint8_t rsp[MPOS_RAPDU_MAX];
    size_t clen = capdu_len, total = 0, rlen = 0;
    int rc = MPOS_ERR_IO;
    if (r == NULL || rapdu == NULL || rapdu_len == NULL) {
        return MPOS_ERR_ARG;
    }
    *rapdu_len = 0;
    if (!short_apdu_valid(capdu, capdu_len)) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(cmd, capdu, capdu_len);
    for (int round = 0; round <= TRANSCEIVE_ROUNDS; round++) {
        rc = mpos_pcsc_reader_exchange(r, cmd, clen, rsp, &rlen);
        if (rc != 0) {
            goto exit;
        }
        uint8_t sw1 = rsp[rlen - 2], sw2 = rsp[rlen - 1];
        size_t data = rlen - 2;
        if (total + data + 2 > MPOS_RAPDU_MAX) {
            rc = MPOS_ERR_IO; /* more than a short response holds */
            goto exit;
        }
        memcpy(&rapdu[total], rsp, data);
        total += data;
        if (sw1 == 0x61) {
            /* ISO/IEC 7816-4 5.1.3: SW2 more bytes available: GET RESPONSE. */
            cmd[0] = 0x00;
            cmd[1] = 0xC0;
            cmd[2] = 0x00;
            cmd[3] = 0x00;
            cmd[4] = sw2;
            clen = 5;
            continue;
        }
        if (sw1 == 0x6C && data == 0 && has_le(cmd, clen)) {
            /* Wrong Le: the same command again with Le = SW2. */
            cmd[clen - 1] = sw2;
            continue;
        }
        rapdu[total++] = sw1;
        rapdu[total++] = sw2;
        *rapdu_len = total;
        rc = 0;
        goto exit;
    }
    rc = MPOS_ERR_IO; /* the card kept asking for more rounds */
exit:
    if (rc != 0) {
        mpos_cleanse(rapdu, MPOS_RAPDU_MAX);
        *rapdu_len = 0;
    }
    MPOS_WIPE_BUFFER(cmd);
    MPOS_WIPE_BUFFER(rsp);
    return rc;
}

void mpos_pcsc_reader_hal(mpos_pcsc_reader *r, mpos_hal_card_reader *hal)
{
    if (hal == NULL) {
        return;
    }
    memset(hal, 0, sizeof(*hal));
    hal->ctx = r;
    hal->wait_event = mpos_pcsc_reader_wait_event;
    hal->power_on = mpos_pcsc_reader_power_on;
    hal->power_off = mpos_pcsc_reader_power_off;
    hal->exchange = mpos_pcsc_reader_exchange;
    hal->read_tracks = NULL;
}

unsigned mpos_pcsc_reader_protocol(const mpos_pcsc_reader *r)
{
    return (r != NULL && r->connected) ? (unsigned)r->protocol : 0u;
}
