/* fuzz config: arbitrary bytes into config_parse and config_parse_faults (which also takes a
 * file of only faults:); every outcome must be a clean success or a positioned error, with
 * everything freed (ASan/UBSan/LeakSanitizer watch). */
#include "config/config.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	struct err e;

	if (config_parse("fuzz.yml", "/", (const char *)data, size, &c, &e) == 0) {
		struct json_t *j = config_to_json(c);
		if (!c->app || !c->run.command.n || c->listen_port < 1 || !j)
			__builtin_trap();
		json_decref(j);
		config_free(c);
	} else if (c != NULL || e.msg[0] == '\0') {
		__builtin_trap();
	}
	c = NULL;
	if (config_parse_faults("fuzz.yml", (const char *)data, size, &c, &e) == 0) {
		for (size_t i = 0; i < c->faults.n_proxies; i++)
			if (!c->faults.proxies[i].name || !c->faults.proxies[i].upstream)
				__builtin_trap();
		if (!c->faults_only && !c->app)
			__builtin_trap();
		config_free(c);
	} else if (c != NULL || e.msg[0] == '\0') {
		__builtin_trap();
	}
	return 0;
}
