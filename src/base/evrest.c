/* base/evrest: rests a libevent listener after a failed accept (see evrest.h). libevent calls a
 * listener's error callback with the listener's user data, which evhttp owns (its evhttp), so
 * the watched listeners are found by pointer in a small table. Never touches a connection. */
#include "base/evrest.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <string.h>

#define LOG_EVERY_NS (10LL * 1000000000)

static struct ev_rest *watched[EVREST_MAX]; /* loop threads: one per process uses this */

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct ev_rest *r = arg;
	(void)fd, (void)what;
	r->resting = false;
	if (!r->l)
		return;
	if (r->resume)
		r->resume(r->ctx);
	else
		evconnlistener_enable(r->l);
}

static void on_error(struct evconnlistener *l, void *arg)
{
	struct ev_rest *r = NULL;
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = time_mono_ns();
	(void)arg;
	for (size_t i = 0; i < EVREST_MAX && !r; i++)
		if (watched[i] && watched[i]->l == l)
			r = watched[i];
	evconnlistener_disable(l);
	if (!r)
		return;
	r->resting = true;
	r->errors++;
	r->rest_ms = r->rest_ms ? r->rest_ms * 2 : EVREST_MIN_MS;
	if (r->rest_ms > EVREST_MAX_MS)
		r->rest_ms = EVREST_MAX_MS;
	struct timeval tv = { r->rest_ms / 1000, (r->rest_ms % 1000) * 1000 };
	if (event_add(r->retry_ev, &tv) < 0)
		r->resting = false;
	if (!r->logged_ns || now - r->logged_ns >= LOG_EVERY_NS) {
		log_warn(r->module, "%s listener: accept failed %llu time(s)%s: %s; it rests up to %d ms "
				    "at a time (logged again in 10 s at most)",
			 r->name, (unsigned long long)(r->errors - r->errors_logged),
			 r->logged_ns ? " in the last 10 s" : "", strerror(err), EVREST_MAX_MS);
		r->logged_ns = now;
		r->errors_logged = r->errors;
	}
}

int ev_rest_watch(struct ev_rest *r, struct event_base *base, struct evconnlistener *l,
		  const char *module, const char *name, void (*resume)(void *), void *ctx)
{
	size_t i = 0;
	while (i < EVREST_MAX && watched[i] && watched[i] != r)
		i++;
	if (i == EVREST_MAX)
		return -ENOSPC;
	if (!r->retry_ev && !(r->retry_ev = evtimer_new(base, on_retry, r)))
		return -ENOMEM;
	r->l = l;
	r->module = module;
	r->name = name;
	r->resume = resume;
	r->ctx = ctx;
	watched[i] = r;
	evconnlistener_set_error_cb(l, on_error);
	return 0;
}

void ev_rest_forget(struct ev_rest *r)
{
	for (size_t i = 0; i < EVREST_MAX; i++)
		if (watched[i] == r)
			watched[i] = NULL;
	r->l = NULL;
	r->resting = false;
	if (r->retry_ev)
		event_free(r->retry_ev);
	r->retry_ev = NULL;
}

void ev_rest_freed(struct ev_rest *r)
{
	r->rest_ms = 0;
}
