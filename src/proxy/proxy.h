/* proxy: the TCP proxy engine — epoll loops (1..N threads sharing one listening socket, never
 * SO_REUSEPORT), splice(2) for pass-through bytes, a buffered path with per-connection toxics, atomic upstream switches
 * with drain, and the Toxiproxy-compatible fault layer and HTTP API on top. Every call from
 * another thread goes through a command queue into the loops; none blocks the data path. */
#ifndef CAIRN_PROXY_H
#define CAIRN_PROXY_H

#include "base/base.h"

/* ---- toxics ------------------------------------------------------------------------------ */

enum proxy_toxic_type {
	TOXIC_NOOP,
	TOXIC_LATENCY,    /* a0 latency ms, a1 jitter ms */
	TOXIC_BANDWIDTH,  /* a0 rate KB/s (1 KB = 1000 B); 0 stalls */
	TOXIC_SLOW_CLOSE, /* a0 delay ms */
	TOXIC_TIMEOUT,    /* a0 timeout ms (0: drop forever) */
	TOXIC_RESET_PEER, /* a0 timeout ms */
	TOXIC_SLICER,     /* a0 average_size B, a1 size_variation B, a2 delay us */
	TOXIC_LIMIT_DATA, /* a0 bytes */
	TOXIC__COUNT
};

enum proxy_dir { PROXY_UPSTREAM = 0, PROXY_DOWNSTREAM = 1 }; /* client→server, server→client */

#define PROXY_TOXIC_NAME_MAX 128
#define PROXY_TOXICS_MAX 32 /* per direction of one proxy */

struct proxy_toxic {
	char name[PROXY_TOXIC_NAME_MAX]; /* unique per proxy; state survives updates by name */
	enum proxy_toxic_type type;
	float toxicity; /* probability, rolled per connection-direction */
	int64_t a[3];   /* attributes, see the enum */
};

const char *proxy_toxic_type_name(enum proxy_toxic_type t);
int proxy_toxic_type_parse(const char *s, enum proxy_toxic_type *out);
/* Attribute names of a type in a[] order, NULL-terminated. */
const char *const *proxy_toxic_attr_names(enum proxy_toxic_type t);
/* Attribute i of type t: its unit for messages ("ms", "KB/s", "bytes", "us") and the largest
 * value the API accepts (the smallest is 0). Times stop at 2^31-1 (24.8 days) so that no
 * product in the engine's time arithmetic can overflow. */
const char *proxy_toxic_attr_unit(enum proxy_toxic_type t, size_t i);
int64_t proxy_toxic_attr_max(enum proxy_toxic_type t, size_t i);

/* ---- the engine -------------------------------------------------------------------------- */

struct proxy_engine;

struct proxy_engine_opts {
	int threads;              /* loop threads, sharing one listener (default 1) */
	size_t max_conns;         /* per proxy and loop; more are accepted and closed (10000) */
	size_t max_buffered;      /* queued bytes per connection direction before reads stop (1 MiB) */
	int64_t drain_timeout_ms; /* connections on a replaced upstream set close after (30 s) */
	int64_t connect_timeout_ms; /* per upstream connect attempt (5 s) */
	uint64_t seed;            /* toxicity and jitter RNG (0: from the clock) */
	bool no_splice;           /* always the buffered path (for benchmarks) */
	bool coarse_timers;       /* sleep straight to deadlines (no final short naps): less CPU,
				   * but wake-ups may be late by milliseconds on a busy machine */
};

int proxy_engine_new(const struct proxy_engine_opts *o, struct proxy_engine **out, struct err *e);
/* Stops the loops, closes every listener and connection. NULL is a no-op. */
void proxy_engine_free(struct proxy_engine *eng);

struct proxy_upstream {
	const char *addr;  /* "host:port", resolved when set (a failed lookup refuses connections) */
	const char *label; /* release id or any tag for counters; may be NULL */
};

