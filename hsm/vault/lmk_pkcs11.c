/* mpos-hsmd: the LMK under a PKCS#11 token (vault.h hsm_vault_create_pkcs11 / _open_pkcs11).
 *
 * The token holds a non-extractable, sensitive AES-256 key labelled "mpos-lmk-kek". The LMK
 * is stored outside the token in lmk.wrapped, encrypted by the token under that key; hsmd
 * decrypts it once at start-up into the locked arena, then logs out and finalises the module:
 * no token call per command.
 *
 * Mechanism: CKM_AES_GCM through C_Encrypt / C_Decrypt (PKCS#11 v2.40 2.10.4 / 2.10.5; NIST
 * SP 800-38D), a random 96-bit IV, a 128-bit tag, the file header as additional
 * authenticated data. Not CKM_AES_KEY_WRAP_PAD (RFC 5649) as first planned: SoftHSM2 2.6
 * offers it only for C_WrapKey / C_UnwrapKey (CKF_WRAP | CKF_UNWRAP; C_EncryptInit returns
 * CKR_MECHANISM_INVALID), and going through C_UnwrapKey would need the token to create the
 * LMK as an extractable, non-sensitive object so that CKA_VALUE could be read back, which is
 * what a token exists to prevent (and what HSMs in FIPS mode refuse). GCM is an authenticated
 * encryption mode that PKCS#11 tokens offer with C_Encrypt, and a tampered file or a file of
 * another token is refused by the tag. The file names its mechanism so that another one can be
 * added for tokens that do RFC 5649 with C_Encrypt.
 *
 * File (HSM_LMK_FILE_LEN = 72 bytes, mode 0600, owned by the service user):
 *   "MPOSLMK1" (8) || mechanism, big-endian (4) = CKM_AES_GCM || IV (12) || C (32) || T (16)
 *   with (C, T) = GCM-AE(KEK, IV, P = LMK, A = the first 12 bytes).
 */
#define _DEFAULT_SOURCE /* O_NOFOLLOW, O_CLOEXEC, fchmod, fsync, lstat */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "mpos/util.h"
#include "vault_int.h"

#define FILE_MAGIC      "MPOSLMK1"
#define FILE_MAGIC_LEN  8
#define FILE_AAD_LEN    12 /* magic || mechanism */
#define FILE_IV_LEN     12 /* SP 800-38D 8.2.2: a 96-bit random IV (one encryption per key use) */
#define FILE_TAG_LEN    16
#define FILE_CT_OFF     (FILE_AAD_LEN + FILE_IV_LEN)
#define FILE_CT_LEN     (HSM_LMK_LEN + FILE_TAG_LEN)
#define TOKEN_LABEL_LEN 32 /* CK_TOKEN_INFO.label, blank padded */

_Static_assert(FILE_CT_OFF + FILE_CT_LEN == HSM_LMK_FILE_LEN, "lmk.wrapped layout");

/* One use of the module: loaded, initialised, a session logged in as the user. */
struct p11 {
    void *lib;
    CK_FUNCTION_LIST_PTR f;
    int initialized; /* we called C_Initialize: we call C_Finalize */
    CK_SESSION_HANDLE session;
    int have_session;
    int logged_in; /* we logged in: we log out */
};

static void p11_end(struct p11 *p)
{
    if (p->f != NULL) {
        if (p->logged_in) {
            (void)p->f->C_Logout(p->session);
        }
        if (p->have_session) {
            (void)p->f->C_CloseSession(p->session);
        }
        if (p->initialized) {
            (void)p->f->C_Finalize(NULL);
        }
    }
    if (p->lib != NULL) {
        (void)dlclose(p->lib);
    }
    memset(p, 0, sizeof(*p));
}

