/* main: dispatches `cairn <command>` through the command table. Nothing else lives here. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

const struct cli_command *const cli_commands[] = {
	/* commands are added here as their files land */
	&cli_cmd_init,
	&cli_cmd_check,
	&cli_cmd_pins,
	&cli_cmd_build,
	&cli_cmd_releases,
	&cli_cmd_verify,
	&cli_cmd_diff,
	&cli_cmd_export,
	&cli_cmd_import,
	&cli_cmd_serve,
	&cli_cmd_deploy,
	&cli_cmd_status,
	&cli_cmd_history,
	&cli_cmd_job,
	&cli_cmd_apps,
	&cli_cmd_rm,
	&cli_cmd_rollback,
	&cli_cmd_stop,
	&cli_cmd_unlock,
	&cli_cmd_agent,
	&cli_cmd_fault,
	&cli_cmd_proxy,
	NULL,
};

const struct cli_command *cli_find(const char *name)
{
	for (size_t i = 0; cli_commands[i]; i++)
		if (!strcmp(cli_commands[i]->name, name))
			return cli_commands[i];
	return NULL;
}

static void usage(FILE *out)
{
	fputs("usage: cairn [--version] [--help] <command> [options]\n\n"
	      "cairn makes deploys that cannot silently break production: immutable releases,\n"
	      "gated rollouts behind its own proxy, automatic rollback.\n\ncommands:\n",
	      out);
	for (size_t i = 0; cli_commands[i]; i++)
		fprintf(out, "  %-10s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
	fputs("\n'cairn <command> --help' shows the manual page of a command.\n"
	      "exit status: 0 ok, 1 the checked thing failed, 2 usage or input error.\n",
	      out);
}

int main(int argc, char **argv)
{
	const struct cli_command *cmd;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && (cmd = cli_find(argv[2]))) {
			cli_print_help(cmd, stdout);
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
#ifdef CAIRN_TEST_HOOKS
		printf("cairn %s (test hooks)\n", CAIRN_VERSION);
#else
		printf("cairn %s\n", CAIRN_VERSION);
#endif
		return 0;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		const char *best = NULL;
		size_t bestd = 3;
		for (size_t i = 0; cli_commands[i]; i++) {
			size_t d = str_edit_distance(argv[1], cli_commands[i]->name, 3);
			if (d < bestd) {
				bestd = d;
				best = cli_commands[i]->name;
			}
		}
		fprintf(stderr, "cairn: error: unknown command '%s'", argv[1]);
		if (best)
			fprintf(stderr, "; did you mean '%s'?", best);
		fputs("\nsee 'cairn --help'\n", stderr);
		return 2;
	}
	return cmd->run(argc - 1, argv + 1);
}
