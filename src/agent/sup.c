/* sup: the supervisor's state × event → action table (s6-supervise style) with exponential
 * backoff, a minimum respawn interval and crash-loop detection. Pure: it never touches a
 * process or a clock; instance.c feeds it events with the time and carries out the action. */
#include "agent/agent-internal.h"

#include <string.h>

struct transition {
	enum sup_state next;
	enum sup_action act;
};

#define T(s, a) { SUP_##s, SUP_ACT_##a }
#define IGNORE(s) { SUP_##s, SUP_ACT_NONE }

/* Rows: states; columns: START, EXITED, EXEC_FAILED, PROBE_OK, STOP, TIMER.
 * EXITED → BACKOFF is turned into FAILED/GIVE_UP by sup_step when the exits form a crash
 * loop. TIMER in STOPPING is the stop timeout running out. */
static const struct transition table[SUP_N_STATES][SUP_N_EVENTS] = {
	[SUP_STARTING] = { IGNORE(STARTING), T(BACKOFF, BACKOFF), T(FAILED, GIVE_UP),
			   T(RUNNING, NONE), T(STOPPING, TERM), IGNORE(STARTING) },
	[SUP_RUNNING] = { IGNORE(RUNNING), T(BACKOFF, BACKOFF), T(FAILED, GIVE_UP),
			  IGNORE(RUNNING), T(STOPPING, TERM), IGNORE(RUNNING) },
	[SUP_BACKOFF] = { T(STARTING, SPAWN), IGNORE(BACKOFF), T(FAILED, GIVE_UP),
			  IGNORE(BACKOFF), T(STOPPED, DONE), T(STARTING, SPAWN) },
	[SUP_FAILED] = { T(STARTING, SPAWN), IGNORE(FAILED), IGNORE(FAILED), IGNORE(FAILED),
			 T(STOPPED, DONE), IGNORE(FAILED) },
	[SUP_STOPPING] = { IGNORE(STOPPING), T(STOPPED, DONE), T(STOPPED, DONE), IGNORE(STOPPING),
			   IGNORE(STOPPING), T(STOPPING, KILL) },
	[SUP_STOPPED] = { T(STARTING, SPAWN), IGNORE(STOPPED), IGNORE(STOPPED), IGNORE(STOPPED),
			  T(STOPPED, DONE), IGNORE(STOPPED) },
};

void sup_init(struct sup *s, int64_t stop_timeout_ms)
{
	memset(s, 0, sizeof(*s));
	s->state = SUP_STOPPED;
	s->backoff_ms = SUP_BACKOFF_MIN_MS;
	s->stop_timeout_ms = stop_timeout_ms;
}

static bool crash_loop(const struct sup *s, int64_t now_ms)
{
	if (s->n_exits < SUP_LOOP_EXITS)
		return false;
	/* the oldest of the last SUP_LOOP_EXITS exits */
	int64_t oldest = s->exits[s->n_exits % SUP_LOOP_EXITS];
	return now_ms - oldest <= SUP_LOOP_WINDOW_MS;
}

enum sup_action sup_step(struct sup *s, enum sup_event ev, int64_t now_ms)
{
	struct transition t;

	if ((unsigned)s->state >= SUP_N_STATES || (unsigned)ev >= SUP_N_EVENTS)
		return SUP_ACT_NONE;
	t = table[s->state][ev];
	s->delay_ms = 0;
	switch (t.act) {
	case SUP_ACT_SPAWN:
		if (ev == SUP_EV_START) { /* a fresh start forgets the past */
			s->n_exits = 0;
			s->backoff_ms = SUP_BACKOFF_MIN_MS;
		}
		s->last_spawn_ms = now_ms;
		break;
	case SUP_ACT_BACKOFF: {
		int64_t ran = now_ms - s->last_spawn_ms;
		s->exits[s->n_exits % SUP_LOOP_EXITS] = now_ms;
		s->n_exits++;
		if (crash_loop(s, now_ms)) {
			t.next = SUP_FAILED;
			t.act = SUP_ACT_GIVE_UP;
			break;
		}
		if (ran >= SUP_RESET_AFTER_MS)
			s->backoff_ms = SUP_BACKOFF_MIN_MS;
		s->delay_ms = s->backoff_ms;
		if (s->delay_ms < SUP_MIN_RESPAWN_MS - ran)
			s->delay_ms = SUP_MIN_RESPAWN_MS - ran;
		s->backoff_ms *= 2;
		if (s->backoff_ms > SUP_BACKOFF_MAX_MS)
			s->backoff_ms = SUP_BACKOFF_MAX_MS;
		break;
	}
	case SUP_ACT_TERM:
		s->delay_ms = s->stop_timeout_ms;
		break;
	default:
		break;
	}
	s->state = t.next;
	return t.act;
}

static const char *const state_names[SUP_N_STATES] = {
	"starting", "running", "backoff", "failed", "stopping", "stopped",
};

const char *sup_state_name(enum sup_state st)
{
	return (unsigned)st < SUP_N_STATES ? state_names[st] : "unknown";
}

int sup_state_parse(const char *name, enum sup_state *out)
{
	for (unsigned i = 0; i < SUP_N_STATES; i++)
		if (!strcmp(name, state_names[i])) {
			*out = (enum sup_state)i;
			return 0;
		}
	return -1;
}

const char *sup_event_name(enum sup_event ev)
{
	static const char *const names[SUP_N_EVENTS] = { "start", "exited", "exec_failed",
							 "probe_ok", "stop", "timer" };
	return (unsigned)ev < SUP_N_EVENTS ? names[ev] : "unknown";
}

const char *sup_action_name(enum sup_action a)
{
	static const char *const names[] = { "none", "spawn", "backoff", "give_up",
					     "term", "kill", "done" };
	return (unsigned)a < ARRAY_SIZE(names) ? names[a] : "unknown";
}