/* CK_TOKEN_INFO.label (32 bytes, blank padded, PKCS#11 v2.40 3.2) equals label. */
static int label_matches(const CK_UTF8CHAR token[TOKEN_LABEL_LEN], const char *label, size_t len)
{
    if (memcmp(token, label, len) != 0) {
        return 0;
    }
    for (size_t i = len; i < TOKEN_LABEL_LEN; i++) {
        if (token[i] != ' ') {
            return 0;
        }
    }
    return 1;
}

/* Loads the module, initialises it, finds the one token with the label, opens a session
 * (read-write when rw) and logs in as the user. */
static int p11_begin(hsm_vault *v, struct p11 *p, const struct hsm_pkcs11_config *cfg, int rw)
{
    int rc;
    CK_RV rv;
    CK_C_GetFunctionList get = NULL;
    void *sym;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG count = 0;
    CK_SLOT_ID slot = 0;
    int found = 0;
    size_t label_len = strlen(cfg->token_label);
    size_t pin_len = strlen(cfg->user_pin);
    if (label_len == 0 || label_len > TOKEN_LABEL_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "token label must have 1 to 32 characters");
        goto exit;
    }
    if (pin_len == 0) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "empty user PIN");
        goto exit;
    }
    p->lib = dlopen(cfg->module_path, RTLD_NOW | RTLD_LOCAL);
    if (p->lib == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "PKCS#11 module cannot be loaded");
        goto exit;
    }
    sym = dlsym(p->lib, "C_GetFunctionList");
    if (sym == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "not a PKCS#11 module (no C_GetFunctionList)");
        goto exit;
    }
    memcpy(&get, &sym, sizeof(get)); /* POSIX: dlsym's object pointer to a function pointer */
    if (get(&p->f) != CKR_OK || p->f == NULL) {
        p->f = NULL;
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_GetFunctionList failed");
        goto exit;
    }
    rv = p->f->C_Initialize(NULL);
    if (rv == CKR_OK) {
        p->initialized = 1;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_Initialize failed");
        goto exit;
    }
    /* The token: the one initialised token present whose label is the configured one. */
    if (p->f->C_GetSlotList(CK_TRUE, NULL, &count) != CKR_OK) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_GetSlotList failed");
        goto exit;
    }
    slots = calloc(count > 0 ? count : 1, sizeof(*slots));
    if (slots == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "out of memory");
        goto exit;
    }
    if (count > 0 && p->f->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_GetSlotList failed");
        goto exit;
    }
    for (CK_ULONG i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
            !(info.flags & CKF_TOKEN_INITIALIZED) ||
            !label_matches(info.label, cfg->token_label, label_len)) {
            continue;
        }
        if (found) {
            rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "two tokens carry the configured label");
            goto exit;
        }
        slot = slots[i];
        found = 1;
    }
    if (!found) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "no token with the configured label");
        goto exit;
    }
    rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL, NULL,
                             &p->session);
    if (rv != CKR_OK) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_OpenSession failed");
        goto exit;
    }
    p->have_session = 1;
    rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)cfg->user_pin, (CK_ULONG)pin_len);
    if (rv == CKR_OK) {
        p->logged_in = 1;
    } else if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
               rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED) {
        rc = hsm_vault_refuse(v, MPOS_ERR_VERIFY, "the token refused the user PIN");
        goto exit;
    } else if (rv != CKR_USER_ALREADY_LOGGED_IN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_Login failed");
        goto exit;
    }
    rc = MPOS_OK;
exit:
    free(slots);
    return rc;
}

/* The object labelled HSM_LMK_KEK_LABEL: *found 0 when there is none. */
static int find_kek(hsm_vault *v, struct p11 *p, CK_OBJECT_HANDLE *kek, int *found)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)HSM_LMK_KEK_LABEL, sizeof(HSM_LMK_KEK_LABEL) - 1},
    };
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;
    CK_RV rv;
    *found = 0;
    if (p->f->C_FindObjectsInit(p->session, tmpl, 2) != CKR_OK) {
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_FindObjectsInit failed");
    }
    rv = p->f->C_FindObjects(p->session, objs, 2, &n);
    (void)p->f->C_FindObjectsFinal(p->session);
    if (rv != CKR_OK) {
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_FindObjects failed");
    }
    if (n > 1) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "more than one mpos-lmk-kek in the token");
    }
    if (n == 1) {
        *kek = objs[0];
        *found = 1;
    }
    return MPOS_OK;
}

