/* hproxy internals shared by the HTTP reverse proxy's files (hproxy*.c): the proxy, its loops
 * (one epoll thread each), client and upstream connections, keep-alive pools, timer lists and
 * the per-loop label counters. Never included from outside src/proxy/. A loop's connections,
 * pools and timers belong to its thread alone; only the counters take a (per-loop) lock. */
#ifndef CAIRN_HPROXY_INTERNAL_H
#define CAIRN_HPROXY_INTERNAL_H

#include "proxy/proxy.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#define HP_IN_CHUNK 16384    /* client read buffer; grows up to the head limit for a head */
#define HP_LOOP_GROW_MAX (8u << 20) /* per loop: client buffers grown past HP_IN_CHUNK, all
				     * together; a head that needs more room then gets 503 */
#define HP_TRIM_AFTER (4u << 20) /* client buffer bytes freed before malloc_trim returns them */
#define HP_RESP_CHUNK 65536  /* upstream read buffer */
#define HP_LABELS_MAX 64     /* labels with counters per loop */
#define HP_HEADERS_MAX 128   /* header fields in a request head, more → 431 */
#define HP_ERR_MAX 512       /* one answer the proxy makes itself */

/* In http.c: bucket i of proxy_http_stats.hist holds latencies up to 2^(i/4) us. */
int proxy__http_bucket(int64_t us);

/* ---- the upstream set: shared by every loop, immutable, refcounted ---- */
struct hp_upstream {
	struct net_addr addr;
	bool resolved;
	char key[NET_ADDR_STRLEN];        /* the address as given: identity of the pool */
	char label[PROXY_TOXIC_NAME_MAX];
};
struct hp_set {
	atomic_int refs;
	size_t n;
	struct hp_upstream v[];
};
void hproxy__set_unref(struct hp_set *s);

/* ---- timers: one list per duration, so appending keeps each list sorted ---- */
enum { HT_NONE = -1, HT_HEAD, HT_IDLE, HT_CONNECT, HT_UPSTREAM, HT_WRITE, HT__N };
struct hp_timer {
	struct hp_timer *prev, *next;
	int64_t at;
	int kind; /* HT_NONE when not armed */
};

enum { TAG_HP_LISTEN, TAG_HP_EVENT, TAG_HP_CLIENT, TAG_HP_UP };
struct hp_tag {
	int kind;
	void *ptr;
};

/* ---- label counters: a ring of one-second slots plus totals ---- */
struct hp_slot {
	int64_t sec; /* monotonic second the slot holds, -1 empty */
	uint64_t requests, parse_errors;
	uint64_t status[6];
	uint64_t hist[PROXY_HTTP_BUCKETS];
};
struct hp_label {
	char name[PROXY_TOXIC_NAME_MAX];
	bool used;
	struct proxy_http_stats total;
	int64_t inflight;     /* requests routed to it and not ended (under the loop's mu) */
	struct hp_slot *ring; /* owned, n_ring slots */
};

struct hloop;
struct hcl;

/* A keep-alive pool: idle connections to one upstream address of one loop. */
struct hp_pool {
	char key[NET_ADDR_STRLEN];
	struct hup *idle; /* owned list */
	size_t n_idle, active;
	bool stale; /* no longer in the set: connections close when their request ends */
};

/* An upstream connection: in a pool (cl == NULL) or serving one client request. */
struct hup {
	struct hp_tag tag;
	int fd;
	bool rd, wr, connecting, eof, reused, reusable;
	bool hup; /* the peer's end was signalled: reads go on until they see it */
	struct hp_pool *pool; /* borrowed: the loop owns pools */
	struct hcl *cl;       /* borrowed: the client it serves */
	struct hup *next;     /* pool list */
	http_parser rp;       /* response framing */
	char *rb;             /* owned, HP_RESP_CHUNK: response bytes */
	size_t rb_off, rb_len; /* bytes rb[rb_off..rb_len) wait to go to the client */
	bool got_bytes, resp_done, head_req, dead, junk, keep;
	int status;
};

enum { CS_HEAD, CS_CONNECT, CS_REQ, CS_TUNNEL, CS_ANSWER };

/* A client connection and its one current request. */
struct hcl {
	struct hp_tag tag;
	struct hloop *lp;
	struct hcl *prev, *next; /* the loop's list */
	struct hcl *rq_next;     /* the loop's run queue, when queued */
	bool queued;
	int fd;
	bool rd, wr, eof, dead;
	bool hup; /* the peer's end was signalled: reads go on until they see it */
	int state;
	bool ans_shut;             /* our answer is out: discarding input until EOF */
	bool up_shut, cl_shut;     /* tunnel: write sides shut after an end of stream */
	char ip[NET_ADDR_STRLEN];
	char *in;                  /* owned: client bytes in[in_off..in_len) not yet consumed */
	size_t in_off, in_len, in_cap;
	size_t scan;               /* head search resumes here (relative to in_off) */
	struct hp_timer tm;
	bool head_started;         /* first byte of the current head seen (header timer on) */
	/* the current request */
	struct hproxy_req_info info;
	struct buf head;           /* the head to send upstream */
	size_t head_sent;
	int64_t body_left;         /* Content-Length bytes not yet forwarded; 0 done */
	bool chunked, body_done;
	http_parser cp;            /* chunked request body framing */
	int64_t body_seen;         /* for the body limit */
	size_t head_len;           /* the client's head as received */
	size_t body_start;         /* in[] index of the body's first byte (replay, chunk framing) */
	size_t cp_fed;             /* in[] index up to which cp has seen the body */
	size_t body_end;           /* chunked: in[] index just past the body once known, else 0 */
	bool replayable, retried;
	struct hp_set *set;        /* owned ref: the set the request was routed in */
	size_t ui, tries;
	int label;                 /* loop label index, -1 none */
	int fl;                    /* label whose in-flight count this request holds, -1 none */
	struct hup *up;            /* owned while the request runs */
	int64_t t0;
	bool resp_started;         /* a response byte went to the client */
	bool close_after;          /* close the client when this response ends */
	struct buf ans;            /* an answer of our own, then close */
	size_t ans_sent;
	bool counted;
};

