/* mpos-hsmd client: transport (blocking calls with a deadline over a non-blocking socket). */
#define _GNU_SOURCE 1
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mpos/util.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline: 0 ready, HSM_CLIENT_ERR_TIMEOUT or _IO. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            return HSM_CLIENT_ERR_TIMEOUT;
        }
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, (int)left);
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return HSM_CLIENT_ERR_IO;
        }
    }
}

static int do_connect(hsm_client *c)
{
    struct sockaddr_un sun;
    long long deadline = now_ms() + c->timeout_ms;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, c->path, sizeof(c->path));
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return HSM_CLIENT_ERR_IO;
    }
    if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
        return 0;
    }
    if (errno == EINPROGRESS || errno == EAGAIN) {
        int err = 0;
        socklen_t el = sizeof(err);
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
            return 0;
        }
        close(c->fd);
        c->fd = -1;
        return rc != 0 ? rc : HSM_CLIENT_ERR_IO;
    }
    close(c->fd);
    c->fd = -1;
    return HSM_CLIENT_ERR_IO;
}

int hsm_client_open(hsm_client *c, const char *path, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (path == NULL || strlen(path) >= sizeof(c->path)) {
        return MPOS_ERR_ARG;
    }
    strcpy(c->path, path);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    c->next_id = 1;
    c->cap = HSM_PROTO_PREFIX_LEN + HSM_PROTO_MAX_RESPONSE;
    c->buf = malloc(c->cap);
    if (c->buf == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = do_connect(c);
    if (rc != 0) {
        hsm_client_close(c);
    }
    return rc;
}

static void drop_connection(hsm_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
}

void hsm_client_close(hsm_client *c)
{
    drop_connection(c);
    if (c->buf != NULL) {
        mpos_cleanse(c->buf, c->cap);
        free(c->buf);
    }
    c->buf = NULL;
    memset(&c->resp, 0, sizeof(c->resp));
}

static int send_all(hsm_client *c, const uint8_t *p, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return HSM_CLIENT_ERR_IO;
    }
    return 0;
}

static int recv_all(hsm_client *c, uint8_t *p, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = recv(c->fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return HSM_CLIENT_ERR_IO; /* 0: the server closed */
    }
    return 0;
}

/* Reads one response frame into c->buf and decodes it. */
static int receive(hsm_client *c, uint16_t command, uint32_t id, long long deadline)
{
    size_t body = 0;
    int rc = recv_all(c, c->buf, HSM_PROTO_PREFIX_LEN, deadline);
    if (rc == 0 && hsm_proto_frame_len(c->buf, HSM_PROTO_RESP_HEADER_LEN, HSM_PROTO_MAX_RESPONSE,
                                       &body) != HSM_STATUS_OK) {
        rc = MPOS_ERR_FORMAT;
    }
    if (rc == 0) {
        rc = recv_all(c, c->buf + HSM_PROTO_PREFIX_LEN, body, deadline);
    }
    if (rc == 0) {
        rc = hsm_proto_decode_response(c->buf + HSM_PROTO_PREFIX_LEN, body, command, &c->resp);
    }
    if (rc == 0 && c->resp.request_id != id && !(c->resp.command == 0 && c->resp.request_id == 0)) {
        rc = MPOS_ERR_FORMAT;
    }
    if (rc != 0) {
        drop_connection(c);
        return rc;
    }
    /* A refusal of the frame itself ends the connection on the server's side. */
    if (c->resp.status == HSM_STATUS_FRAME || c->resp.status == HSM_STATUS_TOO_LARGE ||
        c->resp.status == HSM_STATUS_BUSY) {
        drop_connection(c);
    }
    return c->resp.status;
}

void hsm_client_begin(hsm_client *c, uint16_t command, hsm_writer *w)
{
    uint32_t id = c->next_id++;
    if (c->next_id == 0) {
        c->next_id = 1;
    }
    hsm_writer_request(w, c->buf, c->buf != NULL ? c->cap : 0, command, id);
}

int hsm_client_exchange(hsm_client *c, hsm_writer *w)
{
    size_t len = 0;
    if (c->buf == NULL) {
        return MPOS_ERR_ARG;
    }
    int rc = hsm_writer_finish(w, &len);
    if (rc != 0) {
        return rc;
    }
    uint16_t command = mpos_load_be16(c->buf + 5);
    uint32_t id = mpos_load_be32(c->buf + 7);
    long long deadline = now_ms() + c->timeout_ms;
    if (c->fd < 0 && (rc = do_connect(c)) != 0) {
        return rc;
    }
    rc = send_all(c, c->buf, len, deadline);
    mpos_cleanse(c->buf, len); /* PIN blocks, card data (encrypted) */
    if (rc != 0) {
        drop_connection(c);
        return rc;
    }
    return receive(c, command, id, deadline);
}

int hsm_client_send_raw(hsm_client *c, const uint8_t *bytes, size_t len, uint16_t expect_command)
{
    long long deadline = now_ms() + c->timeout_ms;
    int rc = 0;
    if (c->buf == NULL) {
        return MPOS_ERR_ARG;
    }
    if (c->fd < 0 && (rc = do_connect(c)) != 0) {
        return rc;
    }
    uint32_t id = len >= 11 ? mpos_load_be32(bytes + 7) : 0;
    rc = send_all(c, bytes, len, deadline);
    if (rc != 0) {
        drop_connection(c);
        return rc;
    }
    return receive(c, expect_command, id, deadline);
}
