/* agent: the host agent's face — running the daemon (`cairn agent`), its log writer, stopping
 * every recorded instance without a daemon, and a client for its HTTP/JSON API that the CLI
 * and the controller share. The API itself is docs/agent.md; nothing here includes libevent. */
#ifndef CAIRN_AGENT_H
#define CAIRN_AGENT_H

#include "base/base.h"

#include <jansson.h>

#define AGENT_SOCKET_NAME "agent.sock"
#define AGENT_OBJECT_MAX (64 * 1024 * 1024) /* PUT /v1/objects/{hex}: one request's bytes */
#define AGENT_PART_BYTES (32 * 1024 * 1024)   /* what the controller sends per part */

/* What a keeper hands to the agent it forks (keeper.c). */
struct agent_keep {
	int fd;		  /* the agent's end of the keeper's pair */
	const int *kept;  /* listeners the last agent had: its API socket, its proxies' */
	size_t n_kept;
};

struct agent_opts {
	const char *state_dir;
	const struct agent_keep *keep; /* NULL: no keeper (--foreground) */
	int ready_fd; /* >= 0: one byte is written there once the socket listens (--daemon) */
	/* called once the socket listens and the table is re-adopted (may be NULL) */
	void (*on_ready)(void *ctx, const char *socket_path, size_t n_instances);
	void *ctx;
};

/* Runs the agent until SIGTERM/SIGINT (instances are left running for the next agent).
 * Refuses (CAIRN_ECHECK) when another agent holds the state directory. */
int agent_run(const struct agent_opts *o, struct err *e);

/* `cairn agent --daemon`: the keeper — the agent's parent, which holds a duplicate of every
 * listening socket the agent has (API and proxies) and forks a successor at once when the
 * agent dies of anything but a clean stop; the successor inherits those sockets, so clients are
 * queued by the kernel, not refused. Returns when the agent stops cleanly (SIGTERM to either).
 * CAIRN_ECHECK when another keeper holds <state>/agent/keeper.lock. */
int agent_keeper_run(const struct agent_opts *o, struct err *e);
/* Does a keeper run for this state directory (its agent runs or is being restarted)? */
bool agent_keeper_present(const char *state_dir);

/* `cairn agent log-writer FILE`: copies fd 0 (stdout) and fd 3 (stderr) into FILE as
 * timestamped lines with size rotation until both reach EOF. Returns an exit code. */
int agent_log_writer_main(int argc, char **argv);

/* Without a running agent: stops every instance recorded in <state>/agent/instances.json
 * (stop signal, its stop timeout, then SIGKILL of the group) and empties the table.
 * *out_stopped counts the instances that were still running. */
int agent_stop_all_offline(const char *state_dir, int *out_stopped, struct err *e);

/* ---- client ------------------------------------------------------------------------------
 * One call = one HTTP/1.1 request with a JSON body to the agent. The transport sits behind
 * this interface: a unix socket today (libcurl CURLOPT_UNIX_SOCKET_PATH; paths longer than
 * sun_path work); SSH later. The program calls curl_global_init() once before using it.
 * A client is used by one thread at a time. */
struct agent_client;

/* Error codes of the API mapped onto struct err codes: input → CAIRN_EINPUT, not_found →
 * CAIRN_ENOTFOUND, conflict → EEXIST, corrupt → CAIRN_ECORRUPT, anything else → EIO;
 * an agent that does not answer → ECONNREFUSED. */
int agent_client_new_unix(const char *socket_path, int64_t timeout_ms, struct agent_client **out,
			  struct err *e);
void agent_client_free(struct agent_client *c);
/* METHOD PATH with an optional JSON body. On a 2xx answer *out_json (may be NULL) receives
 * the parsed body (owned by the caller) and *out_status (may be NULL) the status; otherwise
 * e holds the agent's message and the status is still stored. */
int agent_client_call(struct agent_client *c, const char *method, const char *path,
		      const json_t *body, long *out_status, json_t **out_json, struct err *e);
/* PUT PATH with raw bytes (application/octet-stream), e.g. PUT /v1/objects/{hex}; the answer
 * as for agent_client_call. */
int agent_client_put(struct agent_client *c, const char *path, const void *data, size_t n,
		     long *out_status, json_t **out_json, struct err *e);

#endif