struct hproxy;

struct hloop {
	struct hproxy *h;
	int idx;
	pthread_t th;
	int ep, evfd, lfd;
	struct hp_tag ltag, etag;
	struct hcl *clients;
	size_t n_clients;
	struct hp_timer tl[HT__N]; /* sentinels of the timer lists */
	int64_t dur[HT__N];
	/* routing state, taken from h under h->mu */
	struct hp_set *set; /* owned ref */
	uint64_t gen;
	size_t rr;
	bool stopped, quitting;
	int64_t quit_at;
	int64_t accept_at; /* out of descriptors: the listener rests until then (0: listening) */
	size_t in_grown;   /* bytes of its clients' in[] beyond HP_IN_CHUNK (HP_LOOP_GROW_MAX) */
	size_t in_freed;   /* bytes of client buffers freed since the last malloc_trim */
	struct hp_pool **pools; /* owned */
	size_t n_pools;
	struct hp_pool **set_pool; /* pool of each entry of set */
	int *set_label;            /* label of each entry of set */
	/* counters: the loop writes, hproxy_stats reads, both under mu */
	pthread_mutex_t mu;
	struct hp_label labels[HP_LABELS_MAX];
	size_t n_ring;
	/* clients with work left after their share of a round (borrowed) */
	struct hcl *runq, *runq_tail;
	/* closed this round: freed after the epoll batch (later events may name them) */
	struct hcl *dead_cl;
	struct hup *dead_up;
};

struct hproxy {
	struct hproxy_opts o;
	size_t n_loops;
	struct hloop *loops; /* owned */
	pthread_mutex_t mu;  /* the fields below */
	pthread_cond_t cv;
	struct hp_set *set;  /* owned ref */
	uint64_t gen;
	bool stopped, quitting;
};

/* hproxy.c: the loops */
/* A client buffer of cap bytes was freed or shrunk by that much: counted, and returned to the
 * system (malloc_trim) once HP_TRIM_AFTER bytes have been. */
void hproxy__in_freed(struct hloop *lp, size_t bytes);
void hproxy__timer_arm(struct hloop *lp, struct hp_timer *t, int kind);
void hproxy__timer_stop(struct hp_timer *t);
void hproxy__ep_add(struct hloop *lp, int fd, struct hp_tag *tag);
struct hp_pool *hproxy__pool_get(struct hloop *lp, const char *key);
void hproxy__pool_release(struct hloop *lp, struct hp_pool *p);

/* hproxy-conn.c: client connections — accept, request heads, own answers, closing */
void hproxy__accept(struct hloop *lp);
uint32_t hproxy__listen_events(const struct hproxy *h); /* EPOLLIN, EPOLLEXCLUSIVE if shared */
void hproxy__client_event(struct hcl *c, uint32_t ev);
void hproxy__client_run(struct hcl *c);
void hproxy__client_timeout(struct hcl *c);
void hproxy__client_close(struct hcl *c);
/* Reads client bytes into in[]: > 0 bytes, 0 end of stream, -EAGAIN none now or no room,
 * other < 0 an error. */
ssize_t hproxy__client_read(struct hcl *c);
/* Answers status itself (JSON, Connection: close), counted against the request's label when
 * it was routed; the upstream connection, if any, is closed. */
void hproxy__client_answer(struct hcl *c, int status, const char *message);
/* The loop's stop/quit state changed: cut or close what must go. */
void hproxy__apply_state(struct hloop *lp);

/* hproxy-up.c: the upstream side — routing, connecting, forwarding, tunnels, pools */
void hproxy__route(struct hcl *c);
bool hproxy__req_step(struct hcl *c);
bool hproxy__tunnel_step(struct hcl *c);
void hproxy__up_event(struct hloop *lp, struct hup *u, uint32_t ev);
void hproxy__up_close(struct hloop *lp, struct hup *u);
/* A timeout while the request runs (connect or upstream silence). */
void hproxy__req_timeout(struct hcl *c);

/* hproxy-head.c: answers the proxy makes itself */
void hproxy__answer(struct buf *out, int status, const char *message);

/* hproxy-stats.c: label counters */
int hproxy__label_get(struct hloop *lp, const char *name);
/* Moves the client's in-flight request to `label` (-1: it ended). */
void hproxy__flight(struct hcl *c, int label);
void hproxy__count(struct hloop *lp, int label, int status, int64_t us);
void hproxy__labels_prune(struct hloop *lp);

#endif
