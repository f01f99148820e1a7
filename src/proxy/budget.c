/* proxy budget: one descriptor budget for every proxy of the process (hproxy and the TCP
 * engine), so that a process that also serves something else (the agent: its API, instances,
 * probes) keeps descriptors whatever the proxies' clients do. Lock-free: an atomic count. */
#include "proxy/proxy.h"

#include <stdatomic.h>

static atomic_long budget; /* 0: none */
static atomic_long used;

void proxy_fd_budget_set(long n)
{
	atomic_store(&budget, n > 0 ? n : 0);
}

long proxy_fd_budget_used(void)
{
	return atomic_load(&used);
}

bool proxy__fd_take(int k)
{
	long b = atomic_load(&budget);
	long u = atomic_fetch_add(&used, k) + k;
	if (b && u > b) {
		atomic_fetch_sub(&used, k);
		return false;
	}
	return true;
}

void proxy__fd_put(int k)
{
	atomic_fetch_sub(&used, k);
}
