/* mpos-hsmd wire protocol: the tag registry and the schema of every command
 * (docs/hsm-protocol.md lists the same tables). */
#include "proto.h"

#include <string.h>

#define TAG(t, type, max, name) [t] = {t, type, max, name}

static const struct hsm_tag_info tags[HSM_PROTO_MAX_TAG + 1] = {
    TAG(HSM_TAG_COUNT, HSM_FT_U16, 2, "count"),
    TAG(HSM_TAG_DATA, HSM_FT_BYTES, 8192, "data"),
    TAG(HSM_TAG_VERSION, HSM_FT_TEXT, 32, "version"),
    TAG(HSM_TAG_LMK_KCV, HSM_FT_BYTES, 5, "lmk-kcv"),
    TAG(HSM_TAG_UPTIME, HSM_FT_U64, 8, "uptime"),
    TAG(HSM_TAG_ROLE, HSM_FT_TEXT, 16, "role"),
    TAG(HSM_TAG_WORKERS, HSM_FT_U8, 1, "workers"),
    TAG(HSM_TAG_COMMANDS, HSM_FT_U64, 8, "commands"),
    TAG(HSM_TAG_REFUSED, HSM_FT_U64, 8, "refused"),
    TAG(HSM_TAG_SESSIONS, HSM_FT_U64, 8, "sessions"),
    TAG(HSM_TAG_KEY_BLOCK, HSM_FT_TEXT, 512, "key-block"),
    TAG(HSM_TAG_KEK, HSM_FT_TEXT, 512, "kek"),
    TAG(HSM_TAG_TR31, HSM_FT_TEXT, 512, "tr31"),
    TAG(HSM_TAG_DEST_KEY, HSM_FT_TEXT, 512, "dest-key"),
    TAG(HSM_TAG_BDK, HSM_FT_TEXT, 512, "bdk"),
    TAG(HSM_TAG_SRC_KEY, HSM_FT_TEXT, 512, "src-key"),
    TAG(HSM_TAG_PVK, HSM_FT_TEXT, 512, "pvk"),
    TAG(HSM_TAG_KCV, HSM_FT_BYTES, 5, "kcv"),
    TAG(HSM_TAG_KEY_USAGE, HSM_FT_TEXT, 2, "key-usage"),
    TAG(HSM_TAG_ALGORITHM, HSM_FT_TEXT, 1, "algorithm"),
    TAG(HSM_TAG_MODE, HSM_FT_TEXT, 1, "mode"),
    TAG(HSM_TAG_EXPORTABILITY, HSM_FT_TEXT, 1, "exportability"),
    TAG(HSM_TAG_KEY_LEN, HSM_FT_U8, 1, "key-len"),
    TAG(HSM_TAG_DUKPT, HSM_FT_U8, 1, "dukpt"),
    TAG(HSM_TAG_PUBKEY, HSM_FT_BYTES, 65, "pubkey"),
    TAG(HSM_TAG_KSN, HSM_FT_BYTES, 12, "ksn"),
    TAG(HSM_TAG_KEY_ID, HSM_FT_BYTES, 10, "key-id"),
    TAG(HSM_TAG_AES_KEY_LEN, HSM_FT_U8, 1, "aes-key-len"),
    TAG(HSM_TAG_PIN_BLOCK, HSM_FT_BYTES, 16, "pin-block"),
    TAG(HSM_TAG_PIN_FORMAT, HSM_FT_U8, 1, "pin-format"),
    TAG(HSM_TAG_DEST_FORMAT, HSM_FT_U8, 1, "dest-format"),
    TAG(HSM_TAG_PAN, HSM_FT_DIGITS, 19, "pan"),
    TAG(HSM_TAG_MAC, HSM_FT_BYTES, 16, "mac"),
    TAG(HSM_TAG_MAC_LEN, HSM_FT_U8, 1, "mac-len"),
    TAG(HSM_TAG_MAC_ALG, HSM_FT_U8, 1, "mac-alg"),
    TAG(HSM_TAG_IV, HSM_FT_BYTES, 16, "iv"),
    TAG(HSM_TAG_EMV, HSM_FT_BYTES, 1024, "emv"),
    TAG(HSM_TAG_PVKI, HSM_FT_U8, 1, "pvki"),
    TAG(HSM_TAG_PVV, HSM_FT_DIGITS, 4, "pvv"),
    TAG(HSM_TAG_HASH, HSM_FT_BYTES, 32, "hash"),
    TAG(HSM_TAG_MK_OPTION, HSM_FT_U8, 1, "mk-option"),
    TAG(HSM_TAG_SK_METHOD, HSM_FT_U8, 1, "sk-method"),
    TAG(HSM_TAG_PSN, HSM_FT_DIGITS, 2, "psn"),
    TAG(HSM_TAG_ATC, HSM_FT_BYTES, 2, "atc"),
    TAG(HSM_TAG_ARQC, HSM_FT_BYTES, 8, "arqc"),
    TAG(HSM_TAG_ARPC_METHOD, HSM_FT_U8, 1, "arpc-method"),
    TAG(HSM_TAG_ARC, HSM_FT_BYTES, 2, "arc"),
    TAG(HSM_TAG_CSU, HSM_FT_BYTES, 4, "csu"),
    TAG(HSM_TAG_PROP, HSM_FT_BYTES, 8, "prop"),
    TAG(HSM_TAG_ARPC, HSM_FT_BYTES, 8, "arpc"),
    TAG(HSM_TAG_CERT, HSM_FT_BYTES, 2048, "cert"),
    TAG(HSM_TAG_CSR, HSM_FT_BYTES, 4096, "csr"),
    TAG(HSM_TAG_SERIAL, HSM_FT_TEXT, 32, "serial"),
    TAG(HSM_TAG_NOT_BEFORE, HSM_FT_U64, 8, "not-before"),
    TAG(HSM_TAG_NOT_AFTER, HSM_FT_U64, 8, "not-after"),
    TAG(HSM_TAG_CERT_SERIAL, HSM_FT_BYTES, 16, "cert-serial"),
    TAG(HSM_TAG_CA_CERT, HSM_FT_BYTES, 2048, "ca-cert"),
    TAG(HSM_TAG_SINGLE_DES, HSM_FT_U8, 1, "single-des"),
    TAG(HSM_TAG_PIK_ENC, HSM_FT_BYTES, 16, "pik-enc"),
    TAG(HSM_TAG_PIK_KCV, HSM_FT_BYTES, 4, "pik-kcv"),
    TAG(HSM_TAG_PIK_BLOCK, HSM_FT_TEXT, 512, "pik-block"),
    TAG(HSM_TAG_MAK_ENC, HSM_FT_BYTES, 16, "mak-enc"),
    TAG(HSM_TAG_MAK_KCV, HSM_FT_BYTES, 4, "mak-kcv"),
    TAG(HSM_TAG_MAK_BLOCK, HSM_FT_TEXT, 512, "mak-block"),
    TAG(HSM_TAG_TDK_ENC, HSM_FT_BYTES, 16, "tdk-enc"),
    TAG(HSM_TAG_TDK_KCV, HSM_FT_BYTES, 4, "tdk-kcv"),
    TAG(HSM_TAG_TDK_BLOCK, HSM_FT_TEXT, 512, "tdk-block"),
    TAG(HSM_TAG_COMMON_NAME, HSM_FT_TEXT, 64, "common-name"),
    TAG(HSM_TAG_TRUST_ANCHOR, HSM_FT_BYTES, 2048, "trust-anchor"),
    TAG(HSM_TAG_BUNDLE, HSM_FT_BYTES, 8192, "bundle"),
    TAG(HSM_TAG_CERT_SHA256, HSM_FT_BYTES, 32, "cert-sha256"),
    TAG(HSM_TAG_KIND, HSM_FT_U8, 1, "kind"),
    TAG(HSM_TAG_SEALED, HSM_FT_BYTES, 1024, "sealed"),
    TAG(HSM_TAG_ZEK, HSM_FT_TEXT, 512, "zek"),
    TAG(HSM_TAG_MSG_TYPE, HSM_FT_U8, 1, "msg-type"),
    TAG(HSM_TAG_SCHEME, HSM_FT_U8, 1, "scheme"),
    TAG(HSM_TAG_SEQUENCE, HSM_FT_U64, 8, "sequence"),
    TAG(HSM_TAG_TXN_TYPE, HSM_FT_U8, 1, "txn-type"),
    TAG(HSM_TAG_AMOUNT, HSM_FT_U64, 8, "amount"),
    TAG(HSM_TAG_CURRENCY, HSM_FT_U16, 2, "currency"),
    TAG(HSM_TAG_MERCHANT_ID, HSM_FT_TEXT, 15, "merchant-id"),
    TAG(HSM_TAG_TERMINAL_ID, HSM_FT_TEXT, 8, "terminal-id"),
    TAG(HSM_TAG_DATETIME, HSM_FT_DIGITS, 14, "datetime"),
    TAG(HSM_TAG_ENTRY_MODE, HSM_FT_U8, 1, "entry-mode"),
    TAG(HSM_TAG_FALLBACK, HSM_FT_U8, 1, "fallback"),
    TAG(HSM_TAG_MASKED_PAN, HSM_FT_TEXT, 19, "masked-pan"),
    TAG(HSM_TAG_ORIGINAL_REF, HSM_FT_TEXT, 32, "original-ref"),
    TAG(HSM_TAG_LOCATION, HSM_FT_BYTES, 20, "location"),
    TAG(HSM_TAG_CHIP_CARD, HSM_FT_U8, 1, "chip-card"),
    TAG(HSM_TAG_TRACK2_ENC, HSM_FT_BYTES, 24, "track2-enc"),
    TAG(HSM_TAG_RESPONSE_CODE, HSM_FT_TEXT, 2, "response-code"),
    TAG(HSM_TAG_AUTH_CODE, HSM_FT_TEXT, 6, "auth-code"),
    TAG(HSM_TAG_RRN, HSM_FT_TEXT, 12, "rrn"),
    TAG(HSM_TAG_IAD, HSM_FT_BYTES, 16, "iad"),
    TAG(HSM_TAG_HAS_PIN, HSM_FT_U8, 1, "has-pin"),
    TAG(HSM_TAG_COMPONENT1, HSM_FT_BYTES, 64, "component1"),
    TAG(HSM_TAG_COMPONENT2, HSM_FT_BYTES, 64, "component2"),
    TAG(HSM_TAG_COMPONENT3, HSM_FT_BYTES, 64, "component3"),
    TAG(HSM_TAG_COMPONENT_KCVS, HSM_FT_BYTES, 15, "component-kcvs"),
    TAG(HSM_TAG_DNS_NAME, HSM_FT_TEXT, 253, "dns-name"),
    TAG(HSM_TAG_REV_REASON, HSM_FT_U8, 1, "reversal-reason"),
    TAG(HSM_TAG_RETRY, HSM_FT_U8, 1, "retry"),
};

