/* controller faults: the fault-injection proxies and Toxiproxy-compatible API that `cairn serve`
 * runs when its cairn.yml (-c FILE) has a faults: section. Self-contained: its own proxy engine
 * and API thread, nothing shared with the deploy machinery. */
#ifndef CAIRN_CONTROLLER_FAULTS_H
#define CAIRN_CONTROLLER_FAULTS_H

#include "base/base.h"

struct ctl_faults;

/* Reads `config_path` (a cairn.yml, or a file of only faults:); when it declares proxies or
 * faults.listen, starts them and the API on faults.listen. *out stays NULL when there is
 * nothing to run (or config_path is NULL). */
int ctl_faults_start(const char *config_path, struct ctl_faults **out, struct err *e);
/* Stops the API, then every proxy. NULL is a no-op. */
void ctl_faults_stop(struct ctl_faults *f);

#endif
