/* base/evrest: a libevent listener that rests when accept() fails (EMFILE, ENFILE, ENOBUFS…)
 * instead of spinning on a socket that stays readable, with one log line per episode (then one
 * with a count every 10 s at most). Used by the controller's and the agent's evhttp listeners.
 * Loop thread only; at most EVREST_MAX listeners watched per process. */
#ifndef CAIRN_BASE_EVREST_H
#define CAIRN_BASE_EVREST_H

#include "base/base.h"

struct event;
struct event_base;
struct evconnlistener;

#define EVREST_MAX 8
#define EVREST_MIN_MS 10  /* first rest after a failed accept */
#define EVREST_MAX_MS 500 /* rests double up to this */

struct ev_rest {
	struct evconnlistener *l; /* borrowed; NULL when not watching */
	const char *module, *name; /* for the log line: "module: name listener: …" (static) */
	/* after a rest: called instead of re-enabling the listener (an owner that admits
	 * connections itself decides), or NULL to re-enable it */
	void (*resume)(void *ctx);
	void *ctx;
	bool resting;
	int64_t rest_ms;
	struct event *retry_ev; /* owned */
	uint64_t errors, errors_logged;
	int64_t logged_ns;
};

/* Starts watching l (after evhttp bound it: its error callback is replaced). */
int ev_rest_watch(struct ev_rest *r, struct event_base *base, struct evconnlistener *l,
		  const char *module, const char *name, void (*resume)(void *), void *ctx);
/* Stops watching (before the listener is freed); frees the timer. Safe on a zeroed struct. */
void ev_rest_forget(struct ev_rest *r);
/* A descriptor was freed: the next rest starts short again. */
void ev_rest_freed(struct ev_rest *r);

#endif