const struct hsm_tag_info *hsm_proto_tag(unsigned tag)
{
    if (tag == 0 || tag > HSM_PROTO_MAX_TAG || tags[tag].name == NULL) {
        return NULL;
    }
    return &tags[tag];
}

#define REQ HSM_FIELD_REQUIRED
#define OPT 0
#define SCHEMA(a)                                                                                  \
    {                                                                                              \
        a, sizeof(a) / sizeof(a[0])                                                                \
    }
#define NONE                                                                                       \
    {                                                                                              \
        NULL, 0                                                                                    \
    }

/* Key blocks: a TR-31 header is 16 characters; the shortest block hsmd accepts is longer. */
#define KB(tag)                                                                                    \
    {                                                                                              \
        tag, REQ, 16, 512                                                                          \
    }

static const struct hsm_field_spec status_resp[] = {
    {HSM_TAG_VERSION, REQ, 1, 0}, {HSM_TAG_ROLE, REQ, 1, 0},     {HSM_TAG_LMK_KCV, REQ, 5, 5},
    {HSM_TAG_UPTIME, REQ, 8, 8},  {HSM_TAG_WORKERS, REQ, 1, 1},  {HSM_TAG_COMMANDS, REQ, 8, 8},
    {HSM_TAG_REFUSED, REQ, 8, 8}, {HSM_TAG_SESSIONS, REQ, 8, 8},
};

