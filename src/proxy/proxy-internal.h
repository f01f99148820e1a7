/* proxy internals shared by the engine's files: loops, per-loop proxies, connections, their two
 * links (one per direction) with event queues and toxic stages, and the timer heap. Never
 * included from outside src/proxy/. Everything here belongs to one loop thread. */
#ifndef CAIRN_PROXY_INTERNAL_H
#define CAIRN_PROXY_INTERNAL_H

#include "proxy/proxy.h"

#include <pthread.h>
#include <stddef.h>

#define PROXY_CHUNK 32768 /* read size of the buffered path (Toxiproxy's io.Copy buffer) */
#define PROXY_PIPE_SIZE (1 << 20) /* splice path: bytes in flight per direction */
#define TIME_INF INT64_MAX

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

struct loop;

/* ---- timers: an indexed min-heap per loop ---- */
struct timer {
	int64_t at;  /* CLOCK_MONOTONIC ns */
	size_t idx;  /* position in the heap, SIZE_MAX when not armed */
	void (*fire)(struct loop *lp, struct timer *t);
};
void proxy__timer_init(struct timer *t, void (*fire)(struct loop *, struct timer *));
void proxy__timer_arm(struct loop *lp, struct timer *t, int64_t at);
void proxy__timer_stop(struct loop *lp, struct timer *t);

/* ---- events queued on a link: data pieces and close markers with release times ---- */
enum { EV_DATA, EV_EOF, EV_CLOSE };
struct ev {
	struct ev *next;
	int64_t t; /* release time (monotonic ns), TIME_INF = held */
	uint32_t len, off;
	uint8_t kind;
	char data[];
};
struct evq {
	struct ev *head, *tail; /* owned */
	size_t bytes;
	int64_t last_t;
};

/* One toxic's state on one link. */
struct stage {
	struct proxy_toxic tx;
	bool active;      /* toxicity roll */
	bool fired;       /* reset_peer/limit_data: closing */
	int64_t busy;     /* bandwidth/slicer: when the stage is free; latency: last release */
	int64_t count;    /* limit_data: bytes passed */
	int64_t deadline; /* timeout: close at, TIME_INF none */
};

struct conn;
/* One direction of a connection: reads fd[src], writes fd[dst]. */
struct link {
	struct conn *c;
	int dir;               /* PROXY_UPSTREAM reads the client */
	int src, dst;          /* 0 client, 1 upstream */
	struct stage *stages;  /* owned, n_stages */
	size_t n_stages;
	bool any_active;
	struct evq q;
	int pipe[2];           /* splice path, -1 until used */
	size_t pipe_bytes;
	bool src_eof, dst_shut, want_out;
	struct timer release;  /* next queued event's time */
	struct timer idle;     /* timeout toxic */
};

enum { CONN_CONNECTING, CONN_OPEN };

struct ep_tag {
	int kind; /* TAG_CONN, TAG_LISTEN, TAG_EVENT, TAG_TIMER */
	int side;
	void *ptr;
};
enum { TAG_CONN, TAG_LISTEN, TAG_EVENT, TAG_TIMERFD };

struct upstream_ent {
	struct net_addr addrs[NET_ADDR_MAX];
	size_t n_addrs;
	int label; /* index into lproxy labels */
};
/* An upstream set as one loop sees it; refcounted by its connections and the proxy. */
struct upset {
	int refs;
	size_t n, rr;
	struct upstream_ent v[];
};

struct lproxy;
struct conn {
	struct conn *prev, *next; /* in lproxy's list */
	struct lproxy *p;
	struct upset *ups; /* one reference */
	size_t up_ent, up_tries, up_addr;
	int fd[2];
	uint32_t interest[2];
	bool registered[2];
	struct ep_tag tag[2];
	int state;
	bool dead, linger0;
	struct link link[2];
	struct timer tm; /* connect timeout, then drain deadline */
	void *proto_state;
	struct conn *grave_next;
};

