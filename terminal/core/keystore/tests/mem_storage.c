/* Test helper: in-memory storage HAL with power-loss faults (mem_storage.h). */
#include <string.h>

#include "mem_storage.h"
#include "mpos/ecc.h"

enum { P_W1 = 0, P_W2, P_W3, P_W4, P_W5, P_C1, P_C2 };

uint64_t mem_storage_rand(mem_storage *m, uint64_t n)
{
    /* xorshift64* (Vigna 2016). */
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return (m->rng * UINT64_C(2685821657736338717)) % n;
}

void mem_storage_init(mem_storage *m, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
    for (size_t i = 0; i < sizeof(m->device_key); i++) {
        m->device_key[i] = (uint8_t)mem_storage_rand(m, 256);
    }
}

static mem_slot *find(mem_storage *m, const char *name, int create)
{
    mem_slot *free_slot = NULL;
    for (size_t i = 0; i < MEM_SLOTS; i++) {
        mem_slot *s = &m->slots[i];
        if (s->name[0] != '\0' && strcmp(s->name, name) == 0) {
            return s;
        }
        if (s->name[0] == '\0' && free_slot == NULL) {
            free_slot = s;
        }
    }
    if (create && free_slot != NULL) {
        strncpy(free_slot->name, name, MEM_NAME_MAX - 1);
    }
    return create ? free_slot : NULL;
}

/* Passes fault point p: 1 when the device crashes here. */
static int fault(mem_storage *m, int p)
{
    m->points++;
    int crash = (m->crash_at != 0 && m->points == m->crash_at) ||
                (m->crash_ppm != 0 && mem_storage_rand(m, 1000000) < m->crash_ppm);
    if (crash) {
        m->crashes++;
        m->crashes_at[p]++;
        if (!m->transient) {
            m->dead = 1;
        }
    }
    return crash;
}

static int mem_write(void *ctx, const char *name, const uint8_t *data, size_t len)
{
    mem_storage *m = ctx;
    if (m->dead) {
        return MPOS_ERR_IO;
    }
    if (!mpos_hal_slot_name_valid(name) || data == NULL) {
        return MPOS_ERR_ARG;
    }
    if (len == 0 || len > MPOS_HAL_SLOT_MAX) {
        return MPOS_ERR_LENGTH;
    }
    mem_slot *s = find(m, name, 1);
    if (s == NULL) {
        return MPOS_ERR_IO;
    }
    m->writes++;
    if (fault(m, P_W1)) {
        /* Torn: part of the temporary file, never renamed. */
        s->tmp_exists = 1;
        s->tmp_len = (size_t)mem_storage_rand(m, len);
        memcpy(s->tmp, data, s->tmp_len);
        m->torn++;
        return MPOS_ERR_IO;
    }
    s->tmp_exists = 1;
    s->tmp_len = len;
    memcpy(s->tmp, data, len);
    if (fault(m, P_W2) || fault(m, P_W3)) {
        return MPOS_ERR_IO;
    }
    /* rename: visible, durable only once the directory is synced */
    s->pending = 1;
    s->plen = len;
    memcpy(s->pdata, data, len);
    s->tmp_exists = 0;
    if (fault(m, P_W4)) {
        return MPOS_ERR_IO;
    }
    if (m->lie) {
        return MPOS_OK;
    }
    s->exists = 1;
    s->len = len;
    memcpy(s->data, data, len);
    s->pending = 0;
    if (fault(m, P_W5)) {
        return MPOS_ERR_IO;
    }
    return MPOS_OK;
}