static const struct hsm_field_spec random_req[] = {{HSM_TAG_COUNT, REQ, 2, 2}};
static const struct hsm_field_spec random_resp[] = {{HSM_TAG_DATA, REQ, 1, 256}};

static const struct hsm_field_spec key_generate_req[] = {
    {HSM_TAG_KEY_USAGE, REQ, 2, 2},     {HSM_TAG_ALGORITHM, REQ, 1, 1}, {HSM_TAG_MODE, REQ, 1, 1},
    {HSM_TAG_EXPORTABILITY, REQ, 1, 1}, {HSM_TAG_KEY_LEN, OPT, 1, 1},   {HSM_TAG_DUKPT, OPT, 1, 1},
};
/* Symmetric keys: key block and check value; EC keys: key block and public key. */
static const struct hsm_field_spec key_generate_resp[] = {
    KB(HSM_TAG_KEY_BLOCK), {HSM_TAG_KCV, OPT, 3, 5}, {HSM_TAG_PUBKEY, OPT, 65, 65}};

static const struct hsm_field_spec bdk_generate_req[] = {{HSM_TAG_ALGORITHM, REQ, 1, 1},
                                                         {HSM_TAG_KEY_LEN, REQ, 1, 1},
                                                         {HSM_TAG_EXPORTABILITY, REQ, 1, 1}};