struct label_ctr {
	char name[PROXY_TOXIC_NAME_MAX];
	struct proxy_label_stats s;
	bool used;
};

/* A proxy as one loop sees it. */
struct lproxy {
	int64_t id;
	int lfd;
	struct ep_tag ltag;
	struct timer pause; /* listener paused (out of descriptors) until it fires */
	struct upset *ups;
	struct conn *conns; /* owned list */
	size_t n_conns;
	struct proxy_toxic chain[2][PROXY_TOXICS_MAX];
	size_t n_chain[2];
	struct proxy_protocol proto;
	bool has_proto;
	struct proxy_stats st;
	struct label_ctr labels[8];
};

/* Commands from other threads. Each loop gets its own copy and frees its payload. */
enum cmd_kind { CMD_ADD, CMD_REMOVE, CMD_UPSTREAMS, CMD_DISABLE, CMD_ENABLE, CMD_TOXICS,
		CMD_STATS, CMD_PROTO, CMD_STOP };
struct cmd_done {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
};
struct cmd {
	struct cmd *next;
	enum cmd_kind kind;
	int64_t id;
	int fd;              /* ADD/ENABLE: this loop's listener (owned until taken) */
	struct upset *ups;   /* ADD/UPSTREAMS (owned until taken) */
	char (*labels)[PROXY_TOXIC_NAME_MAX]; /* labels of ups entries, borrowed */
	int dir;
	struct proxy_toxic chain[PROXY_TOXICS_MAX];
	size_t n_chain;
	struct proxy_stats *stats; /* STATS: this loop's result */
	struct proxy_protocol proto;
	struct cmd_done *done;
};

struct loop {
	struct proxy_engine *eng;
	int idx;
	int ep, evfd, tfd;
	pthread_t th;
	pthread_mutex_t mu;
	struct cmd *cq_head, *cq_tail; /* under mu */
	struct ep_tag evtag, ttag;
	struct lproxy **px; /* owned */
	size_t n_px, cap_px;
	struct timer **heap;
	size_t n_heap, cap_heap;
	int64_t tfd_armed;
	uint64_t rng;
	char *rbuf; /* PROXY_CHUNK scratch */
	struct conn *grave;
	bool stop;
};

struct proxy_engine {
	struct proxy_engine_opts o;
	struct loop *loops; /* o.threads */
	pthread_mutex_t mu; /* serialises callers */
	int64_t next_id;
};

/* loop.c */
int proxy__loop_start(struct proxy_engine *eng, struct loop *lp, int idx, struct err *e);
void proxy__loop_stop(struct loop *lp);
void proxy__ep_set(struct loop *lp, int fd, struct ep_tag *tag, uint32_t want, bool *registered,
		   uint32_t *cur);
double proxy__rand01(struct loop *lp);
struct lproxy *proxy__find(struct loop *lp, int64_t id);
void proxy__upset_unref(struct upset *u);
void proxy__label_add(struct lproxy *p, int label, int field, uint64_t n);

/* conn.c */
void proxy__accept(struct loop *lp, struct lproxy *p);
void proxy__conn_event(struct loop *lp, struct conn *c, int side, uint32_t events);
void proxy__conn_close(struct loop *lp, struct conn *c, bool rst);
void proxy__conn_set_chain(struct loop *lp, struct conn *c, int dir);
void proxy__reap(struct loop *lp);

/* toxic.c */
void proxy__stages_build(struct loop *lp, struct link *l, const struct proxy_toxic *chain, size_t n,
			 int64_t now, bool *out_close);
/* Runs one event through the link's chain, appending what comes out to the queue. */
void proxy__toxics_run(struct loop *lp, struct link *l, struct ev *in, int64_t now);
struct ev *proxy__ev_new(int kind, const void *p, size_t n, int64_t t);
void proxy__evq_push(struct evq *q, struct ev *e);
void proxy__evq_clear(struct evq *q);
int64_t proxy__idle_deadline(const struct link *l);

#endif
