/* openmpos provisioning: helpers shared by the module's files. Internal to lib/provision. */
#ifndef MPOS_PROVISION_INT_H
#define MPOS_PROVISION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mpos/provision.h"
#include "mpos/tlv.h"

/* The next object of it, which must exist, be well formed and carry tag: 0 or
 * MPOS_ERR_FORMAT. */
int prov_next(mpos_tlv_iter *it, uint32_t tag, mpos_tlv *obj) MPOS_MUST_CHECK;

/* 1 if len bytes at der are exactly one DER SEQUENCE (tag 30, minimal length). */
int prov_der_is_one_sequence(const uint8_t *der, size_t len);

#endif
