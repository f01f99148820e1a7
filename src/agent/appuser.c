/* appuser: who an app's instances run as (docs/security.md). A root agent never runs an app
 * as root: run.user names the user, or else each app gets its own uid (= its gid) from the
 * range AGENT_UID_MIN..AGENT_UID_MAX, recorded once in <state>/agent/app-users ("uid app"
 * lines, under flock) and never reused for another app. A non-root agent runs apps as itself.
 * Never creates system accounts, never writes /etc. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* systemd's range for dynamic users: no distribution gives these to accounts */
#define AGENT_UID_MIN 61184
#define AGENT_UID_MAX 65519
#define APP_USERS_MAX ((AGENT_UID_MAX - AGENT_UID_MIN + 1) * (AGENT_NAME_MAX + 16))

static bool uid_known(uid_t uid)
{
	return getpwuid(uid) != NULL || getgrgid((gid_t)uid) != NULL;
}

/* Finds app's uid in the map (b), or picks the lowest free one and appends it to fd. */
static int dynamic_uid(int fd, struct buf *b, const char *path, const char *app, uid_t *out,
		       struct err *e)
{
	unsigned char used[AGENT_UID_MAX - AGENT_UID_MIN + 1] = {0};
	char *line = b->data ? b->data : (char *)"";

	while (*line) {
		char *nl = strchr(line, '\n'), *sp = strchr(line, ' ');
		if (!nl)
			break; /* a torn last line (crash while appending): ignored */
		*nl = 0;
		if (sp && sp < nl) {
			long uid = strtol(line, NULL, 10);
			if (uid >= AGENT_UID_MIN && uid <= AGENT_UID_MAX) {
				if (!strcmp(sp + 1, app)) {
					*out = (uid_t)uid;
					return 0;
				}
				used[uid - AGENT_UID_MIN] = 1;
			}
		}
		line = nl + 1;
	}
	for (uid_t uid = AGENT_UID_MIN; uid <= AGENT_UID_MAX; uid++) {
		if (used[uid - AGENT_UID_MIN] || uid_known(uid))
			continue;
		char *rec = xasprintf("%u %s\n", (unsigned)uid, app);
		int r = lseek(fd, 0, SEEK_END) < 0 ? -errno : fs_write_all(fd, rec, strlen(rec));
		free(rec);
		if (r == 0 && fsync(fd) < 0)
			r = -errno;
		if (r < 0)
			return err_set(e, -r, "cannot write %s: %s", path, strerror(-r));
		*out = uid;
		return 0;
	}
	return err_set(e, ENOSPC, "no free uid left in %d..%d for app '%s' (see %s)", AGENT_UID_MIN,
		       AGENT_UID_MAX, app, path);
}

static int app_uid(const char *state_dir, const char *app, uid_t *out, struct err *e)
{
	char *path = xasprintf("%s/agent/app-users", state_dir);
	struct buf b;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600), r;

	buf_init(&b, APP_USERS_MAX);
	if (fd < 0) {
		r = err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
		goto done;
	}
	if (flock(fd, LOCK_EX) < 0) { /* activation workers and the loop may ask at once */
		r = err_set(e, errno, "cannot lock %s: %s", path, strerror(errno));
		goto done;
	}
	if ((r = fs_read_fd(fd, &b)) < 0) {
		r = err_set(e, -r, "cannot read %s: %s", path, strerror(-r));
		goto done;
	}
	r = dynamic_uid(fd, &b, path, app, out, e);
done:
	if (fd >= 0)
		close(fd); /* drops the lock */
	buf_done(&b);
	free(path);
	return r;
}

int agent__app_user(const char *state_dir, const char *app, const char *run_user,
		    struct app_user *out, struct err *e)
{
	struct app_user u = {.drop = geteuid() == 0};

	if (!u.drop) { /* a non-root agent can only run apps as itself (docs/security.md) */
		u.uid = geteuid();
		u.gid = getegid();
	} else if (run_user) {
		char *end;
		long n = strtol(run_user, &end, 10);
		struct passwd *pw = *end ? getpwnam(run_user) : getpwuid((uid_t)n);
		if (*end && !pw)
			return err_set(e, CAIRN_EINPUT,
				       "run.user '%s' of app '%s' is not a user on this host: create "
				       "it (useradd --system %s) or leave run.user out",
				       run_user, app, run_user);
		u.uid = pw ? pw->pw_uid : (uid_t)n;
		u.gid = pw ? pw->pw_gid : (gid_t)n;
		if (pw) {
			snprintf(u.name, sizeof(u.name), "%s", pw->pw_name);
			snprintf(u.home, sizeof(u.home), "%s", pw->pw_dir);
		}
		if (u.uid == 0 || u.gid == 0)
			return err_set(e, CAIRN_EINPUT,
				       "run.user '%s' of app '%s' is root (uid %u gid %u): apps never "
				       "run as root; name another user or leave run.user out",
				       run_user, app, (unsigned)u.uid, (unsigned)u.gid);
	} else {
		int r = app_uid(state_dir, app, &u.uid, e);
		if (r < 0)
			return r;
		u.gid = (gid_t)u.uid;
		snprintf(u.name, sizeof(u.name), "cairn-%s", app);
	}
	*out = u;
	return 0;
}