static int mem_read(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
    mem_storage *m = ctx;
    if (m->dead) {
        return MPOS_ERR_IO;
    }
    if (!mpos_hal_slot_name_valid(name) || buf == NULL || len == NULL) {
        return MPOS_ERR_ARG;
    }
    *len = 0;
    mem_slot *s = find(m, name, 0);
    if (s == NULL) {
        return MPOS_HAL_NOT_FOUND;
    }
    if (s->pending && !m->lie) {
        /* hal.h: a read returns durable content (the Linux store fsyncs the directory). */
        s->exists = 1;
        s->len = s->plen;
        memcpy(s->data, s->pdata, s->plen);
        s->pending = 0;
    }
    const uint8_t *src = s->pending ? s->pdata : s->data;
    size_t n = s->pending ? s->plen : s->len;
    if (!s->pending && !s->exists) {
        return MPOS_HAL_NOT_FOUND;
    }
    if (n > cap) {
        return MPOS_ERR_LENGTH;
    }
    memcpy(buf, src, n);
    *len = n;
    return MPOS_OK;
}

static int mem_counter_read(void *ctx, uint32_t id, uint64_t *value)
{
    mem_storage *m = ctx;
    if (m->dead) {
        return MPOS_ERR_IO;
    }
    if (id >= MPOS_HAL_COUNTERS || value == NULL) {
        return MPOS_ERR_ARG;
    }
    *value = m->counters[id];
    return MPOS_OK;
}

static int mem_counter_increment(void *ctx, uint32_t id, uint64_t *value)
{
    mem_storage *m = ctx;
    if (m->dead) {
        return MPOS_ERR_IO;
    }
    if (id >= MPOS_HAL_COUNTERS || value == NULL) {
        return MPOS_ERR_ARG;
    }
    *value = 0;
    if (fault(m, P_C1)) {
        return MPOS_ERR_IO;
    }
    m->counters[id]++;
    if (fault(m, P_C2)) {
        return MPOS_ERR_IO;
    }
    *value = m->counters[id];
    return MPOS_OK;
}

static int mem_derive_key(void *ctx, const uint8_t *label, size_t label_len, uint8_t *out,
                          size_t out_len)
{
    mem_storage *m = ctx;
    if (m->dead) {
        return MPOS_ERR_IO;
    }
    return mpos_hkdf_sha256(NULL, 0, m->device_key, sizeof(m->device_key), label, label_len, out,
                            out_len);
}

void mem_storage_bind(mem_storage *m, mpos_hal_storage *hal)
{
    hal->ctx = m;
    hal->read = mem_read;
    hal->write = mem_write;
    hal->counter_read = mem_counter_read;
    hal->counter_increment = mem_counter_increment;
    hal->derive_key = mem_derive_key;
}

void mem_storage_reboot(mem_storage *m)
{
    for (size_t i = 0; i < MEM_SLOTS; i++) {
        mem_slot *s = &m->slots[i];
        if (s->pending) {
            int keep = m->lie                  ? 0
                       : m->policy == MEM_KEEP ? 1
                       : m->policy == MEM_DROP ? 0
                                               : (int)mem_storage_rand(m, 2);
            if (keep) {
                s->exists = 1;
                s->len = s->plen;
                memcpy(s->data, s->pdata, s->plen);
                m->pending_kept++;
            } else {
                m->pending_dropped++;
            }
            s->pending = 0;
        }
        s->tmp_exists = 0;
        s->tmp_len = 0;
    }
    m->dead = 0;
    m->reboots++;
}

const uint8_t *mem_storage_peek(const mem_storage *m, const char *name, size_t *len)
{
    for (size_t i = 0; i < MEM_SLOTS; i++) {
        const mem_slot *s = &m->slots[i];
        if (s->name[0] != '\0' && strcmp(s->name, name) == 0 && s->exists) {
            *len = s->len;
            return s->data;
        }
    }
    *len = 0;
    return NULL;
}

void mem_storage_poke(mem_storage *m, const char *name, const uint8_t *data, size_t len)
{
    mem_slot *s = find(m, name, 1);
    if (s == NULL) {
        return;
    }
    s->pending = 0;
    s->exists = len != 0;
    s->len = len;
    if (len != 0) {
        memcpy(s->data, data, len);
    }
}