static const struct hsm_field_spec key_kcv_resp[] = {KB(HSM_TAG_KEY_BLOCK),
                                                     {HSM_TAG_KCV, REQ, 3, 5}};

static const struct hsm_field_spec key_import_req[] = {
    KB(HSM_TAG_KEK), KB(HSM_TAG_TR31), {HSM_TAG_DUKPT, OPT, 1, 1}, {HSM_TAG_KCV, OPT, 1, 5}};
static const struct hsm_field_spec key_import_resp[] = {
    KB(HSM_TAG_KEY_BLOCK),     {HSM_TAG_KEY_USAGE, REQ, 2, 2},     {HSM_TAG_ALGORITHM, REQ, 1, 1},
    {HSM_TAG_MODE, REQ, 1, 1}, {HSM_TAG_EXPORTABILITY, REQ, 1, 1}, {HSM_TAG_DUKPT, REQ, 1, 1},
    {HSM_TAG_KCV, REQ, 3, 5}};

static const struct hsm_field_spec key_export_req[] = {
    KB(HSM_TAG_KEK), KB(HSM_TAG_KEY_BLOCK), {HSM_TAG_EXPORTABILITY, REQ, 1, 1}};
static const struct hsm_field_spec tr31_kcv_resp[] = {KB(HSM_TAG_TR31), {HSM_TAG_KCV, REQ, 3, 5}};

static const struct hsm_field_spec dukpt_initial_key_req[] = {
    KB(HSM_TAG_BDK), {HSM_TAG_KEY_ID, REQ, 8, 10}, KB(HSM_TAG_KEK)};

static const struct hsm_field_spec mkwk_req[] = {KB(HSM_TAG_KEK), {HSM_TAG_SINGLE_DES, OPT, 1, 1}};
static const struct hsm_field_spec mkwk_resp[] = {
    {HSM_TAG_PIK_ENC, REQ, 8, 16}, {HSM_TAG_PIK_KCV, REQ, 4, 4}, KB(HSM_TAG_PIK_BLOCK),
    {HSM_TAG_MAK_ENC, REQ, 8, 16}, {HSM_TAG_MAK_KCV, REQ, 4, 4}, KB(HSM_TAG_MAK_BLOCK),
    {HSM_TAG_TDK_ENC, REQ, 8, 16}, {HSM_TAG_TDK_KCV, REQ, 4, 4}, KB(HSM_TAG_TDK_BLOCK)};

/* A DUKPT transaction: BDK key block, KSN, optional AES working-key length. */
#define DUKPT_REF                                                                                  \
    KB(HSM_TAG_BDK), {HSM_TAG_KSN, REQ, 10, 12},                                                   \
    {                                                                                              \
        HSM_TAG_AES_KEY_LEN, OPT, 1, 1                                                             \
    }

static const struct hsm_field_spec pin_translate_dukpt_req[] = {DUKPT_REF,
                                                                {HSM_TAG_PIN_BLOCK, REQ, 8, 16},
                                                                {HSM_TAG_PAN, REQ, 12, 19},
                                                                KB(HSM_TAG_DEST_KEY),
                                                                {HSM_TAG_DEST_FORMAT, REQ, 1, 1}};
