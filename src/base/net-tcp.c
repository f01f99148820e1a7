/* net-tcp: TCP address parsing ("host:port", "[v6]:port", ":port"), resolution, listening and
 * connecting sockets, and the Go-style "ip:port" text of a bound address. Blocking calls here
 * (getaddrinfo) are for callers outside event loops; sockets come back non-blocking. */
#include "base/base.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int net_split_hostport(const char *s, char *host, size_t hostn, char *port, size_t portn)
{
	const char *colon, *h = s, *hend;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		hend = strchr(s, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		h = s + 1;
		colon = hend + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* no port, or an unbracketed IPv6 address */
		hend = colon;
	}
	size_t hl = (size_t)(hend - h), pl = strlen(colon + 1);
	if (hl >= hostn || pl >= portn || pl == 0)
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if ((*p < '0' || *p > '9') && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	memcpy(port, colon + 1, pl);
	port[pl] = 0;
	return 0;
}

int net_resolve_tcp(const char *addr, bool passive, struct net_addr *out, size_t max,
		    size_t *out_n, struct err *e)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP }, *res, *ai;
	size_t n = 0;
	int r;

	if (passive && addr && !addr[0])
		addr = ":0"; /* Go: "" listens on every interface, any port */
	if (net_split_hostport(addr, host, sizeof host, port, sizeof port) < 0)
		return err_set(e, CAIRN_EINPUT, "address %s: missing port in address (want HOST:PORT)",
			       addr);
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r != 0)
		return err_set(e, CAIRN_EINPUT, "lookup %s: %s", addr, gai_strerror(r));
	/* IPv4 first: "localhost" means 127.0.0.1 to most people; but an empty host to listen
	 * on means every interface, which is [::] (dual-stack), as Go binds it */
	int first = passive && !host[0] ? AF_INET6 : AF_INET;
	for (int pass = 0; pass < 2; pass++)
		for (ai = res; ai && n < max; ai = ai->ai_next) {
			if ((pass == 0) != (ai->ai_family == first))
				continue;
			if (ai->ai_addrlen > sizeof out[n].ss)
				continue;
			memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
			out[n].len = ai->ai_addrlen;
			n++;
		}
	freeaddrinfo(res);
	if (n == 0)
		return err_set(e, CAIRN_EINPUT, "lookup %s: no TCP address", addr);
	*out_n = n;
	return 0;
}

void net_addr_str(const struct sockaddr *sa, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		port = ntohs(s4->sin_port);
		snprintf(out, n, "%s:%d", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		port = ntohs(s6->sin6_port);
		snprintf(out, n, "[%s]:%d", ip, port);
	} else {
		snprintf(out, n, "?");
	}
}

int net_local_addr_str(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	net_addr_str((struct sockaddr *)&ss, out, n);
	return 0;
}

int net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

void net_set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct net_listen_keep keep; /* set once, before any listener (the agent's start) */

void net_listen_keep_set(const struct net_listen_keep *k)
{
	keep = k ? *k : (struct net_listen_keep){0};
}

static bool has_port(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_port != 0;
	if (a->ss.ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)&a->ss)->sin6_port != 0;
	return false;
}

int net_listen_on(const struct net_addr *a, bool reuseport, int backlog, struct err *e)
{
	int one = 1, fd;
	char text[NET_ADDR_STRLEN];

	if (keep.take && has_port(a) &&
	    (fd = keep.take(keep.ctx, (const struct sockaddr *)&a->ss, a->len)) >= 0) {
		net_set_nonblock(fd);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		return fd;
	}
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(e, errno, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
		int er = errno;
		net_addr_str((const struct sockaddr *)&a->ss, text, sizeof text);
		close(fd);
		return err_set(e, er, "listen tcp %s: bind: %s", text,
			       er == EADDRINUSE ? "address already in use" : strerror(er));
	}
	if (keep.bound)
		keep.bound(keep.ctx, fd);
	return fd;
}

int net_connect_start(const struct net_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		int er = errno;
		close(fd);
		return -er;
	}
	return fd;
}

int net_dial_tcp(const char *addr, int timeout_ms, struct err *e)
{
	struct net_addr as[8];
	size_t n = 0;
	int r = net_resolve_tcp(addr, false, as, ARRAY_SIZE(as), &n, e);
	if (r < 0)
		return r;
	int last = ECONNREFUSED;
	for (size_t i = 0; i < n; i++) {
		int fd = socket(as[i].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_set(e, errno, "socket: %s", strerror(errno));
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		if (connect(fd, (const struct sockaddr *)&as[i].ss, as[i].len) == 0)
			return fd;
		last = errno;
		close(fd);
	}
	return err_set(e, last, "dial tcp %s: %s", addr, strerror(last));
}
