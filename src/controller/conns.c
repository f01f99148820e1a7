/* controller/conns: client connections from accept to close — a record per connection made when
 * evhttp accepts it, admission on the TCP listener (descriptors kept in reserve for the unix
 * socket and the controller's own files, a cap on connections still sending a request head),
 * a deadline for each whole head, rests when accept fails (EMFILE; base/evrest.c), and the
 * body limit of each request decided when its head ends: a route's large limit only for the
 * unix socket or a head that carries the bearer token. evhttp 2.1 has no hook between a
 * request's head and its body, so each connection's input is followed as it arrives by
 * api_head_scan (body.c: the request line and an Authorization line, nothing else); evhttp
 * still parses HTTP. Loop thread only. */
#include "controller/controller-internal.h"

#include "base/evrest.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- admission ------------------------------------------------------------------------------ */

static bool tcp_full(const struct server *srv)
{
	return srv->n_tcp + srv->n_fresh >= srv->tcp_max || srv->n_heads >= CTL_HEADS_MAX;
}

/* Enables or disables the TCP listener for the counts now (not while it rests after an error,
 * nor once it is closed). A disabled listener leaves new connections in the kernel's backlog:
 * no descriptor, no work. */
static void admission(struct server *srv)
{
	struct ctl_listener *t = &srv->lst[1];
	bool full = tcp_full(srv);
	if (!t->rest.l || t->rest.resting)
		return;
	if (full && t->on) {
		evconnlistener_disable(t->rest.l);
		t->on = false;
		srv->tcp_pauses++;
	} else if (!full && !t->on) {
		evconnlistener_enable(t->rest.l);
		t->on = true;
	}
}

static void tcp_resume(void *ctx)
{
	struct server *srv = ctx;
	srv->lst[1].on = false; /* rested: admission decides */
	admission(srv);
}

int server__listener_watch(struct server *srv, int i, struct evconnlistener *l, const char *name)
{
	srv->lst[i].on = true;
	return ev_rest_watch(&srv->lst[i].rest, srv->base, l, "controller", name,
			     i == 1 ? tcp_resume : NULL, srv);
}

void server__listener_forget(struct server *srv, int i)
{
	ev_rest_forget(&srv->lst[i].rest);
}

/* ---- the head scanner ------------------------------------------------------------------------ */

static void head_begin(struct conn_rec *r)
{
	struct server *srv = r->srv;
	struct timeval tv = { CTL_HEAD_TIMEOUT_S, 0 };
	if (r->in_head)
		return;
	r->in_head = true;
	srv->n_heads++;
	if (r->head_ev)
		event_add(r->head_ev, &tv);
	admission(srv);
}

static void head_over(struct conn_rec *r)
{
	if (!r->in_head)
		return;
	r->in_head = false;
	r->srv->n_heads--;
	if (r->head_ev)
		event_del(r->head_ev);
	admission(r->srv);
}

static void scan_reset(struct conn_rec *r)
{
	r->scanning = true;
	api_head_scan_reset(&r->hs);
}

/* The head ended: the body limit for this request, set before evhttp reads its headers. */
static void head_end(struct conn_rec *r)
{
	int64_t max = api_objects_body_limit(r->hs.reqline, r->hs.reqline_n);
	r->scanning = false;
	head_over(r);
	if (r->tcp && r->srv->token && !r->hs.auth_ok && max > CTL_UNAUTH_BODY_MAX)
		max = CTL_UNAUTH_BODY_MAX;
	if (r->conn)
		evhttp_connection_set_max_body_size(r->conn, max);
}

static void scan(struct conn_rec *r, const char *p, size_t n)
{
	api_head_scan(&r->hs, p, n, r->srv->token);
	if (r->hs.done)
		head_end(r);
}

/* Scans what the input buffer holds from byte `from` on. */
static void scan_buffer(struct conn_rec *r, struct evbuffer *b, size_t from)
{
	size_t len = evbuffer_get_length(b);
	if (from >= len)
		return;
	head_begin(r); /* a byte of a head: its deadline runs (no-op when it runs already) */
	while (r->scanning && from < len) {
		struct evbuffer_ptr pos;
		struct evbuffer_iovec v[8];
		if (evbuffer_ptr_set(b, &pos, from, EVBUFFER_PTR_SET) < 0)
			break;
		int k = evbuffer_peek(b, (ev_ssize_t)(len - from), &pos, v, 8);
		if (k <= 0)
			break;
		for (int i = 0; i < k && i < 8 && r->scanning && from < len; i++) {
			size_t m = v[i].iov_len < len - from ? v[i].iov_len : len - from;
			scan(r, v[i].iov_base, m);
			from += m;
		}
	}
}

static void on_input(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn_rec *r = arg;
	size_t len = evbuffer_get_length(b);
	if (!info->n_added || !r->scanning || info->n_added > len)
		return;
	scan_buffer(r, b, len - info->n_added);
}