/* The wrapping key must be a token AES-256 key, sensitive and not extractable, that can
 * encrypt and decrypt (PKCS#11 v2.40 4.9, table 27). */
static int check_kek(hsm_vault *v, struct p11 *p, CK_OBJECT_HANDLE kek)
{
    CK_KEY_TYPE type = 0;
    CK_ULONG value_len = 0;
    CK_BBOOL token = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
    CK_BBOOL enc = CK_FALSE, dec = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_ENCRYPT, &enc, sizeof(enc)},
        {CKA_DECRYPT, &dec, sizeof(dec)},
    };
    if (p->f->C_GetAttributeValue(p->session, kek, a, sizeof(a) / sizeof(a[0])) != CKR_OK) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "cannot read the attributes of mpos-lmk-kek");
    }
    if (type != CKK_AES || value_len != HSM_LMK_LEN) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "mpos-lmk-kek is not an AES-256 key");
    }
    if (token != CK_TRUE || sensitive != CK_TRUE || extractable != CK_FALSE) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY,
                                "mpos-lmk-kek is not a sensitive, non-extractable token key");
    }
    if (enc != CK_TRUE || dec != CK_TRUE) {
        return hsm_vault_refuse(v, MPOS_ERR_KEY, "mpos-lmk-kek cannot encrypt and decrypt");
    }
    return MPOS_OK;
}

/* Generates the wrapping key inside the token (CKM_AES_KEY_GEN, PKCS#11 v2.40 2.10.3):
 * a private token object, sensitive, never extractable, not modifiable or copyable, used
 * for encrypt/decrypt only. */
static int create_kek(hsm_vault *v, struct p11 *p, CK_OBJECT_HANDLE *kek)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG value_len = HSM_LMK_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_LABEL, (void *)HSM_LMK_KEK_LABEL, sizeof(HSM_LMK_KEK_LABEL) - 1},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_MODIFIABLE, &no, sizeof(no)},
        {CKA_COPYABLE, &no, sizeof(no)},
    };
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    if (p->f->C_GenerateKey(p->session, &gen, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), kek) !=
        CKR_OK) {
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "the token cannot generate mpos-lmk-kek");
    }
    return MPOS_OK;
}

/* One GCM operation under the KEK. The header's 12 bytes are the AAD and its IV the IV.
 * Encrypt: in = the LMK (32), out = C || T (48). Decrypt: in = C || T, out = the LMK, through
 * the arena's scratch (the token wants room for in_len bytes of output). */
