/* fuzz_deps: the dependency finder's readers on arbitrary bytes. The first byte picks the
 * file (METADATA, requirements, npm lockfile, node_modules package.json, Pipfile.lock,
 * poetry.lock, Cargo.lock, Gemfile.lock, go.sum, Dockerfile); the rest is its content. */
#include "release/release.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
	"x-1.0.dist-info/METADATA",  "requirements.txt", "package-lock.json",
	"node_modules/a/package.json", "Pipfile.lock",   "poetry.lock",
	"Cargo.lock",                "Gemfile.lock",     "go.sum",
	"Dockerfile",                "y.egg-info/PKG-INFO",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dep_list l = { 0 };
	if (size < 1)
		return 0;
	const char *name = names[data[0] % (sizeof(names) / sizeof(names[0]))];
	char *copy = malloc(size - 1 ? size - 1 : 1);
	memcpy(copy, data + 1, size - 1);
	deps_scan_text(name, copy, size - 1, &l);
	dep_list_sort(&l);
	for (size_t i = 0; i < l.n; i++)
		if (!l.v[i].name || !l.v[i].version)
			abort();
	dep_list_done(&l);
	free(copy);
	return 0;
}
