/* rendezvous.c - the one TCP exchange of ranks started from the environment:
 * every rank > 0 connects to rank 0 (retrying until the deadline, since rank
 * 0 may start last), says who it is, and reads rank 0's blob. Decision: a
 * fixed little-endian hello (magic, version, rank, world, blob size) that
 * rank 0 checks before it answers, so a rank from another job or with
 * another world size is refused with a message instead of joining. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rendezvous.h"
#include "util.h"

#define HELLO_MAGIC 0x56524e54u /* "TNRV" */
#define HELLO_VERSION 1u
#define HELLO_BYTES 20
#define ANSWER_OK 0u
#define ANSWER_REFUSED 1u

static int env_int(const char *name, int lo, int hi, int dflt, int *out)
{
	const char *s = getenv(name);
	if (!s) {
		if (dflt < 0)
			return tn_fail(TN_EUSAGE, "%s is not set (it is needed with TN_WORLD_SIZE)", name);
		*out = dflt;
		return TN_OK;
	}
	uint64_t v;
	if (tn_parse_u64(s, &v, 0) || v < (uint64_t)lo || v > (uint64_t)hi)
		return tn_fail(TN_EUSAGE, "%s='%s': expected an integer from %d to %d", name, s, lo, hi);
	*out = (int)v;
	return TN_OK;
}

int tn_launch_env_read(struct tn_launch_env *e, int *found)
{
	*found = 0;
	if (!getenv("TN_WORLD_SIZE"))
		return TN_OK;
	int timeout = 600;
	int rc = env_int("TN_WORLD_SIZE", 1, 1 << 20, -1, &e->world);
	if (!rc)
		rc = env_int("TN_RANK", 0, e->world - 1, -1, &e->rank);
	if (!rc)
		rc = env_int("TN_LOCAL_RANK", 0, 1 << 20, e->rank, &e->local_rank);
	if (!rc)
		rc = env_int("TN_RENDEZVOUS_TIMEOUT", 1, 1 << 30, 600, &timeout);
	e->timeout = timeout;
	e->master = getenv("TN_MASTER_ADDR");
	if (!rc && e->world > 1 && !e->master)
		rc = tn_fail(TN_EUSAGE, "TN_MASTER_ADDR is not set (host:port of rank 0, "
			     "needed with TN_WORLD_SIZE > 1)");
	if (!rc)
		*found = 1;
	return rc;
}

/* "host:port" or "[v6]:port" into its parts (host points into buf). */
static int split_address(const char *addr, char *buf, size_t cap, const char **host,
			 const char **port)
{
	size_t len = strlen(addr);
	const char *colon = strrchr(addr, ':');
	if (len >= cap || !colon || colon == addr || !colon[1])
		return tn_fail(TN_EUSAGE, "TN_MASTER_ADDR='%s': expected host:port", addr);
	memcpy(buf, addr, len + 1);
	buf[colon - addr] = '\0';
	*port = buf + (colon - addr) + 1;
	*host = buf;
	size_t hl = strlen(buf);
	if (buf[0] == '[' && hl > 2 && buf[hl - 1] == ']') {
		buf[hl - 1] = '\0';
		*host = buf + 1;
	}
	return TN_OK;
}

static int resolve(const char *addr, int passive, struct addrinfo **ai)
{
	char buf[512];
	const char *host = NULL, *port = NULL;
	int rc = split_address(addr, buf, sizeof buf, &host, &port);
	if (rc)
		return rc;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = passive ? AI_PASSIVE : 0};
	int g = getaddrinfo(host, port, &hints, ai);
	if (g)
		return tn_fail(TN_EIO, "rendezvous at %s: %s", addr, gai_strerror(g));
	return TN_OK;
}

static double seconds_left(double deadline)
{
	double left = deadline - tn_now();
	return left > 0 ? left : 0;
}