static int kek_gcm(hsm_vault *v, struct p11 *p, CK_OBJECT_HANDLE kek, int encrypt,
                   const uint8_t file[HSM_LMK_FILE_LEN], const uint8_t *in, size_t in_len,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
    /* PKCS#11 v2.40 2.10.4 (CK_GCM_PARAMS): IV 96 bits, tag 128 bits. */
    CK_GCM_PARAMS params = {(CK_BYTE_PTR)(file + FILE_AAD_LEN),
                            FILE_IV_LEN,
                            FILE_IV_LEN * 8,
                            (CK_BYTE_PTR)file,
                            FILE_AAD_LEN,
                            FILE_TAG_LEN * 8};
    CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
    CK_ULONG n = 0;
    CK_RV rv;
    *out_len = 0;
    rv = encrypt ? p->f->C_EncryptInit(p->session, &mech, kek)
                 : p->f->C_DecryptInit(p->session, &mech, kek);
    if (rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID) {
        return hsm_vault_refuse(v, MPOS_ERR_UNSUPPORTED,
                                "the token does not offer CKM_AES_GCM for encrypt/decrypt");
    }
    if (rv != CKR_OK) {
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_EncryptInit/C_DecryptInit failed");
    }
    /* Length query first (PKCS#11 v2.40 5.2, the operation stays active), then the call. */
    rv = encrypt ? p->f->C_Encrypt(p->session, (CK_BYTE_PTR)in, (CK_ULONG)in_len, NULL, &n)
                 : p->f->C_Decrypt(p->session, (CK_BYTE_PTR)in, (CK_ULONG)in_len, NULL, &n);
    if (rv == CKR_OK && n > out_cap) {
        /* The operation stays active; the caller's p11_end closes the session, ending it. */
        return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "token output longer than expected");
    }
    if (rv == CKR_OK) {
        n = (CK_ULONG)out_cap;
        rv = encrypt ? p->f->C_Encrypt(p->session, (CK_BYTE_PTR)in, (CK_ULONG)in_len, out, &n)
                     : p->f->C_Decrypt(p->session, (CK_BYTE_PTR)in, (CK_ULONG)in_len, out, &n);
    }
    if (rv != CKR_OK) {
        mpos_cleanse(out, out_cap);
        if (encrypt) {
            return hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "C_Encrypt failed");
        }
        /* A bad tag: CKR_ENCRYPTED_DATA_INVALID by the standard, CKR_GENERAL_ERROR from
         * SoftHSM2 2.6. Either way the file is not this token's wrapping of an LMK. */
        return hsm_vault_refuse(v, MPOS_ERR_VERIFY,
                                "the wrapped LMK does not authenticate under mpos-lmk-kek");
    }
    *out_len = (size_t)n;
    return MPOS_OK;
}

/* Reads lmk.wrapped: a regular file (not a link), owned by us, no group or other bits. */
static int read_wrapped(hsm_vault *v, const char *path, uint8_t file[HSM_LMK_FILE_LEN])
{
    int rc;
    struct stat st;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return hsm_vault_refuse(v, MPOS_ERR_ARG,
                                errno == ENOENT  ? "wrapped-LMK file not found"
                                : errno == ELOOP ? "wrapped-LMK file is a symbolic link"
                                                 : "wrapped-LMK file cannot be opened");
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file is not a regular file");
        goto exit;
    }
    if (st.st_uid != geteuid()) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file is not owned by this user");
        goto exit;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        rc = hsm_vault_refuse(
            v, MPOS_ERR_ARG,
            "wrapped-LMK file has loose permissions (group/other bits; chmod 600)");
        goto exit;
    }
    if (st.st_size != HSM_LMK_FILE_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_FORMAT, "wrapped-LMK file has the wrong length");
        goto exit;
    }
    while (got < HSM_LMK_FILE_LEN) {
        ssize_t r = read(fd, file + got, HSM_LMK_FILE_LEN - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file cannot be read");
            goto exit;
        }
        got += (size_t)r;
    }
    if (memcmp(file, FILE_MAGIC, FILE_MAGIC_LEN) != 0) {
        rc = hsm_vault_refuse(v, MPOS_ERR_FORMAT, "not a wrapped-LMK file (magic)");
        goto exit;
    }
    if (mpos_load_be32(file + FILE_MAGIC_LEN) != CKM_AES_GCM) {
        rc = hsm_vault_refuse(v, MPOS_ERR_UNSUPPORTED, "wrapped-LMK file mechanism not supported");
        goto exit;
    }
    rc = MPOS_OK;
exit:
    (void)close(fd);
    return rc;
}

