/* fault api: the Toxiproxy-compatible HTTP listener — libevent's evhttp in a thread of its own.
 * It refuses browsers (a DNS-rebinding guard), bounds bodies and slow clients, adds the
 * request-id header and hands each request to fault_handle; it never touches sockets of the
 * data path. Its bound address is given to the fault layer, which refuses proxies to it. */
#include "proxy/fault-internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define API_BODY_MAX (1 << 20)

struct fault_api {
	struct fault *f; /* borrowed */
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev;
	int stop_fd;
	pthread_t th;
	uint64_t req_seq;
};

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	default:
		return "OTHER";
	}
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct fault_api *api = arg;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct evbuffer *ob = evbuffer_new();
	char rid[32];

	if (!ob) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	snprintf(rid, sizeof rid, "%016llx", (unsigned long long)(++api->req_seq * 0x9E3779B97F4A7C15ULL));
	evhttp_add_header(oh, "X-Toxiproxy-Request-Id", rid);
	const char *ua = evhttp_find_header(evhttp_request_get_input_headers(req), "User-Agent");
	if (ua && !strncmp(ua, "Mozilla/", 8)) {
		evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
		evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
		evbuffer_add_printf(ob, "User agent not allowed\n");
		evhttp_send_reply(req, 403, "Forbidden", ob);
		evbuffer_free(ob);
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
	char *path = evhttp_uridecode(raw ? raw : "/", 0, NULL);
	struct evbuffer *ib = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(ib);
	const char *body = n ? (const char *)evbuffer_pullup(ib, -1) : NULL;
	struct fault_reply rep;

	fault_handle(api->f, method_name(evhttp_request_get_command(req)), path ? path : "/", body, n,
		     &rep);
	free(path);
	if (rep.json_type)
		evhttp_add_header(oh, "Content-Type", rep.status == 200 && !strncmp(buf_str(&rep.body), "{\"version\"", 10)
							      ? "application/json;charset=utf-8"
							      : "application/json");
	else if (rep.status == 200) /* /metrics */
		evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	else if (rep.status != 204 && rep.status != 405) {
		evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
		evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
	}
	if (rep.body.len)
		evbuffer_add(ob, rep.body.data, rep.body.len);
	evhttp_send_reply(req, rep.status, NULL, ob);
	buf_done(&rep.body);
	evbuffer_free(ob);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct fault_api *api = arg;
	uint64_t v;
	UNUSED(what);
	if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
		return;
	event_base_loopbreak(api->base);
}

static void *api_main(void *arg)
{
	struct fault_api *api = arg;
	event_base_dispatch(api->base);
	return NULL;
}

static void api_free(struct fault_api *api)
{
	if (api->http)
		evhttp_free(api->http);
	if (api->stop_ev)
		event_free(api->stop_ev);
	if (api->base)
		event_base_free(api->base);
	if (api->stop_fd >= 0)
		close(api->stop_fd);
	free(api);
}

int fault_api_start(struct fault *f, const char *listen, struct fault_api **out,
		    char out_addr[NET_ADDR_STRLEN], struct err *e)
{
	struct fault_api *api = calloc(1, sizeof *api);
	struct net_addr a;
	size_t n = 0;
	int r, fd;

	if (!api)
		return err_set(e, ENOMEM, "out of memory");
	api->f = f;
	api->stop_fd = -1;
	if ((r = net_resolve_tcp(listen, true, &a, 1, &n, e)) < 0) {
		api_free(api);
		return r;
	}
	if ((fd = net_listen_on(&a, false, 128, e)) < 0) {
		api_free(api);
		return fd;
	}
	net_local_addr_str(fd, out_addr, NET_ADDR_STRLEN);
	if ((r = fault__set_api(f, out_addr, e)) < 0) { /* no proxy may lead to the API */
		close(fd);
		api_free(api);
		return r;
	}
	api->base = event_base_new();
	api->http = api->base ? evhttp_new(api->base) : NULL;
	api->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!api->http || api->stop_fd < 0 || !evhttp_accept_socket_with_handle(api->http, fd)) {
		close(fd);
		api_free(api);
		return err_set(e, ENOMEM, "fault api: cannot set up the HTTP server on %s", listen);
	}
	evhttp_set_max_body_size(api->http, API_BODY_MAX);
	evhttp_set_max_headers_size(api->http, 64 * 1024);
	evhttp_set_timeout(api->http, 15);
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						      EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
						      EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(api->http, on_request, api);
	api->stop_ev = event_new(api->base, api->stop_fd, EV_READ | EV_PERSIST, on_stop, api);
	if (!api->stop_ev || event_add(api->stop_ev, NULL) < 0 ||
	    pthread_create(&api->th, NULL, api_main, api) != 0) {
		api_free(api);
		return err_set(e, ENOMEM, "fault api: cannot start its thread");
	}
	*out = api;
	return 0;
}

void fault_api_stop(struct fault_api *api)
{
	uint64_t one = 1;
	if (!api)
		return;
	if (write(api->stop_fd, &one, sizeof one) < 0)
		abort();
	pthread_join(api->th, NULL);
	api_free(api);
}