static void on_head_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn_rec *r = arg;
	(void)fd, (void)what;
	if (!r->conn || !r->in_head || r->busy || r->task || r->sub)
		return; /* a request of it is being answered: evhttp's own timeouts hold */
	r->srv->head_timeouts++;
	evhttp_connection_free(r->conn); /* its close callback frees r */
}

void server__conn_head_read(struct conn_rec *r)
{
	r->scanning = false;
	head_over(r);
}

/* ---- records --------------------------------------------------------------------------------- */

static void rec_unlink(struct conn_rec *r)
{
	struct server *srv = r->srv;
	for (struct conn_rec **pp = &srv->conns; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			srv->n_conns--;
			break;
		}
	head_over(r);
	if (r->tcp)
		srv->n_tcp--;
	if (r->bev) { /* still waiting for its fix-up */
		srv->n_fresh--;
		bufferevent_decref(r->bev);
	}
	if (r->head_ev)
		event_free(r->head_ev);
	ev_rest_freed(&srv->lst[0].rest); /* a descriptor is free again */
	ev_rest_freed(&srv->lst[1].rest);
	admission(srv);
}

void server__conn_free(struct conn_rec *r)
{
	rec_unlink(r);
	free(r);
}

/* After evhttp has made the connection (same loop turn, before any of its bytes are read):
 * the record learns its connection, its socket's family, and starts its head deadline. */
static void on_fresh(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	for (struct conn_rec *r = srv->conns, *nx; r; r = nx) {
		nx = r->next;
		if (!r->bev)
			continue;
		struct evhttp_connection *c = NULL;
		bufferevent_getcb(r->bev, NULL, NULL, NULL, (void **)&c);
		if (!c) { /* evhttp let it go already */
			server__conn_free(r);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int s = bufferevent_getfd(r->bev);
		r->tcp = s >= 0 && getsockname(s, (struct sockaddr *)&ss, &sl) == 0 &&
			 ss.ss_family != AF_UNIX;
		srv->n_tcp += r->tcp;
		srv->n_fresh--;
		bufferevent_decref(r->bev);
		r->bev = NULL;
		r->conn = c;
		r->over = srv->n_conns > CTL_CONN_MAX;
		evhttp_connection_set_closecb(c, server__on_conn_close, r);
		evhttp_connection_set_max_body_size(c, r->tcp && srv->token ? CTL_UNAUTH_BODY_MAX
									    : API_BODY_MAX);
		struct timeval tv = { CTL_HEAD_TIMEOUT_S, 0 };
		if (r->head_ev)
			event_add(r->head_ev, &tv);
	}
	admission(srv);
}

/* evhttp_set_bevcb's callback: called for every connection evhttp accepts, on either
 * listener, before it makes the connection around the bufferevent returned here. */
struct bufferevent *server__bevcb(struct event_base *base, void *arg)
{
	struct server *srv = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct conn_rec *r = bev ? calloc(1, sizeof(*r)) : NULL;
	if (!r)
		return bev; /* untracked: evhttp's default limits still hold */
	r->srv = srv;
	r->head_ev = evtimer_new(base, on_head_deadline, r);
	if (!r->head_ev || !evbuffer_add_cb(bufferevent_get_input(bev), on_input, r)) {
		if (r->head_ev)
			event_free(r->head_ev);
		free(r);
		return bev;
	}
	bufferevent_incref(bev); /* until on_fresh: tells it whether evhttp kept the connection */
	r->bev = bev;
	scan_reset(r);
	r->in_head = true; /* a new connection owes its first head within CTL_HEAD_TIMEOUT_S */
	srv->n_heads++;
	srv->n_fresh++;
	r->next = srv->conns;
	srv->conns = r;
	srv->n_conns++;
	event_active(srv->fresh_ev, EV_READ, 0);
	admission(srv); /* may stop the listener's accept loop right after this connection */
	return bev;
}

/* A request of r has been answered: the next head starts with what is already buffered. */
void server__conn_next(struct conn_rec *r)
{
	struct bufferevent *bev = r->conn ? evhttp_connection_get_bufferevent(r->conn) : NULL;
	if (!bev)
		return;
	scan_reset(r);
	evhttp_connection_set_max_body_size(r->conn, r->tcp && r->srv->token ? CTL_UNAUTH_BODY_MAX
									      : API_BODY_MAX);
	scan_buffer(r, bufferevent_get_input(bev), 0);
}

int server__conns_init(struct server *srv)
{
	srv->fresh_ev = event_new(srv->base, -1, 0, on_fresh, srv);
	return srv->fresh_ev ? 0 : -ENOMEM;
}

void server__conns_done(struct server *srv)
{
	while (srv->conns)
		server__conn_free(srv->conns);
	for (int i = 0; i < 2; i++)
		server__listener_forget(srv, i);
	if (srv->fresh_ev)
		event_free(srv->fresh_ev);
}
