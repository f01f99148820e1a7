/* fault config: the faults: section of cairn.yml applied to a fault layer — used by
 * `cairn fault serve -c FILE` and by `cairn serve` (src/controller/faults.c). */
#ifndef CAIRN_FAULT_CONFIG_H
#define CAIRN_FAULT_CONFIG_H

#include "config/config.h"
#include "proxy/proxy.h"

/* Creates every proxy of c->faults (bound at once) with its toxics, through the API's own
 * handlers: the same checks and semantics as POST /proxies and POST /proxies/{p}/toxics. A
 * failure (an address in use, a name that exists) says FILE:LINE:COL of the entry; the proxies
 * created before it stay. */
int fault_apply_config(struct fault *f, const struct config *c, struct err *e);

#endif
