/* libmpos_vpcd_preload.so: a fix for the vpcd driver of Debian's vsmartcard-vpcd 3.3, loaded
 * into our own pcscd only (LD_PRELOAD), never into a system one.
 *
 * The bug: in reversed mode (reader.conf DEVICENAME <host>:<port>, the driver connects to the
 * virtual card) the driver's vicc_connect() tests `if (ctx->server_sock)` where it means
 * `>= 0`; in reversed mode server_sock is -1, so once the connection to the card has been
 * dropped (the driver drops it whenever a frame gets no answer or an empty one: that is how
 * a card is reported removed) the next presence poll calls waitforclient(-1), whose FD_SET
 * aborts pcscd ("bit out of range 0 - FD_SETSIZE on fd_set"). Without a reconnection a
 * virtual card can never be removed and put back.
 *
 * The fix: this library defines vicc_connect, which the driver calls through its PLT (it is
 * an exported symbol of libifdvpcd.so.0.8), so the definition here takes precedence. It does
 * what upstream's later vpcd does: reversed mode reconnects to <host>:<port> (only a numeric
 * IPv4 address in 127.0.0.0/8: anything else stays unconnected), with TCP_NODELAY; server
 * mode waits for a client as the driver did (with poll, not select). The layout of struct
 * vicc_ctx is the one of vsmartcard 3.3's vpcd.h (checked against the Debian binary: malloc
 * of 0x20 bytes, server_sock at 0, client_sock at 4, hostname at 8, port at 16, io_lock at
 * 24); the test harness loads this library only with that driver build.
 */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct vicc_ctx {
    int server_sock;
    int client_sock;
    char *hostname;
    unsigned short port;
    void *io_lock;
};

int vicc_connect(struct vicc_ctx *ctx, long secs, long usecs)
    __attribute__((visibility("default")));

static int connect_loopback(const char *host, unsigned short port)
{
    struct sockaddr_in sa;
    int one = 1, fd, r;
    memset(&sa, 0, sizeof(sa));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127 ||
        port == 0) {
        return -1;
    }
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    do {
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)); /* loopback: at once */
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        (void)close(fd);
        return -1;
    }
    return fd;
}

int vicc_connect(struct vicc_ctx *ctx, long secs, long usecs)
{
    if (ctx == NULL) {
        return 0;
    }
    if (ctx->client_sock == -1) {
        if (ctx->server_sock >= 0) {
            struct pollfd p = {ctx->server_sock, POLLIN, 0};
            long ms = secs * 1000 + usecs / 1000;
            if (poll(&p, 1, (int)(ms > 60000 ? 60000 : ms)) == 1 && (p.revents & POLLIN)) {
                ctx->client_sock = accept4(ctx->server_sock, NULL, NULL, SOCK_CLOEXEC);
            }
        } else if (ctx->hostname != NULL) {
            ctx->client_sock = connect_loopback(ctx->hostname, ctx->port);
        }
        if (ctx->client_sock < 0) {
            ctx->client_sock = -1;
        }
    }
    return ctx->client_sock != -1;
}
