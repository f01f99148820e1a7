/* table: the instance table on disk, <state>/agent/instances.json — written atomically on
 * every change, read back by the next agent, which re-adopts every recorded process that is
 * still the same process (pid + start time) and treats the others as exited. Also the
 * daemon-less `--stop-all`, which works from the same file. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TABLE_MAX     (64u * 1024 * 1024)
#define TABLE_VERSION 1

static json_t *record(const struct instance *in)
{
	return json_pack(
	    "{s:s,s:s,s:s,s:s,s:I,s:I,s:i,s:I,s:I,s:s,s:I,s:I,s:O,s:I,s:s}", "id", in->id, "app",
	    in->app, "release", in->release, "state", sup_state_name(in->sup.state), "pid",
	    (json_int_t)in->pid, "pid_start", (json_int_t)in->pid_start, "port", in->port,
	    "started_at", (json_int_t)in->started_at, "restarts", (json_int_t)in->restarts,
	    "last_exit", in->last_exit, "log_pid", (json_int_t)in->log_pid, "log_start",
	    (json_int_t)in->log_start, "env", in->user_env, "stop_timeout_ms",
	    (json_int_t)in->sup.stop_timeout_ms, "stop_signal", agent_signal_name(in->stop_signal));
}

int agent_save(struct agent *ag)
{
	json_t *arr = json_array(), *top;
	struct err e = {0};
	char *text;
	int r;

	if (ag->save_hold) { /* a batch: saved once when it ends (agent_save_release) */
		ag->save_dirty = true;
		json_decref(arr);
		return 0;
	}
	ag->save_dirty = false;
	for (const struct instance *in = ag->inst; in; in = in->next)
		if (in->sup.state != SUP_STOPPED)
			json_array_append_new(arr, record(in));
	top = json_pack("{s:i,s:o}", "version", TABLE_VERSION, "instances", arr);
	text = json_dumps(top, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(top);
	if (!text)
		return -ENOMEM;
	r = fs_write_atomic(ag->table_path, text, strlen(text), 0600, &e);
	free(text);
	if (r < 0)
		log_error("agent", "cannot save the instance table: %s", e.msg);
	return r;
}

void agent_save_hold(struct agent *ag)
{
	ag->save_hold++;
}

int agent_save_release(struct agent *ag)
{
	if (ag->save_hold && --ag->save_hold == 0 && ag->save_dirty)
		return agent_save(ag);
	return 0;
}

static int load_table(const char *path, json_t **out, struct err *e)
{
	struct buf b;
	json_error_t je;
	int r;

	buf_init(&b, TABLE_MAX);
	r = fs_read_file(path, &b, e);
	if (r == -ENOENT) {
		buf_done(&b);
		*out = json_array();
		return 0;
	}
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	json_t *top = json_loadb(buf_str(&b), b.len, 0, &je);
	buf_done(&b);
	json_t *arr = json_object_get(top, "instances");
	if (!json_is_array(arr)) {
		json_decref(top);
		return err_set(e, CAIRN_ECORRUPT,
			       "%s is damaged (%s); move it away to start empty "
			       "(recorded processes are then no longer supervised)",
			       path, top ? "no \"instances\" array" : je.text);
	}
	*out = json_incref(arr);
	json_decref(top);
	return 0;
}

static int64_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void adopt_one(struct agent *ag, json_t *rec)
{
	struct instance *in = NULL;
	struct err e = {0};
	enum sup_state st;
	pid_t pid = (pid_t)jint(rec, "pid"), log_pid = (pid_t)jint(rec, "log_pid");
	uint64_t start = (uint64_t)jint(rec, "pid_start"),
		 log_start = (uint64_t)jint(rec, "log_start");
	bool alive = pid > 0 && proc_alive(pid, start);
	const char *id = jstr(rec, "id"), *app = jstr(rec, "app");

	if (log_pid > 0 && proc_alive(log_pid, log_start))
		agent__watch_log(ag, log_pid, false);
	if (sup_state_parse(jstr(rec, "state"), &st) < 0 || st == SUP_STOPPED ||
	    !agent_name_ok(app) || strlen(id) >= INSTANCE_ID_MAX || !*id) {
		if (alive) /* a process we cannot account for must not run unsupervised */
			kill(-pid, SIGKILL);
		return;
	}
	if (agent__instance_new(ag, app, jstr(rec, "release"), id, json_object_get(rec, "env"),
				jint(rec, "stop_timeout_ms"), &in, &e) < 0) {
		log_error("agent", "cannot re-adopt instance %s of %s: %s%s", id, app, e.msg,
			  alive ? "; killing it" : "");
		if (alive)
			kill(-pid, SIGKILL);
		return;
	}
	in->stop_signal = agent_signal_parse(jstr(rec, "stop_signal"));
	if (in->stop_signal < 0)
		in->stop_signal = SIGTERM;
	in->port = (int)jint(rec, "port");
	in->started_at = jint(rec, "started_at");
	in->restarts = jint(rec, "restarts");
	snprintf(in->last_exit, sizeof(in->last_exit), "%s", jstr(rec, "last_exit"));
	if (log_pid > 0 && proc_alive(log_pid, log_start)) {
		in->log_pid = log_pid;
		in->log_start = log_start;
	}
	agent__append(ag, in);
	switch (st) {
	case SUP_STARTING:
	case SUP_RUNNING:
	case SUP_STOPPING:
		if (alive &&
		    instance_adopt(in, pid, start, st == SUP_STOPPING ? SUP_RUNNING : st) == 0) {
			log_info("agent", "re-adopted %s of %s (pid %d)", id, app, (int)pid);
			if (st == SUP_STOPPING)
				instance_event(in, SUP_EV_STOP);
			break;
		}
		if (alive)
			kill(-pid, SIGKILL);
		snprintf(in->last_exit, sizeof(in->last_exit),
			 "ended while no agent was running (status unknown)");
		in->sup.state = st == SUP_STOPPING ? SUP_STOPPING : st;
		instance_event(in, SUP_EV_EXITED);
		break;
	case SUP_BACKOFF:
		in->sup.state = SUP_BACKOFF;
		instance_event(in, SUP_EV_TIMER);
		break;
	default:
		in->sup.state = st; /* failed stays failed */
		break;
	}
}

