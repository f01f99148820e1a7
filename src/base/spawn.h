/* base/spawn: detached children (daemons we start but do not supervise). */
#ifndef CAIRN_BASE_SPAWN_H
#define CAIRN_BASE_SPAWN_H

#include "base/base.h"

/* Starts argv (PATH lookup, never a shell) in a new session, detached from us (double fork:
 * no zombie is left). Returns 0 once exec succeeded, or -errno with e set when it failed. */
int spawn_detached(const char *const argv[], struct err *e);

#endif