static const struct hsm_field_spec pin_translate_req[] = {KB(HSM_TAG_SRC_KEY),
                                                          {HSM_TAG_PIN_FORMAT, REQ, 1, 1},
                                                          {HSM_TAG_PIN_BLOCK, REQ, 8, 16},
                                                          {HSM_TAG_PAN, REQ, 12, 19},
                                                          KB(HSM_TAG_DEST_KEY),
                                                          {HSM_TAG_DEST_FORMAT, REQ, 1, 1}};
static const struct hsm_field_spec pin_block_resp[] = {{HSM_TAG_PIN_BLOCK, REQ, 8, 16}};

static const struct hsm_field_spec pin_verify_pvv_req[] = {KB(HSM_TAG_SRC_KEY),
                                                           {HSM_TAG_PIN_FORMAT, REQ, 1, 1},
                                                           {HSM_TAG_PIN_BLOCK, REQ, 8, 16},
                                                           {HSM_TAG_PAN, REQ, 12, 19},
                                                           KB(HSM_TAG_PVK),
                                                           {HSM_TAG_PVKI, REQ, 1, 1},
                                                           {HSM_TAG_PVV, REQ, 4, 4}};
static const struct hsm_field_spec pvv_generate_req[] = {KB(HSM_TAG_SRC_KEY),
                                                         {HSM_TAG_PIN_FORMAT, REQ, 1, 1},
                                                         {HSM_TAG_PIN_BLOCK, REQ, 8, 16},
                                                         {HSM_TAG_PAN, REQ, 12, 19},
                                                         KB(HSM_TAG_PVK),
                                                         {HSM_TAG_PVKI, REQ, 1, 1}};
static const struct hsm_field_spec pvv_resp[] = {{HSM_TAG_PVV, REQ, 4, 4}};

static const struct hsm_field_spec dukpt_mac_verify_req[] = {
    DUKPT_REF, {HSM_TAG_DATA, REQ, 0, 8192}, {HSM_TAG_MAC, REQ, 4, 16}};
static const struct hsm_field_spec dukpt_mac_generate_req[] = {
    DUKPT_REF, {HSM_TAG_DATA, REQ, 0, 8192}, {HSM_TAG_MAC_LEN, OPT, 1, 1}};
static const struct hsm_field_spec mac_resp[] = {{HSM_TAG_MAC, REQ, 4, 16}};

static const struct hsm_field_spec mac_generate_req[] = {{HSM_TAG_MAC_ALG, REQ, 1, 1},
                                                         KB(HSM_TAG_KEY_BLOCK),
                                                         {HSM_TAG_DATA, REQ, 0, 8192},
                                                         {HSM_TAG_MAC_LEN, OPT, 1, 1}};
static const struct hsm_field_spec mac_verify_req[] = {{HSM_TAG_MAC_ALG, REQ, 1, 1},
                                                       KB(HSM_TAG_KEY_BLOCK),
                                                       {HSM_TAG_DATA, REQ, 0, 8192},
                                                       {HSM_TAG_MAC, REQ, 4, 16}};

static const struct hsm_field_spec card_data_req[] = {
    DUKPT_REF, {HSM_TAG_DATA, REQ, 8, 1024}, KB(HSM_TAG_DEST_KEY)};
static const struct hsm_field_spec card_data_resp[] = {{HSM_TAG_PAN, REQ, 12, 19},
                                                       {HSM_TAG_IV, REQ, 8, 16},
                                                       {HSM_TAG_DATA, REQ, 8, 1024},
                                                       {HSM_TAG_EMV, OPT, 0, 1024}};

static const struct hsm_field_spec pan_hash_req[] = {{HSM_TAG_PAN, REQ, 12, 19}};
static const struct hsm_field_spec pan_hash_resp[] = {{HSM_TAG_HASH, REQ, 32, 32}};

