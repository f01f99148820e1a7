/* controller/jobs: the job state machine and the step vocabulary. The transition table is the
 * one place that says which state may follow which; the store applies a transition only when
 * the job is still in the state the caller saw. */
#include "controller/controller.h"

#include <errno.h>
#include <string.h>

/* allowed[from][to] */
static const bool allowed[JOB_STATE_COUNT][JOB_STATE_COUNT] = {
	[JOB_QUEUED] = { [JOB_RUNNING] = true, [JOB_CANCELLED] = true },
	[JOB_RUNNING] = { [JOB_SUCCEEDED] = true, [JOB_FAILED] = true, [JOB_ROLLED_BACK] = true,
			  [JOB_CANCELLED] = true },
	/* terminal states have no way out: a finished job is never run again (story 002) */
};

bool job_transition_allowed(enum job_state from, enum job_state to)
{
	if ((unsigned)from >= JOB_STATE_COUNT || (unsigned)to >= JOB_STATE_COUNT)
		return false;
	return allowed[from][to];
}

bool job_state_terminal(enum job_state st)
{
	return st == JOB_SUCCEEDED || st == JOB_FAILED || st == JOB_ROLLED_BACK ||
	       st == JOB_CANCELLED;
}

static const char *const step_names[STEP_COUNT] = {
	[STEP_ENSURE_OBJECTS] = "ensure_objects", [STEP_ACTIVATE] = "activate",
	[STEP_START] = "start",                   [STEP_HEALTH] = "health",
	[STEP_ACCEPT] = "accept",                 [STEP_SWITCH] = "switch",
	[STEP_BAKE] = "bake",                     [STEP_CLEANUP] = "cleanup",
};

const char *deploy_step_name(enum deploy_step st)
{
	return (unsigned)st < STEP_COUNT ? step_names[st] : "unknown";
}

int deploy_step_parse(const char *name, enum deploy_step *out)
{
	for (int i = 0; i < STEP_COUNT; i++)
		if (name && !strcmp(name, step_names[i])) {
			*out = (enum deploy_step)i;
			return 0;
		}
	return -EINVAL;
}

bool deploy_step_rerunnable(enum deploy_step st)
{
	/* start launches processes and cleanup stops them: after a crash in the middle, what
	 * the agent reports decides; everything else only reads or converges to one state */
	return st != STEP_START && st != STEP_CLEANUP;
}
