/* work: a small pool of worker threads for blocking jobs (probes, activation hashing). Jobs
 * run off the loop; finished jobs are handed back through a pipe and their done() runs on the
 * loop thread, so loop state is never touched by a worker. The queue is bounded. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORK_MAX_THREADS 16

struct work_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work *head, *tail; /* owned: pending jobs */
	struct work *done_head;	  /* owned: finished, waiting for the loop */
	unsigned queued, max_queue, n_threads;
	bool quit;
	pthread_t threads[WORK_MAX_THREADS];
	int wake[2];	  /* worker → loop: "something finished" */
	struct event *ev; /* owned */
};

static void run_done(struct work_pool *p)
{
	struct work *list, *rev = NULL;
	pthread_mutex_lock(&p->mu);
	list = p->done_head;
	p->done_head = NULL;
	pthread_mutex_unlock(&p->mu);
	while (list) { /* finished in LIFO order: reverse for FIFO */
		struct work *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct work *n = rev->next;
		rev->done(rev);
		rev = n;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	char b[64];
	UNUSED(what);
	while (read(fd, b, sizeof(b)) > 0)
		;
	run_done(arg);
}

static void *worker(void *arg)
{
	struct work_pool *p = arg;
	for (;;) {
		struct work *w;
		pthread_mutex_lock(&p->mu);
		while (!p->head && !p->quit)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->head) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		w = p->head;
		p->head = w->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		pthread_mutex_unlock(&p->mu);
		w->run(w);
		pthread_mutex_lock(&p->mu);
		w->next = p->done_head;
		p->done_head = w;
		pthread_mutex_unlock(&p->mu);
		ssize_t n = write(p->wake[1], "x", 1);
		(void)n;
	}
}

int work_pool_new(struct event_base *base, unsigned threads, unsigned max_queue,
		  struct work_pool **out, struct err *e)
{
	struct work_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return err_set(e, ENOMEM, "out of memory");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->max_queue = max_queue;
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		int r = err_set(e, errno, "pipe: %s", strerror(errno));
		free(p);
		return r;
	}
	p->ev = event_new(base, p->wake[0], EV_READ | EV_PERSIST, on_wake, p);
	event_add(p->ev, NULL);
	if (threads > WORK_MAX_THREADS)
		threads = WORK_MAX_THREADS;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
			break;
		p->n_threads++;
	}
	if (!p->n_threads) {
		work_pool_free(p);
		return err_set(e, EAGAIN, "cannot start worker threads");
	}
	*out = p;
	return 0;
}

int work_submit(struct work_pool *p, struct work *w)
{
	pthread_mutex_lock(&p->mu);
	if (p->queued >= p->max_queue || p->quit) {
		pthread_mutex_unlock(&p->mu);
		return -EBUSY;
	}
	w->next = NULL;
	if (p->tail)
		p->tail->next = w;
	else
		p->head = w;
	p->tail = w;
	p->queued++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

void work_pool_free(struct work_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* jobs never started are cancelled, but still owe their done() */
	while (p->head) {
		struct work *w = p->head;
		p->head = w->next;
		w->cancelled = true;
		w->next = p->done_head;
		p->done_head = w;
	}
	run_done(p);
	if (p->ev)
		event_free(p->ev);
	close(p->wake[0]);
	close(p->wake[1]);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
