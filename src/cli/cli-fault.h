/* cli fault internals: the `cairn fault` client verbs (fault-client.c) called from the command's
 * dispatcher (fault.c). Not included outside src/cli/. */
#ifndef CAIRN_CLI_FAULT_H
#define CAIRN_CLI_FAULT_H

#include "cli/cli.h"

/* Runs a client verb (list, inspect, create, delete, toggle, toxic, reset) against the API at
 * addr; argv[0] is the verb. Returns the exit code. */
int cli__fault_client(const struct cli_ctx *ctx, const char *addr, int argc, char **argv);

#endif
