/* deplist: the list of dependency versions a release records (owned strings, sorted). */
#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>

void dep_list_done(struct dep_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].ecosystem);
		free(l->v[i].name);
		free(l->v[i].version);
		free(l->v[i].source);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

void dep_list_add(struct dep_list *l, const char *eco, const char *name, const char *version,
		  const char *source)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = (struct dep){ xstrdup(eco), xstrdup(name), xstrdup(version), xstrdup(source) };
}

static int cmp_dep(const void *a, const void *b)
{
	const struct dep *x = a, *y = b;
	int c;
	if ((c = strcmp(x->ecosystem, y->ecosystem)))
		return c;
	if ((c = strcmp(x->name, y->name)))
		return c;
	if ((c = strcmp(x->version, y->version)))
		return c;
	return strcmp(x->source, y->source);
}

void dep_list_sort(struct dep_list *l)
{
	size_t j = 0;
	if (l->n < 2)
		return;
	qsort(l->v, l->n, sizeof(*l->v), cmp_dep);
	for (size_t i = 1; i < l->n; i++) {
		if (cmp_dep(&l->v[j], &l->v[i]) == 0) {
			free(l->v[i].ecosystem);
			free(l->v[i].name);
			free(l->v[i].version);
			free(l->v[i].source);
		} else {
			l->v[++j] = l->v[i];
		}
	}
	l->n = j + 1;
}
