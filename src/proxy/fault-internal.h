/* fault internals: the decoded forms of the Toxiproxy API's JSON bodies, decoded the way Go's
 * encoding/json does (keys matched case-insensitively, null = absent, integers must be
 * integral, trailing bytes after the first value ignored), and Go-shaped JSON output. */
#ifndef CAIRN_FAULT_INTERNAL_H
#define CAIRN_FAULT_INTERNAL_H

#include "proxy/proxy.h"

#include <jansson.h>
#include <pthread.h>

#define FAULT_BODY_MAX (1 << 20)

struct fault_proxy_in {
	const char *name, *listen, *upstream; /* borrowed from the json; NULL when absent */
	int enabled;                          /* -1 absent or null */
};

struct fault_toxic_in {
	const char *type, *name, *stream; /* borrowed; NULL when absent */
	bool has_toxicity;
	float toxicity;
	json_t *attributes; /* borrowed; NULL when absent or null */
};

/* Decodes the first JSON value of body; an empty body is Go's "EOF". */
int fault__json_load(const char *body, size_t n, json_t **out, struct err *e);
int fault__proxy_in(json_t *j, struct fault_proxy_in *out, struct err *e);
int fault__toxic_in(json_t *j, struct fault_toxic_in *out, struct err *e);
/* Decodes attributes for type t into a[] (keys not given keep their value). */
int fault__attrs_in(json_t *attrs, enum proxy_toxic_type t, int64_t a[3], struct err *e);
int fault__stream_parse(const char *s, enum proxy_dir *out);

struct ftoxic {
	struct proxy_toxic t;
	char *stream; /* owned: echoed exactly as sent */
	enum proxy_dir dir;
};

/* A proxy of the fault layer; the names and texts are its own. */
struct fproxy {
	char *name, *listen, *upstream; /* owned */
	bool enabled;
	int64_t id; /* engine proxy */
	struct ftoxic tox[2][PROXY_TOXICS_MAX];
	size_t n_tox[2];
};

#define FAULT_ALLOW_MAX 64

/* An --allow-listen entry: addresses a proxy may bind besides loopback. */
struct fault_prefix {
	int family; /* AF_INET or AF_INET6 */
	unsigned char ip[16];
	int bits;
};

/* The fault layer; one lock serialises API requests. */
struct fault {
	struct proxy_engine *eng; /* borrowed */
	pthread_mutex_t mu;
	struct fproxy **v; /* owned, sorted by name (Go's map keys are marshalled sorted) */
	size_t n, cap;
	bool metrics;
	struct fault_prefix allow[FAULT_ALLOW_MAX];
	size_t n_allow;
	struct net_addr api; /* where the API listens, once has_api */
	bool has_api;
};

/* fault-policy.c. "" and ":PORT" → "127.0.0.1:PORT" in tmp (true); else *out = listen. */
bool fault__loopback_listen(const char *listen, char *tmp, size_t n, const char **out);
/* Resolves listen (first address) and checks it may be bound: loopback or allowed, not a
 * privileged port. -EACCES when refused; a resolve error as net_resolve_tcp gives it. */
int fault__listen_check(const struct fault *f, const char *listen, struct net_addr *out,
			struct err *e);
/* Follows upstream through the proxies' listeners (self excluded): -EACCES when it reaches the
 * API, -ELOOP when it reaches self_listen (NULL: not bound yet). */
int fault__route_check(struct fault *f, const struct fproxy *self,
		       const struct net_addr *self_listen, const char *upstream, struct err *e);
/* Records the API's bound address and checks the proxies that exist already (takes the lock). */
int fault__set_api(struct fault *f, const char *bound, struct err *e);

int fault__metrics(struct fault *f, struct fault_reply *out);

void fault__put_toxic(struct buf *b, const struct ftoxic *t);
void fault__put_toxics(struct buf *b, const struct fproxy *p);
void fault__put_proxy(struct buf *b, const struct fproxy *p);

/* Output, byte for byte as Go's json.Marshal writes it (HTML-safe escaping, float32). */
void fault__json_str(struct buf *b, const char *s);
void fault__json_float32(struct buf *b, float f);

#endif