static const struct hsm_field_spec arqc_req[] = {
    KB(HSM_TAG_KEY_BLOCK),      {HSM_TAG_MK_OPTION, REQ, 1, 1}, {HSM_TAG_SK_METHOD, REQ, 1, 1},
    {HSM_TAG_PAN, REQ, 12, 19}, {HSM_TAG_PSN, OPT, 2, 2},       {HSM_TAG_ATC, REQ, 2, 2},
    {HSM_TAG_DATA, REQ, 1, 65}, {HSM_TAG_ARQC, REQ, 8, 8},      {HSM_TAG_ARPC_METHOD, OPT, 1, 1},
    {HSM_TAG_ARC, OPT, 2, 2},   {HSM_TAG_CSU, OPT, 4, 4},       {HSM_TAG_PROP, OPT, 0, 8}};
static const struct hsm_field_spec arqc_resp[] = {{HSM_TAG_ARPC, OPT, 4, 8}};

/* A device certificate (serial) or a TLS server certificate (dns-name): exactly one of the two
 * (checked by hsmd). */
static const struct hsm_field_spec cert_sign_req[] = {
    KB(HSM_TAG_KEY_BLOCK),          {HSM_TAG_CA_CERT, REQ, 1, 2048}, {HSM_TAG_CSR, REQ, 1, 2048},
    {HSM_TAG_SERIAL, OPT, 1, 32},   {HSM_TAG_NOT_BEFORE, REQ, 8, 8}, {HSM_TAG_NOT_AFTER, REQ, 8, 8},
    {HSM_TAG_DNS_NAME, OPT, 1, 253}};
static const struct hsm_field_spec cert_sign_resp[] = {{HSM_TAG_CERT, REQ, 1, 2048},
                                                       {HSM_TAG_CERT_SERIAL, REQ, 16, 16}};

static const struct hsm_field_spec ca_cert_create_req[] = {KB(HSM_TAG_KEY_BLOCK),
                                                           {HSM_TAG_COMMON_NAME, REQ, 1, 64},
                                                           {HSM_TAG_NOT_BEFORE, REQ, 8, 8},
                                                           {HSM_TAG_NOT_AFTER, REQ, 8, 8}};

/* Terminal provisioning (hsm_op_provision_terminal): a DUKPT terminal (bdk, key-id) or a TMK
 * terminal (algorithm), exactly one of the two (checked by hsmd); the CA key in key-block. The
 * request fits the default request limit (16384): at most 4096 + 3 * 2048 + 2 * 512 + ~100. */
static const struct hsm_field_spec provision_terminal_req[] = {
    {HSM_TAG_BDK, OPT, 16, 512},     {HSM_TAG_KEY_ID, OPT, 8, 10},
    {HSM_TAG_ALGORITHM, OPT, 1, 1},  KB(HSM_TAG_KEY_BLOCK),
    {HSM_TAG_CA_CERT, REQ, 1, 2048}, {HSM_TAG_CSR, REQ, 1, 4096},
    {HSM_TAG_SERIAL, REQ, 1, 32},    {HSM_TAG_NOT_BEFORE, REQ, 8, 8},
    {HSM_TAG_NOT_AFTER, REQ, 8, 8},  {HSM_TAG_TRUST_ANCHOR, OPT, 1, 2048}};
/* The bundle (at most MPOS_PROVISION_BUNDLE_MAX_LEN = 8192) and what the store registers; the
 * TMK under the LMK (key-block) for a TMK terminal only. */
static const struct hsm_field_spec provision_terminal_resp[] = {
    {HSM_TAG_BUNDLE, REQ, 1, 8192},     {HSM_TAG_CERT_SHA256, REQ, 32, 32},
    {HSM_TAG_CERT_SERIAL, REQ, 16, 16}, {HSM_TAG_KIND, REQ, 1, 1},
    {HSM_TAG_KEY_ID, OPT, 8, 10},       {HSM_TAG_KCV, REQ, 3, 5},
    {HSM_TAG_KEY_BLOCK, OPT, 16, 512}};

/* Sealed messages (docs/system-design.md section 3). */
static const struct hsm_field_spec sealed_open_req[] = {KB(HSM_TAG_BDK),
                                                        {HSM_TAG_SEALED, REQ, 1, 1024},
                                                        {HSM_TAG_DEST_KEY, OPT, 16, 512},
                                                        {HSM_TAG_ZEK, OPT, 16, 512}};