/* Writes lmk.wrapped, mode 0600, never over an existing file; synced, with its directory. */
static int write_wrapped(hsm_vault *v, const char *path, const uint8_t file[HSM_LMK_FILE_LEN])
{
    int rc;
    size_t put = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        return hsm_vault_refuse(v, MPOS_ERR_ARG,
                                errno == EEXIST ? "wrapped-LMK file exists: refusing to overwrite"
                                                : "wrapped-LMK file cannot be created");
    }
    if (fchmod(fd, 0600) != 0) { /* exactly 0600 whatever the umask */
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file: chmod failed");
        goto exit;
    }
    while (put < HSM_LMK_FILE_LEN) {
        ssize_t w = write(fd, file + put, HSM_LMK_FILE_LEN - put);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file cannot be written");
            goto exit;
        }
        put += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file cannot be synced");
        goto exit;
    }
    rc = MPOS_OK;
exit:
    if (close(fd) != 0 && rc == MPOS_OK) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file cannot be closed");
    }
    if (rc != MPOS_OK) {
        (void)unlink(path);
        return rc;
    }
    {
        /* The directory entry too (best effort: not every file system syncs directories). */
        char dir[4096];
        const char *slash = strrchr(path, '/');
        size_t dlen = slash == NULL ? 0 : (size_t)(slash - path);
        if (slash == path) {
            dlen = 1;
        }
        if (dlen < sizeof(dir)) {
            int dfd;
            if (dlen == 0) {
                memcpy(dir, ".", 2);
            } else {
                memcpy(dir, path, dlen);
                dir[dlen] = '\0';
            }
            dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                (void)close(dfd);
            }
        }
    }
    return MPOS_OK;
}

static int config_valid(const struct hsm_pkcs11_config *cfg)
{
    return cfg != NULL && cfg->module_path != NULL && cfg->token_label != NULL &&
           cfg->user_pin != NULL;
}

int hsm_vault_create_pkcs11(hsm_vault *v, const struct hsm_pkcs11_config *cfg,
                            const char *wrapped_path)
{
    int rc;
    struct p11 p;
    struct stat st;
    CK_OBJECT_HANDLE kek = 0;
    int found = 0;
    uint8_t file[HSM_LMK_FILE_LEN];
    uint8_t *scratch;
    size_t n = 0;
    memset(&p, 0, sizeof(p));
    memset(file, 0, sizeof(file));
    if ((rc = hsm_vault_check_closed(v)) != MPOS_OK) {
        return rc;
    }
    v->why = NULL;
    scratch = v->arena + HSM_ARENA_SCRATCH_OFF;
    if (!config_valid(cfg) || wrapped_path == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "incomplete PKCS#11 configuration or no path");
        goto exit;
    }
    /* Refuse early, before touching the token; O_EXCL at the end closes the race. */
    if (lstat(wrapped_path, &st) == 0 || errno != ENOENT) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "wrapped-LMK file exists: refusing to overwrite");
        goto exit;
    }
    if ((rc = p11_begin(v, &p, cfg, 1)) != MPOS_OK || (rc = find_kek(v, &p, &kek, &found)) != 0) {
        goto exit;
    }
    if (!found && (rc = create_kek(v, &p, &kek)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = check_kek(v, &p, kek)) != MPOS_OK) {
        goto exit;
    }
    /* The LMK: 32 random bytes straight into the locked arena. */
    if ((rc = mpos_random_bytes(v->lmk, HSM_LMK_LEN)) != MPOS_OK) {
        rc = hsm_vault_refuse(v, rc, "random generator failed");
        goto exit;
    }
    memcpy(file, FILE_MAGIC, FILE_MAGIC_LEN);
    mpos_store_be32(file + FILE_MAGIC_LEN, (uint32_t)CKM_AES_GCM);
    if ((rc = mpos_random_bytes(file + FILE_AAD_LEN, FILE_IV_LEN)) != MPOS_OK) {
        rc = hsm_vault_refuse(v, rc, "random generator failed");
        goto exit;
    }
    if ((rc = kek_gcm(v, &p, kek, 1, file, v->lmk, HSM_LMK_LEN, file + FILE_CT_OFF, FILE_CT_LEN,
                      &n)) != MPOS_OK) {
        goto exit;
    }
    if (n != FILE_CT_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "token GCM output has the wrong length");
        goto exit;
    }
    /* Read back through the token before anything is written: the file must open. */
    if ((rc = kek_gcm(v, &p, kek, 0, file, file + FILE_CT_OFF, FILE_CT_LEN, scratch,
                      HSM_ARENA_SCRATCH_LEN, &n)) != MPOS_OK) {
        goto exit;
    }
    if (n != HSM_LMK_LEN || !mpos_ct_equal(scratch, v->lmk, HSM_LMK_LEN)) {
        rc = hsm_vault_refuse(v, MPOS_ERR_CRYPTO, "the token does not decrypt what it encrypted");
        goto exit;
    }
    p11_end(&p);
    if ((rc = write_wrapped(v, wrapped_path, file)) != MPOS_OK) {
        goto exit;
    }
    rc = hsm_vault_finish_open(v);
