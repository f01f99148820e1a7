/* base: the bottom layer every other module stands on — errors, owning buffers and slices,
 * files, hashing, time, logging and child processes (argv only, never a shell).
 * It depends on nothing of ours and never logs above debug on its own. */
#ifndef CAIRN_BASE_H
#define CAIRN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))

/* ---- errors ---------------------------------------------------------------------------- */

/* A message for a person. `code` is a positive errno-style value (or one of the CAIRN_E*
 * below); `file`/`line`/`col` are set when the error points into an input file (line and
 * column are 1-based; 0 means unknown). Messages longer than ERR_MSG_MAX are truncated. */
#define ERR_MSG_MAX 1024
#define ERR_FILE_MAX 512

enum {
	CAIRN_EINPUT = 1000, /* bad input from a person or a file: exit 2 */
	CAIRN_ECHECK = 1001, /* the checked thing failed (gate, verify, pins): exit 1 */
	CAIRN_ENOTFOUND = 1002, /* a name (REF, app) that matches nothing: exit 2 */
	CAIRN_ECORRUPT = 1003, /* stored bytes do not match their digest */
	CAIRN_EAMBIGUOUS = 1004,
};

struct err {
	int code;
	int line, col;
	char file[ERR_FILE_MAX];
	char msg[ERR_MSG_MAX];
};