int agent_load_and_adopt(struct agent *ag, struct err *e)
{
	json_t *arr = NULL, *rec;
	size_t i;
	int r = load_table(ag->table_path, &arr, e);
	if (r < 0)
		return r;
	agent_save_hold(ag);
	json_array_foreach(arr, i, rec) if (json_is_object(rec)) adopt_one(ag, rec);
	json_decref(arr);
	ag->save_dirty = true;
	agent_save_release(ag);
	return 0;
}

/* Waits until every (pid, start) in the list is gone or the deadline passes. */
static void wait_gone(const pid_t *pids, const uint64_t *starts, size_t n, int64_t deadline_ns)
{
	for (;;) {
		bool any = false;
		for (size_t i = 0; i < n; i++)
			if (pids[i] > 0 && proc_alive(pids[i], starts[i]))
				any = true;
		if (!any || time_mono_ns() >= deadline_ns)
			return;
		poll(NULL, 0, 20);
	}
}

int agent_stop_all_offline(const char *state_dir, int *out_stopped, struct err *e)
{
	char *path = xasprintf("%s/agent/instances.json", state_dir);
	json_t *arr = NULL, *rec;
	size_t i, n;
	int r = load_table(path, &arr, e), stopped = 0;
	int64_t max_timeout = 0;

	if (r < 0) {
		free(path);
		return r;
	}
	n = json_array_size(arr);
	pid_t *pids = xcalloc(n * 2 + 1, sizeof(*pids));
	uint64_t *starts = xcalloc(n * 2 + 1, sizeof(*starts));
	json_array_foreach(arr, i, rec)
	{
		pid_t pid = (pid_t)jint(rec, "pid");
		uint64_t start = (uint64_t)jint(rec, "pid_start");
		int sig = agent_signal_parse(jstr(rec, "stop_signal"));
		pids[2 * i + 1] = (pid_t)jint(rec, "log_pid");
		starts[2 * i + 1] = (uint64_t)jint(rec, "log_start");
		if (pid <= 0 || !proc_alive(pid, start))
			continue;
		pids[2 * i] = pid;
		starts[2 * i] = start;
		kill(-pid, sig > 0 ? sig : SIGTERM);
		stopped++;
		if (jint(rec, "stop_timeout_ms") > max_timeout)
			max_timeout = jint(rec, "stop_timeout_ms");
	}
	/* one shared deadline: the longest stop timeout; then SIGKILL whatever is left */
	wait_gone(pids, starts, n * 2, time_mono_ns() + max_timeout * 1000000);
	for (i = 0; i < n; i++)
		if (pids[2 * i] > 0) {
			kill(-pids[2 * i], SIGKILL);
		}
	wait_gone(pids, starts, n * 2, time_mono_ns() + 5000LL * 1000000);
	/* log writers end at EOF; one that is still there has lost its instance */
	for (i = 0; i < n; i++)
		if (pids[2 * i + 1] > 0 && proc_alive(pids[2 * i + 1], starts[2 * i + 1]))
			kill(pids[2 * i + 1], SIGKILL);
	free(pids);
	free(starts);
	json_decref(arr);
	static const char empty[] = "{\"instances\":[],\"version\":1}\n";
	r = fs_write_atomic(path, empty, strlen(empty), 0600, e);
	free(path);
	if (r == 0)
		*out_stopped = stopped;
	return r;
}
