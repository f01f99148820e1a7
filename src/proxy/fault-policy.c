/* fault policy: where a proxy made through the API may listen and where it may send. A proxy
 * listens on loopback unless the server was given an allow-list, never on a privileged port,
 * and its upstream — followed through the other proxies' listeners — never reaches the fault
 * API itself nor comes back to the proxy (a loop that eats descriptors until the box has none).
 * Checks only: addresses and the proxy list, no engine calls; the caller holds the lock. */
#include "proxy/fault-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A v4-mapped v6 address as the v4 one; anything else copied. */
static void unmap(const struct sockaddr_storage *in, struct sockaddr_storage *out)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)in;
	*out = *in;
	if (in->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;
		uint16_t port = s6->sin6_port;
		struct in_addr ip;
		memcpy(&ip, &s6->sin6_addr.s6_addr[12], 4);
		memset(out, 0, sizeof *out);
		s4->sin_family = AF_INET;
		s4->sin_port = port;
		s4->sin_addr = ip;
	}
}

/* The address bytes (4 or 16) of an AF_INET/AF_INET6 address, and its port. */
static const unsigned char *ip_bytes(const struct sockaddr_storage *ss, size_t *out_n, int *out_port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		*out_n = 4;
		*out_port = ntohs(s4->sin_port);
		return (const unsigned char *)&s4->sin_addr;
	}
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	*out_n = 16;
	*out_port = ntohs(s6->sin6_port);
	return s6->sin6_addr.s6_addr;
}

static bool is_any(const struct sockaddr_storage *ss)
{
	size_t n;
	int port;
	const unsigned char *b = ip_bytes(ss, &n, &port);
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static int port_of(const struct sockaddr_storage *ss)
{
	size_t n;
	int port;
	ip_bytes(ss, &n, &port);
	return port;
}

/* Is ip an address of this host? Binding a datagram socket to it succeeds only then. */
static bool is_local(const struct sockaddr_storage *ss)
{
	if (is_loopback(ss) || is_any(ss))
		return true;
	struct sockaddr_storage a = *ss;
	socklen_t len = a.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (a.ss_family == AF_INET)
		((struct sockaddr_in *)&a)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&a)->sin6_port = 0;
	int fd = socket(a.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true; /* cannot tell: assume the worst */
	bool local = bind(fd, (struct sockaddr *)&a, len) == 0;
	close(fd);
	return local;
}

/* Does a connection to `up` arrive at a listener bound to `ln`? (Connecting to 0.0.0.0 or ::
 * reaches this host; a wildcard listener takes every local address of its family, [::] both.) */
static bool reaches(const struct sockaddr_storage *up_in, const struct sockaddr_storage *ln_in)
{
	struct sockaddr_storage up, ln;
	size_t nu, nl;
	int pu, pl;
	unmap(up_in, &up);
	unmap(ln_in, &ln);
	const unsigned char *bu = ip_bytes(&up, &nu, &pu), *bl = ip_bytes(&ln, &nl, &pl);
	if (pu != pl || pu == 0)
		return false;
	if (is_any(&ln))
		return (ln.ss_family == AF_INET6 || up.ss_family == AF_INET) && is_local(&up);
	if (is_any(&up))
		return is_loopback(&ln) || is_local(&ln);
	return nu == nl && !memcmp(bu, bl, nu);
}

static bool prefix_has(const struct fault_prefix *p, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage a;
	size_t n;
	int port;
	unmap(ss, &a);
	const unsigned char *b = ip_bytes(&a, &n, &port);
	if ((a.ss_family == AF_INET) != (p->family == AF_INET))
		return false;
	int bits = p->bits;
	for (size_t i = 0; bits > 0; i++, bits -= 8) {
		unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
		if ((b[i] & mask) != (p->ip[i] & mask))
			return false;
	}
	return true;
}

int fault_allow_listen(struct fault *f, const char *spec, struct err *e)
{
	struct fault_prefix p = { 0 };
	char ip[INET6_ADDRSTRLEN + 2];
	const char *slash = strchr(spec, '/');
	size_t n = slash ? (size_t)(slash - spec) : strlen(spec);
	char *end;

	if (f->n_allow == FAULT_ALLOW_MAX)
		return err_set(e, CAIRN_EINPUT, "at most %d --allow-listen entries", FAULT_ALLOW_MAX);
	if (n && spec[0] == '[' && spec[n - 1] == ']') { /* [::] as addresses are written */
		spec++;
		n -= 2;
	}
	if (n >= sizeof ip)
		goto bad;
	memcpy(ip, spec, n);
	ip[n] = 0;
	if (inet_pton(AF_INET, ip, p.ip) == 1)
		p.family = AF_INET;
	else if (inet_pton(AF_INET6, ip, p.ip) == 1)
		p.family = AF_INET6;
	else
		goto bad;
	p.bits = p.family == AF_INET ? 32 : 128;
	if (slash) {
		long b = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || b < 0 || b > p.bits)
			goto bad;
		p.bits = (int)b;
	}
	f->allow[f->n_allow++] = p;
	return 0;
bad:
	return err_set(e, CAIRN_EINPUT,
		       "--allow-listen: '%s' is not an address or ADDRESS/BITS; write e.g. 10.0.0.5, "
		       "10.0.0.0/8, 0.0.0.0 (every IPv4 interface) or :: (every interface)",
		       spec);
}