/* Wait until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, double deadline, const char *addr, const char *what)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int ms = (int)(seconds_left(deadline) * 1000);
		int n = poll(&p, 1, ms);
		if (n > 0)
			return TN_OK;
		if (n == 0)
			return tn_fail(TN_EIO, "rendezvous at %s: timed out %s", addr, what);
		if (errno != EINTR)
			return tn_fail_errno("rendezvous at %s: poll", addr);
	}
}

static int io_all(int fd, void *buf, size_t n, int writing, double deadline, const char *addr,
		  const char *what)
{
	unsigned char *p = buf;
	while (n) {
		int rc = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline, addr, what);
		if (rc)
			return rc;
		ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
		if (k == 0)
			return tn_fail(TN_EIO, "rendezvous at %s: the other side closed %s", addr, what);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return tn_fail_errno("rendezvous at %s: %s", addr, what);
		}
		p += k;
		n -= (size_t)k;
	}
	return TN_OK;
}

static void hello_pack(unsigned char h[HELLO_BYTES], int rank, int world, size_t n)
{
	tn_put32(h, HELLO_MAGIC);
	tn_put32(h + 4, HELLO_VERSION);
	tn_put32(h + 8, (uint32_t)rank);
	tn_put32(h + 12, (uint32_t)world);
	tn_put32(h + 16, (uint32_t)n);
}

static int listen_on(const char *addr, int *out)
{
	struct addrinfo *ai = NULL;
	int rc = resolve(addr, 1, &ai), fd = -1;
	for (struct addrinfo *a = ai; !rc && a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		int one = 1;
		if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
				bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 64))) {
			rc = tn_fail_errno("rendezvous: listening at %s", addr);
			close(fd);
			fd = -1;
		}
	}
	if (!rc && fd < 0)
		rc = tn_fail_errno("rendezvous: listening at %s", addr);
	if (ai)
		freeaddrinfo(ai);
	*out = fd;
	return rc;
}

/* Rank 0: check one hello; refuse (and fail) on a mismatch. */
static int serve_one(int fd, const struct tn_launch_env *e, unsigned char *seen, const void *blob,
		     size_t n, double deadline)
{
	unsigned char h[HELLO_BYTES], a[4];
	int rc = io_all(fd, h, sizeof h, 0, deadline, e->master, "reading a rank's hello");
	if (rc)
		return rc;
	uint32_t r = tn_le32(h + 8);
	if (tn_le32(h) != HELLO_MAGIC || tn_le32(h + 4) != HELLO_VERSION)
		rc = tn_fail(TN_EDATA, "rendezvous at %s: a connection that is not a tn rank "
			     "(or another version)", e->master);
	else if (tn_le32(h + 12) != (uint32_t)e->world || tn_le32(h + 16) != (uint32_t)n)
		rc = tn_fail(TN_EDATA, "rendezvous at %s: rank %u has TN_WORLD_SIZE %u, rank 0 has %d",
			     e->master, r, tn_le32(h + 12), e->world);
	else if (r == 0 || r >= (uint32_t)e->world || seen[r])
		rc = tn_fail(TN_EDATA, "rendezvous at %s: rank %u came %s", e->master, r,
			     r && r < (uint32_t)e->world ? "twice" : "but is out of range");
	tn_put32(a, rc ? ANSWER_REFUSED : ANSWER_OK);
	int sent = io_all(fd, a, sizeof a, 1, deadline, e->master, "answering a rank");
	if (!rc && !sent)
		sent = io_all(fd, (void *)blob, n, 1, deadline, e->master, "sending the blob");
	if (!rc)
		seen[r] = 1;
	return rc ? rc : sent;
}

static int serve(const struct tn_launch_env *e, const void *blob, size_t n, double deadline)
{
	int lfd, rc = listen_on(e->master, &lfd);
	unsigned char *seen = rc ? NULL : tn_calloc((size_t)e->world, 1);
	if (!rc && !seen)
		rc = TN_ENOMEM;
	for (int joined = 1; !rc && joined < e->world; joined++) {
		rc = wait_fd(lfd, POLLIN, deadline, e->master, "waiting for the other ranks");
		int fd = rc ? -1 : accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (!rc && fd < 0)
			rc = tn_fail_errno("rendezvous at %s: accept", e->master);
		if (!rc)
			rc = serve_one(fd, e, seen, blob, n, deadline);
		if (fd >= 0)
			close(fd);
	}
	free(seen);
	if (lfd >= 0)
		close(lfd);
	return rc;
}

/* Connect to rank 0, retrying every 100 ms until the deadline. */
static int connect_to(const char *addr, double deadline, int *out)
{
	for (;;) {
		struct addrinfo *ai = NULL;
		int rc = resolve(addr, 0, &ai), fd = -1;
		for (struct addrinfo *a = ai; !rc && a && fd < 0; a = a->ai_next) {
			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
			if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
				close(fd);
				fd = -1;
			}
		}
		if (ai)
			freeaddrinfo(ai);
		if (rc || fd >= 0) {
			*out = fd;
			return rc;
		}
		if (seconds_left(deadline) <= 0)
			return tn_fail(TN_EIO, "rendezvous at %s: rank 0 did not answer in time", addr);
		nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
	}
}

static int join(const struct tn_launch_env *e, void *blob, size_t n, double deadline)
{
	int fd = -1, rc = connect_to(e->master, deadline, &fd);
	if (rc)
		return rc;
	unsigned char h[HELLO_BYTES], a[4];
	hello_pack(h, e->rank, e->world, n);
	rc = io_all(fd, h, sizeof h, 1, deadline, e->master, "sending the hello");
	if (!rc)
		rc = io_all(fd, a, sizeof a, 0, deadline, e->master, "reading rank 0's answer");
	if (!rc && tn_le32(a) != ANSWER_OK)
		rc = tn_fail(TN_EDATA, "rendezvous at %s: rank 0 refused rank %d (TN_WORLD_SIZE=%d "
			     "or TN_RANK do not match the job)", e->master, e->rank, e->world);
	if (!rc)
		rc = io_all(fd, blob, n, 0, deadline, e->master, "reading the blob");
	close(fd);
	return rc;
}

int tn_rendezvous_share(const struct tn_launch_env *e, void *blob, size_t n)
{
	if (e->world <= 1)
		return TN_OK;
	double deadline = tn_now() + e->timeout;
	return e->rank == 0 ? serve(e, blob, n, deadline) : join(e, blob, n, deadline);
}

int tn_rendezvous_free_address(char *addr, size_t n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		int rc = tn_fail_errno("cannot find a free port for the ranks' rendezvous");
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	snprintf(addr, n, "127.0.0.1:%d", ntohs(sa.sin_port));
	return TN_OK;
}