static const struct hsm_field_spec sealed_open_resp[] = {
    {HSM_TAG_MSG_TYPE, REQ, 1, 1},     {HSM_TAG_SCHEME, REQ, 1, 1},
    {HSM_TAG_KSN, REQ, 10, 12},        {HSM_TAG_SEQUENCE, REQ, 8, 8},
    {HSM_TAG_TXN_TYPE, REQ, 1, 1},     {HSM_TAG_AMOUNT, REQ, 8, 8},
    {HSM_TAG_CURRENCY, REQ, 2, 2},     {HSM_TAG_MERCHANT_ID, REQ, 15, 15},
    {HSM_TAG_TERMINAL_ID, REQ, 8, 8},  {HSM_TAG_DATETIME, REQ, 14, 14},
    {HSM_TAG_ENTRY_MODE, REQ, 1, 1},   {HSM_TAG_FALLBACK, REQ, 1, 1},
    {HSM_TAG_MASKED_PAN, OPT, 12, 19}, {HSM_TAG_ORIGINAL_REF, OPT, 1, 32},
    {HSM_TAG_LOCATION, OPT, 20, 20},   {HSM_TAG_PAN, OPT, 12, 19},
    {HSM_TAG_HASH, OPT, 32, 32},       {HSM_TAG_PSN, OPT, 2, 2},
    {HSM_TAG_EMV, OPT, 1, 255},        {HSM_TAG_CHIP_CARD, REQ, 1, 1},
    {HSM_TAG_HAS_PIN, REQ, 1, 1},      {HSM_TAG_PIN_BLOCK, OPT, 8, 8},
    {HSM_TAG_IV, OPT, 8, 8},           {HSM_TAG_TRACK2_ENC, OPT, 8, 24},
    {HSM_TAG_REV_REASON, OPT, 1, 1},   {HSM_TAG_RETRY, OPT, 1, 1},
};
static const struct hsm_field_spec sealed_respond_req[] = {KB(HSM_TAG_BDK),
                                                           {HSM_TAG_SCHEME, REQ, 1, 1},
                                                           {HSM_TAG_KSN, REQ, 10, 12},
                                                           {HSM_TAG_SEQUENCE, REQ, 8, 8},
                                                           {HSM_TAG_RESPONSE_CODE, REQ, 2, 2},
                                                           {HSM_TAG_AUTH_CODE, OPT, 6, 6},
                                                           {HSM_TAG_RRN, OPT, 12, 12},
                                                           {HSM_TAG_ARC, OPT, 2, 2},
                                                           {HSM_TAG_IAD, OPT, 8, 16}};
static const struct hsm_field_spec sealed_respond_resp[] = {{HSM_TAG_SEALED, REQ, 1, 512}};

/* Without data: the key's public key only. */
static const struct hsm_field_spec params_sign_req[] = {KB(HSM_TAG_KEY_BLOCK),
                                                        {HSM_TAG_DATA, OPT, 2, 4096}};
static const struct hsm_field_spec params_sign_resp[] = {{HSM_TAG_DATA, OPT, 64, 64},
                                                         {HSM_TAG_PUBKEY, REQ, 65, 65}};

static const struct hsm_field_spec key_from_components_req[] = {
    {HSM_TAG_KEY_USAGE, REQ, 2, 2},   {HSM_TAG_ALGORITHM, REQ, 1, 1},
    {HSM_TAG_MODE, REQ, 1, 1},        {HSM_TAG_EXPORTABILITY, REQ, 1, 1},
    {HSM_TAG_DUKPT, OPT, 1, 1},       {HSM_TAG_COMPONENT1, REQ, 8, 64},
    {HSM_TAG_COMPONENT2, REQ, 8, 64}, {HSM_TAG_COMPONENT3, OPT, 8, 64}};
static const struct hsm_field_spec key_from_components_resp[] = {
    KB(HSM_TAG_KEY_BLOCK), {HSM_TAG_KCV, REQ, 3, 5}, {HSM_TAG_COMPONENT_KCVS, REQ, 6, 15}};