/* A proxy: listens on `listen` ("host:port", port 0 for any), forwards round-robin to the
 * upstreams (skipping one that refuses for that connection). Binds in the caller's thread, so
 * bind errors come back here; the bound address goes to out_addr. `enabled == false` creates
 * it without a listener. Returns a proxy id (> 0). */
int64_t proxy_engine_add(struct proxy_engine *eng, const char *listen,
			 const struct proxy_upstream *ups, size_t n_ups, bool enabled,
			 char out_addr[NET_ADDR_STRLEN], struct err *e);
/* Closes the listener and every connection of the proxy. */
int proxy_engine_remove(struct proxy_engine *eng, int64_t id);
/* New connections go to the new set; connections in flight stay on theirs until they end or
 * the drain timeout passes. */
int proxy_engine_set_upstreams(struct proxy_engine *eng, int64_t id, const struct proxy_upstream *ups,
			       size_t n_ups, struct err *e);
/* Disable: listener closed (new clients refused), every connection closed. Enable re-listens
 * on `listen` (the bound address to out_addr). */
int proxy_engine_disable(struct proxy_engine *eng, int64_t id);
int proxy_engine_enable(struct proxy_engine *eng, int64_t id, const char *listen,
			char out_addr[NET_ADDR_STRLEN], struct err *e);
/* Replaces one direction's chain. Live connections take the new chain at once: state of a toxic
 * kept by name, toxicity re-rolled for every toxic of that direction (Toxiproxy restarts
 * them all); a removed `timeout` toxic closes the connections it sat on. */
int proxy_engine_set_toxics(struct proxy_engine *eng, int64_t id, enum proxy_dir dir,
			    const struct proxy_toxic *chain, size_t n);

/* Counters of one upstream label, summed over loops. */
struct proxy_label_stats {
	char label[PROXY_TOXIC_NAME_MAX];
	uint64_t conns_total, conns_active, connect_failures, bytes_up, bytes_down;
	uint64_t upstream_resets; /* connections the upstream reset (RST) once connected */
};
struct proxy_stats {
	uint64_t conns_total, conns_active, conns_refused_limit;
	uint64_t bytes_up, bytes_down;           /* received from the client / the upstream */
	uint64_t bytes_sent_up, bytes_sent_down; /* written to the upstream / the client */
	size_t n_labels;
	struct proxy_label_stats labels[8];
};
int proxy_engine_stats(struct proxy_engine *eng, int64_t id, struct proxy_stats *out);

/* ---- descriptors: one budget for every proxy of the process (budget.c) -------------------
 * A process that serves more than its proxies (the agent: its API, instances, probes) caps the
 * descriptors the proxies' client connections may hold: each counts PROXY_FDS_PER_CONN (its
 * own and its upstream's). At the budget a proxy stops accepting for a moment (new clients
 * wait in the listen backlog) until connections close. 0, the default: no budget. */
#define PROXY_FDS_PER_CONN 2
void proxy_fd_budget_set(long n);
long proxy_fd_budget_used(void);
/* Internal to the proxies: take k descriptors of the budget (false: over it), give them back. */
bool proxy__fd_take(int k);
void proxy__fd_put(int k);

/* ---- protocol modules -------------------------------------------------------------------- */

/* A protocol module sits on a connection's buffered path (the HTTP/1.1 mode of the rollout
 * proxy is one): it sees every chunk in each direction before the toxics, and may ask to close
 * the connection by returning < 0. Set per proxy with proxy_engine_set_protocol. */
struct proxy_protocol {
	void *(*conn_open)(void *mod, const char *label);
	int (*on_bytes)(void *conn_state, enum proxy_dir dir, const char *p, size_t n);
	void (*conn_close)(void *conn_state);
	void *mod;
};
int proxy_engine_set_protocol(struct proxy_engine *eng, int64_t id, const struct proxy_protocol *p);

/* ---- HTTP/1.1 observer (http.c): a protocol module counting per release ---------------- */

