/* How the process that closes a file is doing (closer.h).  Measured on
 * Linux 6.18 with rsync 3.5.0, cp and pv (tests/mount/writers.sh):
 *  - cp killed by SIGINT or SIGKILL: no close(); the kernel closes the
 *    file in do_exit(), after PF_EXITING and the exit code are set, and
 *    the FUSE flush comes from that task;
 *  - pv > FILE never closes stdout: the kernel closes it at exit(0), so
 *    an exiting writer with status 0 has finished its copy;
 *  - rsync, interrupted (Ctrl-C, kill, a lost connection): the receiver
 *    calls sigaction(SIGUSR1, SIG_IGN) first thing in its exit cleanup,
 *    then close()s its temp file while alive, then unlinks it (with
 *    --partial: renames it to NAME).  While it copies, SIGUSR1 has its
 *    handler. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "closer.h"

/* include/linux/sched.h: "getting shut down" */
#define PF_EXITING 0x00000004u
/* /proc/PID/stat fields (proc(5), counted from 1) */
#define FIELD_FLAGS 9
#define FIELD_EXIT_CODE 52

int closer_parse_stat(const char *buf, size_t len, struct closer *c)
{
	/* "PID (COMM) S ...": COMM may hold spaces and ')', so it ends at
	 * the last ')' */
	const char *open = memchr(buf, '(', len);
	const char *close = NULL;
	for (const char *p = buf + len; p > buf; p--)
		if (p[-1] == ')') {
			close = p - 1;
			break;
		}
	if (!open || !close || close < open)
		return -EINVAL;
	size_t cl = (size_t)(close - open - 1);
	if (cl >= sizeof c->comm)
		cl = sizeof c->comm - 1;
	memcpy(c->comm, open + 1, cl);
	c->comm[cl] = 0;
	unsigned long long flags = 0;
	long long code = 0;
	bool have_flags = false, have_code = false;
	int field = 2;
	const char *p = close + 1, *end = buf + len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\n'))
			p++;
		if (p >= end)
			break;
		const char *tok = p;
		while (p < end && *p != ' ' && *p != '\n')
			p++;
		field++;
		if (field != FIELD_FLAGS && field != FIELD_EXIT_CODE)
			continue;
		char num[24];
		size_t tl = (size_t)(p - tok);
		if (tl == 0 || tl >= sizeof num)
			return -EINVAL;
		memcpy(num, tok, tl);
		num[tl] = 0;
		char *e;
		errno = 0;
		if (field == FIELD_FLAGS) {
			flags = strtoull(num, &e, 10);
			have_flags = true;
		} else {
			code = strtoll(num, &e, 10);
			have_code = true;
		}
		if (*e || errno)
			return -EINVAL;
	}
	/* the exit code came with Linux 3.5; without it an exiting writer's
	 * end cannot be told */
	if (!have_flags || !have_code)
		return -EINVAL;
	c->sig = 0;
	c->status = 0;
	if (!(flags & PF_EXITING)) {
		c->fate = CLOSER_ALIVE;
	} else if (code & 0x7f) {
		c->fate = CLOSER_KILLED;
		c->sig = (int)(code & 0x7f);
	} else {
		c->status = (int)((code >> 8) & 0xff);
		c->fate = c->status ? CLOSER_FAILED : CLOSER_EXITED;
	}
	return 0;
}

/* The value after "\nKEY:" in buf, or NULL; *vlen up to the line's end. */
static const char *status_value(const char *buf, size_t len, const char *key, size_t *vlen)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i + kl + 2 <= len; i++) {
		if (buf[i] != '\n' || memcmp(buf + i + 1, key, kl) || buf[i + 1 + kl] != ':')
			continue;
		size_t p = i + kl + 2;
		while (p < len && (buf[p] == '\t' || buf[p] == ' '))
			p++;
		size_t e = p;
		while (e < len && buf[e] != '\n')
			e++;
		*vlen = e - p;
		return buf + p;
	}
	return NULL;
}

/* "0000000000000a00": 16 lower-case hex digits */
static int parse_mask(const char *v, size_t n, uint64_t *out)
{
	uint64_t m = 0;
	if (n == 0 || n > 16)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else
			return -EINVAL;
		m = m << 4 | d;
	}
	*out = m;
	return 0;
}

/* "1000\t1000\t1000\t1000": real, effective, saved (and fs) ids */
static int parse_ids(const char *v, size_t n, long out[3])
{
	size_t p = 0;
	for (int k = 0; k < 3; k++) {
		while (p < n && (v[p] == '\t' || v[p] == ' '))
			p++;
		long id = 0;
		size_t digits = 0;
		for (; p < n && v[p] >= '0' && v[p] <= '9'; p++, digits++) {
			id = id * 10 + (v[p] - '0');
			if (id > 0xffffffffL)
				return -EINVAL;
		}
		if (digits == 0 || (p < n && v[p] != '\t' && v[p] != ' '))
			return -EINVAL;
		out[k] = id;
	}
	return 0;
}

int closer_parse_status(const char *buf, size_t len, struct closer *c)
{
	size_t n;
	const char *v = status_value(buf, len, "SigIgn", &n);
	if (!v || parse_mask(v, n, &c->sigign) < 0)
		return -EINVAL;
	v = status_value(buf, len, "Uid", &n);
	if (!v || parse_ids(v, n, c->uid) < 0)
		return -EINVAL;
	v = status_value(buf, len, "Gid", &n);
	if (!v || parse_ids(v, n, c->gid) < 0)
		return -EINVAL;
	return 0;
}

void closer_judge_exit(struct closer *c, long euid, long egid)
{
	/* fs/proc/array.c prints the exit code only when ptrace_may_access()
	 * allows reading: CAP_SYS_PTRACE, or all of the task's uids and gids
	 * equal the reader's (once exiting, its mm is gone, and with it the
	 * dumpable check) */
	bool same = true;
	for (int k = 0; k < 3; k++)
		same &= c->uid[k] == euid && c->gid[k] == egid;
	if (c->fate == CLOSER_EXITED && euid != 0 && !same)
		c->fate = CLOSER_UNSEEN;
}

static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	return (ssize_t)got;
}

int closer_read(pid_t tid, struct closer *c)
{
	char path[64], buf[4096];
	memset(c, 0, sizeof *c);
	for (int k = 0; k < 3; k++)
		c->uid[k] = c->gid[k] = -1;
	c->fate = CLOSER_UNKNOWN;
	if (tid <= 0)
		return -ESRCH;  /* the closer is in a pid namespace we cannot see */
	/* /proc/TID works for any thread id, not only a process's */
	snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
	ssize_t n = read_small(path, buf, sizeof buf);
	if (n < 0)
		return (int)n;
	int rc = closer_parse_stat(buf, (size_t)n, c);
	if (rc < 0) {
		c->fate = CLOSER_UNKNOWN;
		return rc;
	}
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	n = read_small(path, buf, sizeof buf);
	if (n >= 0)
		rc = closer_parse_status(buf, (size_t)n, c);
	/* unread ids stay -1: an exit with status 0 then counts as unseen */
	closer_judge_exit(c, (long)geteuid(), (long)getegid());
	return n < 0 ? (int)n : rc;
}

bool closer_rsync_cleanup(const struct closer *c)
{
	return c->fate == CLOSER_ALIVE && !strncmp(c->comm, "rsync", 5) &&
	       (c->sigign & (1ull << (SIGUSR1 - 1)));
}