bool fault__loopback_listen(const char *listen, char *tmp, size_t n, const char **out)
{
	*out = listen;
	if (listen[0] && listen[0] != ':')
		return false;
	/* "" and ":PORT" bind every interface in Go; here they mean loopback, any port */
	if (snprintf(tmp, n, "127.0.0.1%s", listen[0] ? listen : ":0") >= (int)n)
		return false;
	*out = tmp;
	return true;
}

int fault__listen_check(const struct fault *f, const char *listen, struct net_addr *out,
			struct err *e)
{
	struct net_addr a;
	size_t n = 0;
	char text[NET_ADDR_STRLEN];
	int r = net_resolve_tcp(listen, true, &a, 1, &n, e);
	if (r < 0)
		return r;
	net_addr_str((struct sockaddr *)&a.ss, text, sizeof text);
	int port = port_of(&a.ss);
	if (port > 0 && port < 1024)
		return err_set(e, EACCES,
			       "listen %s: port %d is a privileged port (below 1024); the fault API "
			       "does not bind those: pick a port from 1024 up, or 0 for any",
			       listen, port);
	struct sockaddr_storage u;
	unmap(&a.ss, &u);
	bool ok = is_loopback(&u);
	for (size_t i = 0; !ok && i < f->n_allow; i++)
		ok = prefix_has(&f->allow[i], &a.ss);
	if (!ok)
		return err_set(e, EACCES,
			       "listen %s: %s is not a loopback address; the fault API binds proxies to "
			       "loopback (127.0.0.1, ::1) unless its server was started with "
			       "--allow-listen (e.g. cairn fault serve --allow-listen %s)",
			       listen, text, is_any(&u) ? (u.ss_family == AF_INET ? "0.0.0.0" : "::") : text);
	if (out)
		*out = a;
	return 0;
}

/* The proxies whose listener a connection to `a` arrives at, pushed on the stack once each. */
static void push_hits(struct fault *f, const struct fproxy *self, const struct sockaddr_storage *a,
		      bool *seen, size_t *stack, size_t *sp)
{
	int port = port_of(a);
	for (size_t i = 0; i < f->n; i++) {
		const struct fproxy *q = f->v[i];
		const char *c = strrchr(q->listen, ':');
		if (q == self || seen[i] || !c || atoi(c + 1) != port)
			continue; /* the port first: a resolve per proxy would make populate O(n²) */
		struct net_addr qa;
		size_t n = 0;
		struct err e;
		if (net_resolve_tcp(q->listen, true, &qa, 1, &n, &e) < 0 || !reaches(a, &qa.ss))
			continue;
		seen[i] = true;
		stack[(*sp)++] = i;
	}
}

int fault__route_check(struct fault *f, const struct fproxy *self, const struct net_addr *self_listen,
		       const char *upstream, struct err *e)
{
	bool *seen = calloc(f->n + 1, sizeof *seen);
	size_t *stack = calloc(f->n + 1, sizeof *stack), sp = 0;
	const char *cur = upstream, *via = NULL;
	int r = 0;

	if (!seen || !stack) {
		free(seen);
		free(stack);
		return err_set(e, ENOMEM, "out of memory");
	}
	for (;;) {
		struct net_addr as[NET_ADDR_MAX];
		size_t n = 0;
		struct err ignored;
		/* a name that does not resolve reaches nothing (the engine keeps it with no address) */
		if (net_resolve_tcp(cur, false, as, NET_ADDR_MAX, &n, &ignored) < 0)
			n = 0;
		for (size_t i = 0; i < n && r == 0; i++) {
			char text[NET_ADDR_STRLEN];
			net_addr_str((struct sockaddr *)&as[i].ss, text, sizeof text);
			if (f->has_api && reaches(&as[i].ss, &f->api.ss))
				r = err_set(e, EACCES,
					    "upstream %s%s%s%s is the fault API's own address (%s): a proxy "
					    "to it would let its clients drive the API; point the proxy "
					    "at the service under test",
					    upstream, via ? " (through proxy '" : "", via ? via : "",
					    via ? "')" : "", text);
			else if (self_listen && reaches(&as[i].ss, &self_listen->ss))
				r = err_set(e, ELOOP,
					    "upstream %s%s%s%s is this proxy's own listen address (%s): "
					    "each connection would connect to the proxy again, without end",
					    upstream, via ? " (through proxy '" : "", via ? via : "",
					    via ? "')" : "", text);
			else
				push_hits(f, self, &as[i].ss, seen, stack, &sp);
		}
		if (r < 0 || sp == 0)
			break;
		const struct fproxy *q = f->v[stack[--sp]];
		cur = q->upstream;
		via = q->name;
	}
	free(seen);
	free(stack);
	return r;
}

int fault__set_api(struct fault *f, const char *bound, struct err *e)
{
	struct net_addr a;
	size_t n = 0;
	int r = net_resolve_tcp(bound, true, &a, 1, &n, e);
	if (r < 0)
		return r;
	pthread_mutex_lock(&f->mu);
	f->api = a;
	f->has_api = true;
	for (size_t i = 0; r == 0 && i < f->n; i++) { /* proxies made before the API (config) */
		struct net_addr la, *self = NULL;
		size_t k = 0;
		struct err ignored;
		if (net_resolve_tcp(f->v[i]->listen, true, &la, 1, &k, &ignored) == 0)
			self = &la;
		r = fault__route_check(f, f->v[i], self, f->v[i]->upstream, e);
		if (r < 0)
			err_prefix(e, "proxy '%s'", f->v[i]->name);
	}
	if (r < 0)
		f->has_api = false;
	pthread_mutex_unlock(&f->mu);
	return r;
}