#define PROXY_HTTP_BUCKETS 100 /* bucket i: latencies up to 2^(i/4) us (~33 s at the top) */
struct proxy_http_stats {
	char label[PROXY_TOXIC_NAME_MAX];
	uint64_t requests, parse_errors;
	uint64_t status[6]; /* [1]..[5]: 1xx..5xx responses; [0]: any other code */
	uint64_t hist[PROXY_HTTP_BUCKETS]; /* request start to response end */
};
struct proxy_http;
struct proxy_http *proxy_http_new(void);
void proxy_http_free(struct proxy_http *h); /* after every proxy using it is gone */
/* The module's callbacks, for proxy_engine_set_protocol. */
void proxy_http_protocol(struct proxy_http *h, struct proxy_protocol *out);
/* Counters of one label (-1 when it has seen no response). */
int proxy_http_stats(struct proxy_http *h, const char *label, struct proxy_http_stats *out);
double proxy_http_percentile_us(const struct proxy_http_stats *s, double p);
double proxy_http_bucket_us(int i);

/* ---- the HTTP/1.1 reverse proxy (hproxy*.c) --------------------------------------------------
 * The rollout proxy of an HTTP app: unlike the engine above (bytes per connection), it routes
 * per request. Each request picks an upstream of the set current when its head arrived, so a
 * switch moves the very next request of a keep-alive client; a request in flight finishes on
 * the upstream that took it. Upstream connections are kept alive in per-thread pools. Request
 * heads are parsed (libhttp-parser) and rewritten only to add X-Forwarded-For/-Proto/-Host and to
 * set Connection for the upstream hop; bodies (Content-Length or chunked) and responses pass
 * through unchanged; after a 101 the connection becomes a byte tunnel (WebSocket). Pipelined
 * requests are answered in order, one at a time. Answers it makes itself: 400 bad request
 * bytes, 408 slow request head, 413 body over the limit, 431 head over the limit, 502 upstream
 * refused/closed, 503 stopped or no upstream, 504 upstream slow to answer; each JSON
 * {"error":{"code":…,"message":…}} with Connection: close. Counters per label (release) in a
 * sliding window of one-second slots plus totals since the label first appeared; answers the
 * proxy made itself for a routed request (502/504) count against that request's label. */

struct hproxy;

struct hproxy_opts {
	int threads;                       /* loop threads, sharing one listener (default 1) */
	size_t max_header_bytes;           /* request head limit → 431 (default 64 KiB) */
	int64_t max_body_bytes;            /* request body limit → 413 (default 64 MiB; <0: none) */
	int64_t header_timeout_ms;         /* the whole request head within → 408 (default 10 s) */
	int64_t idle_timeout_ms;           /* keep-alive client idle between requests (default 60 s) */
	int64_t connect_timeout_ms;        /* upstream connect → next upstream, then 502 (5 s) */
	int64_t upstream_timeout_ms;       /* request sent → response head → 504 (default 60 s);
					    * also the longest silence inside a response body */
	int64_t drain_timeout_ms;          /* requests in flight when stopped/freed (default 30 s) */
	size_t pool_max;                   /* idle keep-alive conns per upstream and thread (64) */
	size_t max_conns;                  /* client connections per thread (default 10000) */
	int64_t window_ms;                 /* sliding window of the counters (default 60 s) */
	bool no_forwarded;                 /* do not add X-Forwarded-* (default: add them) */
};

/* Binds `listen` ("host:port", port 0 for any) in the caller's thread (errors come back here,
 * the bound address to out_addr) and starts the loops. An empty upstream set answers 503. */
int hproxy_new(const struct hproxy_opts *o, const char *listen, char out_addr[NET_ADDR_STRLEN],
	       struct hproxy **out, struct err *e);
/* Closes the listener, gives requests in flight up to drain_timeout_ms, then closes all. */
void hproxy_free(struct hproxy *h);
/* Atomically replaces the upstream set (each entry's label names its release). The next request
 * of every connection goes to the new set; idle pooled connections to upstreams no longer in
 * the set are closed. Returns once every loop has taken the new set (the switch is complete). */
int hproxy_set_upstreams(struct hproxy *h, const struct proxy_upstream *ups, size_t n,
			 struct err *e);