static const struct hsm_command commands[] = {
    {HSM_CMD_STATUS, "status", NONE, SCHEMA(status_resp)},
    {HSM_CMD_RANDOM, "random", SCHEMA(random_req), SCHEMA(random_resp)},
    {HSM_CMD_KEY_GENERATE, "key.generate", SCHEMA(key_generate_req), SCHEMA(key_generate_resp)},
    {HSM_CMD_BDK_GENERATE, "bdk.generate", SCHEMA(bdk_generate_req), SCHEMA(key_kcv_resp)},
    {HSM_CMD_KEY_IMPORT, "key.import", SCHEMA(key_import_req), SCHEMA(key_import_resp)},
    {HSM_CMD_KEY_EXPORT, "key.export", SCHEMA(key_export_req), SCHEMA(tr31_kcv_resp)},
    {HSM_CMD_DUKPT_INITIAL_KEY, "dukpt.initial-key", SCHEMA(dukpt_initial_key_req),
     SCHEMA(tr31_kcv_resp)},
    {HSM_CMD_MKWK_GENERATE, "mkwk.generate", SCHEMA(mkwk_req), SCHEMA(mkwk_resp)},
    {HSM_CMD_PIN_TRANSLATE_DUKPT, "pin.translate-dukpt", SCHEMA(pin_translate_dukpt_req),
     SCHEMA(pin_block_resp)},
    {HSM_CMD_PIN_TRANSLATE, "pin.translate", SCHEMA(pin_translate_req), SCHEMA(pin_block_resp)},
    {HSM_CMD_PIN_VERIFY_PVV, "pin.verify-pvv", SCHEMA(pin_verify_pvv_req), NONE},
    {HSM_CMD_PVV_GENERATE, "pvv.generate", SCHEMA(pvv_generate_req), SCHEMA(pvv_resp)},
    {HSM_CMD_DUKPT_MAC_VERIFY, "dukpt.mac-verify", SCHEMA(dukpt_mac_verify_req), NONE},
    {HSM_CMD_DUKPT_MAC_GENERATE, "dukpt.mac-generate", SCHEMA(dukpt_mac_generate_req),
     SCHEMA(mac_resp)},
    {HSM_CMD_MAC_GENERATE, "mac.generate", SCHEMA(mac_generate_req), SCHEMA(mac_resp)},
    {HSM_CMD_MAC_VERIFY, "mac.verify", SCHEMA(mac_verify_req), NONE},
    {HSM_CMD_CARD_DATA_TRANSLATE, "card-data.translate", SCHEMA(card_data_req),
     SCHEMA(card_data_resp)},
    {HSM_CMD_PAN_HASH, "pan.hash", SCHEMA(pan_hash_req), SCHEMA(pan_hash_resp)},
    {HSM_CMD_ARQC_VERIFY, "emv.arqc-verify", SCHEMA(arqc_req), SCHEMA(arqc_resp)},
    {HSM_CMD_CERT_SIGN, "cert.sign", SCHEMA(cert_sign_req), SCHEMA(cert_sign_resp)},
    {HSM_CMD_CA_CERT_CREATE, "cert.ca-create", SCHEMA(ca_cert_create_req), SCHEMA(cert_sign_resp)},
    {HSM_CMD_PROVISION_TERMINAL, "provision.terminal", SCHEMA(provision_terminal_req),
     SCHEMA(provision_terminal_resp)},
    {HSM_CMD_KEY_FROM_COMPONENTS, "key.from-components", SCHEMA(key_from_components_req),
     SCHEMA(key_from_components_resp)},
    {HSM_CMD_SEALED_OPEN, "sealed.open", SCHEMA(sealed_open_req), SCHEMA(sealed_open_resp)},
    {HSM_CMD_SEALED_RESPOND, "sealed.respond", SCHEMA(sealed_respond_req),
     SCHEMA(sealed_respond_resp)},
    {HSM_CMD_PARAMS_SIGN, "params.sign", SCHEMA(params_sign_req), SCHEMA(params_sign_resp)},
};

const struct hsm_command *hsm_proto_command(uint16_t code)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (commands[i].code == code) {
            return &commands[i];
        }
    }
    return NULL;
}

const struct hsm_command *hsm_proto_command_by_name(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

size_t hsm_proto_command_index(const struct hsm_command *c)
{
    return (size_t)(c - commands);
}

const struct hsm_command *hsm_proto_commands(size_t *n)
{
    *n = sizeof(commands) / sizeof(commands[0]);
    return commands;
}