/* Sets e (if non-NULL) and returns -code, so callers can `return err_set(e, ...)`. */
int err_set(struct err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_set_at(struct err *e, int code, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Prefixes the existing message with "what: " (context added by a caller). */
void err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_clear(struct err *e);
/* "FILE:LINE:COL: error: msg" when a position is known, else "cairn: error: msg". */
void err_print(const struct err *e, FILE *out);
/* Process exit code for an error: 2 for input/usage, 1 for everything else. */
int err_exit_code(const struct err *e);

/* ---- buffers --------------------------------------------------------------------------- */

/* An owning, growable, always NUL-terminated byte buffer with a mandatory maximum size
 * (curl dynbuf). Appending past `max` fails with -E2BIG and leaves the buffer unchanged; the
 * failure sticks in `err` (so a long run of appends can be checked once) until buf_reset. */
struct buf {
	char *data; /* owned; NULL until the first append */
	size_t len, cap, max;
	int err; /* sticky: the first failed append's error; later appends fail at once */
};

void buf_init(struct buf *b, size_t max);
void buf_done(struct buf *b);
void buf_reset(struct buf *b);
int buf_add(struct buf *b, const void *p, size_t n);
int buf_adds(struct buf *b, const char *s);
int buf_addc(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vaddf(struct buf *b, const char *fmt, va_list ap);
/* Returns the data (never NULL: "" for an empty buffer) — valid until the next change. */
const char *buf_str(const struct buf *b);
/* Gives ownership of the data to the caller (malloc'd, NUL-terminated); b is reset. */
char *buf_detach(struct buf *b);

/* A non-owning view of bytes (h2o iovec). */
struct slice {
	const char *p;
	size_t n;
};
#define SLICE_LIT(s) ((struct slice){ (s), sizeof(s) - 1 })
struct slice slice_from(const char *s);
bool slice_eq(struct slice a, const char *s);
bool slice_starts(struct slice a, const char *prefix);
struct slice slice_trim(struct slice a);

/* ---- strings --------------------------------------------------------------------------- */

/* Allocation that dies on OOM: for the CLI and tests only, never in the daemon. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool str_starts(const char *s, const char *prefix);
bool str_ends(const char *s, const char *suffix);
/* Levenshtein distance, capped at `cap` (returns cap when larger) — for "did you mean". */
size_t str_edit_distance(const char *a, const char *b, size_t cap);
/* The name of the NULL-terminated list nearest to s (a third of its length or fewer edits, at
 * least 2), or NULL: the "did you mean" of config keys, enums and API attributes. */
const char *str_nearest(const char *s, const char *const names[]);
/* Appends s to b as a JSON/C-ish quoted string for messages: "a\"b". */
int buf_add_quoted(struct buf *b, const char *s);

/* A growable array of owned strings (NULL-terminated, so it can be an argv). */
struct strv {
	char **v; /* owned, and each element owned */
	size_t n, cap;
};
void strv_init(struct strv *s);
void strv_done(struct strv *s);
void strv_push(struct strv *s, const char *str); /* dies on OOM (CLI) */
void strv_push_owned(struct strv *s, char *str);
void strv_sort(struct strv *s);

/* ---- names (names.c) ------------------------------------------------------------------
 * The one validator of app names and release tags, used on every path that takes one. */

#define NAME_APP_MAX 63      /* [a-z0-9][a-z0-9_.-]{0,62}, as in cairn.yml */
#define NAME_TAG_MAX 128
#define NAME_ID_PREFIX_MIN 4 /* the shortest hex prefix a REF resolves as an id */

bool name_app_ok(const char *s, size_t n);
/* Could s stand for a release id: "sha256:…", or NAME_ID_PREFIX_MIN..64 hex digits (any case)? */
bool name_is_id_like(const char *s, size_t n);
/* A tag: 1-NAME_TAG_MAX printable ASCII bytes without spaces, '/' or ':', and not id-like
 * (a tag can never impersonate a release id). CAIRN_EINPUT with the rule otherwise. */
int name_tag_check(const char *s, size_t n, struct err *e);
/* Text from outside (names, reasons, log lines) for a terminal: control characters become
 * \xNN. name_safe writes into out (n bytes; 4 * strlen(s) + 1 always suffice, else it is
 * cut) and returns out. */
void name_fput_safe(const char *s, FILE *out);
const char *name_safe(const char *s, char *out, size_t n);
#define NAME_SAFE_LEN(n) (4 * (n) + 1)

/* ---- hashing --------------------------------------------------------------------------- */

#define HASH_HEX_LEN 64 /* SHA-256 in lowercase hex */
#define HASH_ID_LEN (7 + HASH_HEX_LEN) /* "sha256:" + hex */
#define HASH_SHORT_LEN 12

/* out must hold HASH_HEX_LEN + 1 bytes. */
void hash_mem(const void *p, size_t n, char *out);
/* Hashes an open fd from its current offset to EOF. Returns bytes read or -errno. */
int64_t hash_fd(int fd, char *out);
int hash_file(const char *path, char *out, struct err *e);
bool hash_is_hex(const char *s, size_t n);

/* Incremental hashing for streams. */
struct hasher;
struct hasher *hasher_new(void);
void hasher_update(struct hasher *h, const void *p, size_t n);
void hasher_final(struct hasher *h, char *out); /* also frees h */

/* ---- files ----------------------------------------------------------------------------- */

/* Creates a directory and its parents (like mkdir -p). */
int fs_mkdir_p(const char *path, mode_t mode, struct err *e);
/* A state directory's modes (docs/security.md), made or enforced on every open: the dir is
 * 0711 when we are root (apps may pass through to their own release and data, never list)
 * and 0700 otherwise; releases/ and data/ get the same; every other entry loses its group
 * and other bits (0700 dirs, 0600 files and sockets). Refuses a dir another user owns. */
int fs_secure_state_dir(const char *dir, struct err *e);
/* Reads a whole file into b (appending); fails with -E2BIG past b->max. */
int fs_read_file(const char *path, struct buf *b, struct err *e);
int fs_read_fd(int fd, struct buf *b);
/* Writes data to path atomically: temp file in the same directory, fsync, rename, fsync dir. */
int fs_write_atomic(const char *path, const void *data, size_t n, mode_t mode, struct err *e);
/* The same without the fsyncs: readers never see half a file, but after a crash the file may be
 * old or empty. For caches, which are checked when read and cost only time when lost. */
int fs_write_replace(const char *path, const void *data, size_t n, mode_t mode, struct err *e);
int fs_write_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes at off (retrying EINTR and short reads): 0, -errno, or -EIO at EOF. */
int fs_pread_all(int fd, void *p, size_t n, int64_t off);
/* Copies the rest of in to out (copy_file_range where the kernel can, else read/write). */
int fs_copy_fd(int in, int out);
/* Removes a tree (no following of symlinks). Missing path is not an error. */
int fs_rm_rf(const char *path);
int fs_fsync_dir(const char *path);
bool fs_is_dir(const char *path);
bool fs_exists(const char *path);
/* Joins with exactly one '/' (dies on OOM: helpers for the CLI and builders). */
char *fs_join(const char *a, const char *b);
/* Makes a private temporary directory under `parent` ("cairn-XXXXXX"); returns malloc'd path. */
char *fs_mkdtemp(const char *parent, struct err *e);
/* Absolute, symlink-free path of an existing file (malloc'd), or NULL with e set. */
char *fs_realpath(const char *path, struct err *e);

/* ---- time ------------------------------------------------------------------------------ */

int64_t time_now_ns(void);   /* CLOCK_REALTIME */
int64_t time_mono_ns(void);  /* CLOCK_MONOTONIC */
struct timespec;
/* The CLOCK_REALTIME instant ms from now, for pthread_*_timed* deadlines. */
void time_deadline_ms(int64_t ms, struct timespec *out);
/* "250ms", "10s", "5m", "1h", "1.5s", "0" → milliseconds. Returns 0 or -EINVAL. */
int time_parse_duration_ms(const char *s, int64_t *out_ms);
/* Writes a short human duration ("350ms", "12.5s", "3m20s", "2h5m", "4d") into out. */
void time_fmt_duration(int64_t ms, char *out, size_t n);
/* RFC 3339 UTC: "2026-11-22T03:15:24Z". out needs 21 bytes. */
void time_fmt_rfc3339(int64_t unix_s, char *out, size_t n);

/* ---- logging --------------------------------------------------------------------------- */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
/* Level from CAIRN_LOG (debug|info|warn|error), default warn; output to stderr. */
void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define log_debug(mod, ...) log_msg(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

/* ---- child processes ------------------------------------------------------------------- */

/* Runs argv[0] (PATH lookup) with argv, never through a shell, in its own process group,
 * with every fd but 0-2 closed. `env_extra` ("K=V" strings, may be NULL) is added to the
 * environment. When `out` is non-NULL, stdout and stderr are captured into it (bounded by
 * out->max; the excess is dropped); otherwise they are inherited. Exec failure (no such
 * program) is detected through a close-on-exec pipe and reported as an error, not as an
 * exit status. On success *out_status is the wait status. */
struct exec_opts {
	const char *cwd;
	char *const *env_extra;
	struct buf *out;
	int64_t timeout_ms; /* 0 = none; on expiry the group is killed and -ETIMEDOUT returned */
	bool stdout_to_stderr; /* without `out`: the child's stdout goes to our stderr */
	int parent_death_signal; /* > 0: sent to the child when the calling thread ends (a killed
				    caller leaves no command running); see exec_spawn_opts */
};
int exec_run(const char *const argv[], const struct exec_opts *o, int *out_status, struct err *e);
/* "exited with status 3" / "killed by signal 9 (Killed)" */
void exec_describe_status(int status, char *out, size_t n);

/* Starts argv[0] (PATH lookup) without waiting for it: own process group, signal mask and
 * dispositions reset, every fd but the given ones closed. fd_in/fd_out/fd_err become 0/1/2
 * (-1: /dev/null); fd_3 (if >= 0) becomes fd 3. `env` is the whole environment (NULL:
 * inherit). Blocks only until the exec happened: exec failure (missing program, bad cwd)
 * comes back through a close-on-exec pipe as an error, the child already reaped. */
struct exec_spawn_opts {
	const char *cwd;
	char *const *env;
	int fd_in, fd_out, fd_err, fd_3;
	/* > 0: the child gets this signal when the *thread* that spawned it ends (prctl
	 * PR_SET_PDEATHSIG), so spawn from a thread that lives as long as the child should */
	int parent_death_signal;
	/* set_user: the child drops to uid:gid (its only group) and umask 077 before it enters
	 * cwd and execs; a cwd it cannot enter is reported as such (docs/security.md) */
	bool set_user;
	uid_t uid;
	gid_t gid;
};
int exec_spawn(const char *const argv[], const struct exec_spawn_opts *o, pid_t *out_pid,
	       struct err *e);

/* ---- processes (proc.c) ------------------------------------------------------------------ */

/* Start time of a live process (field 22 of /proc/PID/stat, clock ticks since boot): with the
 * pid it names one process, whatever reuses the pid later. -ESRCH when gone or a zombie. */
int proc_start_time(pid_t pid, uint64_t *out_start);
bool proc_alive(pid_t pid, uint64_t start);
/* run.user's shape: a user name ([a-z_][a-z0-9_.-]*, at most 32) or a numeric uid, never
 * root ("root" or 0): the user an app runs as (docs/security.md). */
bool proc_run_user_ok(const char *s);
/* pidfd_open(2): a close-on-exec fd that polls readable when the process exits. */
int proc_pidfd_open(pid_t pid);
/* Raises RLIMIT_NOFILE's soft limit to its hard limit (what the box allows this process, at
 * most 1 << 20); returns the soft limit now in force (> 0), or a negative errno. */
long proc_raise_nofile(void);
/* In a forked child before exec: the soft limit back to what it was before proc_raise_nofile
 * (programs that loop over every possible descriptor, or use select(), expect the usual one).
 * Async-signal-safe; a no-op when nothing was raised. */
void proc_child_nofile(void);

/* ---- sockets (net.c) --------------------------------------------------------------------- */

struct sockaddr_un;
/* Fills a unix address for path; a path longer than sun_path is reached through
 * /proc/self/fd/N of its directory (*out_dirfd, to close after bind/connect; else -1). */
int net_unix_addr(const char *path, struct sockaddr_un *out, int *out_dirfd, struct err *e);
/* Binds and listens (non-blocking, close-on-exec) with the socket file created as `mode`. */
int net_unix_listen(const char *path, mode_t mode, int backlog, int *out_fd, struct err *e);
/* Blocking connect; ECONNREFUSED / ENOENT mean nobody listens there. */
int net_unix_connect(const char *path, int *out_fd, struct err *e);
/* A port the kernel calls free on 127.0.0.1 right now (bind to 0, close). Another process
 * may take it before the caller uses it: callers must cope (see docs/agent.md). */
int net_loopback_free_port(int *out_port, struct err *e);
/* The same, skipping every port avoid(ctx, port) refuses (held bound while searching, so the
 * kernel offers the next one). */
int net_loopback_free_port_avoiding(bool (*avoid)(void *ctx, int port), void *ctx, int *out_port,
				    struct err *e);
/* Connects to ipv4:port within timeout_ms and closes again: 0 when something accepted. */
int net_tcp_connect_timeout(const char *ipv4, int port, int64_t timeout_ms, struct err *e);
/* ---- network addresses and sockets (net-tcp.c) --------------------------------------------- */

#include <sys/socket.h>

#define NET_ADDR_STRLEN 64 /* "[ffff:...:ffff]:65535" and NUL */
#define NET_ADDR_MAX 8     /* addresses kept per resolved name */

struct net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* "host:port", "[v6]:port" or ":port" (empty host) into host and port; -EINVAL when malformed
 * or too long for the buffers. */
int net_split_hostport(const char *s, char *host, size_t hostn, char *port, size_t portn);
/* Resolves a TCP "host:port" (blocking getaddrinfo; IPv4 first) into up to max addresses. An
 * empty host with `passive` means every interface. */
int net_resolve_tcp(const char *addr, bool passive, struct net_addr *out, size_t max,
		    size_t *out_n, struct err *e);
/* "127.0.0.1:80" / "[::1]:80" as Go prints net.Addr. */
void net_addr_str(const struct sockaddr *sa, char *out, size_t n);
int net_local_addr_str(int fd, char *out, size_t n);
int net_set_nonblock(int fd);
void net_set_nodelay(int fd);
/* A non-blocking, close-on-exec listening socket on a (SO_REUSEADDR, and SO_REUSEPORT when
 * asked). Returns the fd; errors read like Go's ("listen tcp ADDR: bind: ..."). */
int net_listen_on(const struct net_addr *a, bool reuseport, int backlog, struct err *e);
/* Listeners kept across a restart of this process (the agent's keeper, docs/agent.md). When
 * set, net_listen_on first asks take() for a kept listener bound to exactly that address
 * (port != 0; it then binds nothing), and reports each listener it binds anew to bound(). Both
 * run in the thread that calls net_listen_on. NULL unsets. */
struct net_listen_keep {
	int (*take)(void *ctx, const struct sockaddr *sa, socklen_t len); /* fd or -1 */
	void (*bound)(void *ctx, int fd);
	void *ctx;
};
void net_listen_keep_set(const struct net_listen_keep *k);
/* Starts a non-blocking connect; returns the fd (connect may still be in progress) or -errno. */
int net_connect_start(const struct net_addr *a);
/* A blocking connect with a timeout, for clients and tests. */
int net_dial_tcp(const char *addr, int timeout_ms, struct err *e);

#endif