/* Emergency stop (true): every request, new or pipelined, gets 503 with Connection: close;
 * requests in flight are cut (their client connection closed); the listener keeps answering so
 * users see 503 rather than a refused connection. false serves again. Returns once applied. */
void hproxy_set_stopped(struct hproxy *h, bool stopped);

/* Counters of one label over the last `window_ms` (rounded up to whole one-second slots,
 * at most opts.window_ms), or since the label first appeared when window_ms == 0. Fills `out`
 * (label, requests, status classes, latency histogram: request head received → response end);
 * returns -1 when the label has no counters. */
int hproxy_stats(struct hproxy *h, const char *label, int64_t window_ms,
		 struct proxy_http_stats *out);
/* Requests routed to the label's upstreams that have not ended yet (for draining before the
 * instances behind a label stop). 0 for an unknown label. */
int64_t hproxy_inflight(struct hproxy *h, const char *label);
/* Labels with counters, at most `max`; returns how many were written. */
size_t hproxy_labels(struct hproxy *h, char (*out)[PROXY_TOXIC_NAME_MAX], size_t max);

/* The request-head parser/rewriter of the proxy, exposed for the fuzz target and unit tests:
 * parses one request head from p[0..n) (n may include body bytes after it). Returns the head's
 * length (> 0), 0 when more bytes are needed, or a negative HTTP status (-400, -431) for a head
 * that must be refused. On success appends to `out` the head to send upstream (X-Forwarded-For
 * = existing value + ", " + client_ip, X-Forwarded-Proto, X-Forwarded-Host when absent;
 * hop-by-hop Connection/Keep-Alive/Proxy-Connection replaced by "Connection: keep-alive", or
 * kept as "Connection: upgrade" with Upgrade) and fills *info. */
struct hproxy_req_info {
	int method;             /* enum http_method of libhttp-parser */
	int64_t content_length; /* -1 none */
	bool chunked, keep_alive, upgrade, expect_continue;
};
int hproxy_parse_head(const char *p, size_t n, size_t max_header_bytes, const char *client_ip,
		      struct buf *out, struct hproxy_req_info *info);

/* ---- the Toxiproxy-compatible fault layer (fault.c) -------------------------------------- */

struct fault;
struct fault *fault_new(struct proxy_engine *eng);
void fault_free(struct fault *f);
/* Serve GET /metrics (Prometheus text; toxiproxy-server -proxy-metrics). Off by default. */
void fault_set_metrics(struct fault *f, bool on);
/* Lets proxies bind addresses of spec ("10.0.0.5", "10.0.0.0/8", "0.0.0.0", "::") besides
 * loopback, the only place they may listen otherwise. Call before serving. */
int fault_allow_listen(struct fault *f, const char *spec, struct err *e);

/* One API request: method, path (no query), body (may be NULL). Fills out_body (JSON, or text
 * for 404/405) and returns the HTTP status. Thread-safe (one lock per fault). */
struct fault_reply {
	int status;
	struct buf body;
	bool json_type; /* Content-Type application/json (else text/plain, as Go's http.Error) */
};
void fault_handle(struct fault *f, const char *method, const char *path, const char *body,
		  size_t body_len, struct fault_reply *out);
/* Loads a populate-format JSON file (toxiproxy-server -config). */
int fault_load_config(struct fault *f, const char *path, struct err *e);

/* ---- the HTTP API server (api.c) --------------------------------------------------------- */

struct fault_api;
/* Binds `listen` and serves in a thread of its own. */
int fault_api_start(struct fault *f, const char *listen, struct fault_api **out, char out_addr[NET_ADDR_STRLEN],
		    struct err *e);
void fault_api_stop(struct fault_api *api);

/* JSON body parsers of the API, exposed for the fuzz target. They return 0 or -CAIRN_EINPUT
 * with the API's error text in e. */
int fault__parse_any(const char *body, size_t n, struct err *e);

#define FAULT_VERSION "2.12.0"

#endif
