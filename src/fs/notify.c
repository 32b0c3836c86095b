/* Kernel notifications (inval_inode, inval_entry, delete, poll) sent from a
 * thread of their own: libfuse forbids sending them from inside a related
 * request, and a worker thread must never wait on the kernel.  Errors while
 * unmounting (-ENOENT, -EBADF, -ENODEV) are expected and ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

enum nkind { NK_INODE, NK_ENTRY, NK_DELETE, NK_POLL, NK_DEVSTATE };

struct nitem {
	enum nkind kind;
	uint64_t parent, ino;
	char name[256];
	struct fuse_pollhandle *ph;
	esp_device *dev;
	struct nitem *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct nitem *head, *tail;
	bool stop, running;
	pthread_t thread;
	struct fuse_session *se;
} nq = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void push(struct nitem *it)
{
	pthread_mutex_lock(&nq.lock);
	if (nq.stop) {
		pthread_mutex_unlock(&nq.lock);
		if (it->ph)
			fuse_pollhandle_destroy(it->ph);
		if (it->dev)
			device_unref(it->dev);
		free(it);
		return;
	}
	if (nq.tail)
		nq.tail->next = it;
	else
		nq.head = it;
	nq.tail = it;
	pthread_cond_signal(&nq.cond);
	pthread_mutex_unlock(&nq.lock);
}

static void send_one(struct nitem *it)
{
	int rc = 0;
	switch (it->kind) {
	case NK_INODE:
		rc = fuse_lowlevel_notify_inval_inode(nq.se, it->ino, 0, 0);
		break;
	case NK_ENTRY:
		rc = fuse_lowlevel_notify_inval_entry(nq.se, it->parent, it->name, strlen(it->name));
		break;
	case NK_DELETE:
		rc = fuse_lowlevel_notify_delete(nq.se, it->parent, it->ino, it->name, strlen(it->name));
		if (rc < 0 && rc != -ENOENT)  /* older kernels: fall back */
			rc = fuse_lowlevel_notify_inval_entry(nq.se, it->parent, it->name, strlen(it->name));
		break;
	case NK_POLL:
		rc = fuse_lowlevel_notify_poll(it->ph);
		fuse_pollhandle_destroy(it->ph);
		break;
	case NK_DEVSTATE:
		nodes_device_state(it->dev);
		device_unref(it->dev);
		break;
	}
	if (rc < 0 && rc != -ENOENT && rc != -EBADF && rc != -ENODEV)
		LOGD("notify %d failed: %s", it->kind, strerror(-rc));
}

static void *notify_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&nq.lock);
	for (;;) {
		while (!nq.head && !nq.stop)
			pthread_cond_wait(&nq.cond, &nq.lock);
		struct nitem *it = nq.head;
		if (!it)
			break;
		nq.head = it->next;
		if (!nq.head)
			nq.tail = NULL;
		pthread_mutex_unlock(&nq.lock);
		send_one(it);
		free(it);
		pthread_mutex_lock(&nq.lock);
	}
	pthread_mutex_unlock(&nq.lock);
	return NULL;
}

int notify_start(struct fuse_session *se)
{
	nq.se = se;
	nq.stop = false;
	int rc = pthread_create(&nq.thread, NULL, notify_main, NULL);
	if (rc)
		return -rc;
	nq.running = true;
	return 0;
}

void notify_stop(void)
{
	pthread_mutex_lock(&nq.lock);
	nq.stop = true;
	struct nitem *it = nq.head;
	nq.head = nq.tail = NULL;
	pthread_cond_broadcast(&nq.cond);
	pthread_mutex_unlock(&nq.lock);
	if (nq.running)
		pthread_join(nq.thread, NULL);
	nq.running = false;
	while (it) {
		struct nitem *next = it->next;
		if (it->ph)
			fuse_pollhandle_destroy(it->ph);
		if (it->dev)
			device_unref(it->dev);
		free(it);
		it = next;
	}
}

static struct nitem *item(enum nkind k)
{
	struct nitem *it = calloc(1, sizeof *it);
	if (it)
		it->kind = k;
	return it;
}

void notify_inval_inode(uint64_t ino)
{
	struct nitem *it = item(NK_INODE);
	if (!it)
		return;
	it->ino = ino;
	push(it);
}

void notify_inval_entry(uint64_t parent, const char *name)
{
	struct nitem *it = item(NK_ENTRY);
	if (!it)
		return;
	it->parent = parent;
	snprintf(it->name, sizeof it->name, "%s", name);
	push(it);
}

void notify_delete(uint64_t parent, uint64_t child, const char *name)
{
	struct nitem *it = item(NK_DELETE);
	if (!it)
		return;
	it->parent = parent;
	it->ino = child;
	snprintf(it->name, sizeof it->name, "%s", name);
	push(it);
}

void notify_poll(struct fuse_pollhandle *ph)
{
	struct nitem *it = item(NK_POLL);
	if (!it) {
		fuse_pollhandle_destroy(ph);
		return;
	}
	it->ph = ph;
	push(it);
}

void notify_device_state(esp_device *d)
{
	struct nitem *it = item(NK_DEVSTATE);
	if (!it)
		return;
	device_ref(d);
	it->dev = d;
	push(it);
}