exit:
    p11_end(&p);
    mpos_cleanse(v->arena + HSM_ARENA_SCRATCH_OFF, HSM_ARENA_SCRATCH_LEN);
    MPOS_WIPE_BUFFER(file);
    if (rc != MPOS_OK) {
        const char *why = v->why;
        hsm_vault_wipe_keys(v);
        v->why = why;
    }
    return rc;
}

int hsm_vault_open_pkcs11(hsm_vault *v, const struct hsm_pkcs11_config *cfg,
                          const char *wrapped_path)
{
    int rc;
    struct p11 p;
    CK_OBJECT_HANDLE kek = 0;
    int found = 0;
    uint8_t file[HSM_LMK_FILE_LEN];
    uint8_t *scratch;
    size_t n = 0;
    memset(&p, 0, sizeof(p));
    memset(file, 0, sizeof(file));
    if ((rc = hsm_vault_check_closed(v)) != MPOS_OK) {
        return rc;
    }
    v->why = NULL;
    scratch = v->arena + HSM_ARENA_SCRATCH_OFF;
    if (!config_valid(cfg) || wrapped_path == NULL) {
        rc = hsm_vault_refuse(v, MPOS_ERR_ARG, "incomplete PKCS#11 configuration or no path");
        goto exit;
    }
    /* The file first: a bad file is refused without a token session. */
    if ((rc = read_wrapped(v, wrapped_path, file)) != MPOS_OK) {
        goto exit;
    }
    if ((rc = p11_begin(v, &p, cfg, 0)) != MPOS_OK || (rc = find_kek(v, &p, &kek, &found)) != 0) {
        goto exit;
    }
    if (!found) {
        rc = hsm_vault_refuse(v, MPOS_ERR_KEY, "the token holds no mpos-lmk-kek");
        goto exit;
    }
    if ((rc = check_kek(v, &p, kek)) != MPOS_OK) {
        goto exit;
    }
    /* The one C_Decrypt: into the locked arena, then the LMK in place. */
    if ((rc = kek_gcm(v, &p, kek, 0, file, file + FILE_CT_OFF, FILE_CT_LEN, scratch,
                      HSM_ARENA_SCRATCH_LEN, &n)) != MPOS_OK) {
        goto exit;
    }
    if (n != HSM_LMK_LEN) {
        rc = hsm_vault_refuse(v, MPOS_ERR_VERIFY, "the wrapped LMK has the wrong length");
        goto exit;
    }
    memcpy(v->lmk, scratch, HSM_LMK_LEN);
    p11_end(&p);
    rc = hsm_vault_finish_open(v);
exit:
    p11_end(&p);
    mpos_cleanse(v->arena + HSM_ARENA_SCRATCH_OFF, HSM_ARENA_SCRATCH_LEN);
    MPOS_WIPE_BUFFER(file);
    if (rc != MPOS_OK) {
        const char *why = v->why;
        hsm_vault_wipe_keys(v);
        v->why = why;
    }
    return rc;
}
