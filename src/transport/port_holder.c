/* Who holds a serial port we could not have: the process that took the
 * port's flock (from /proc/locks), else the processes that have it open
 * (from /proc/PID/fd), named by pid and command (/proc/PID/comm).  Also
 * whether brltty runs: it claims CP210x/CH340 bridges as braille displays
 * and their tty vanishes right after it appears.
 *
 * Only what any user may read in /proc is used; processes of other users
 * whose fd directories we cannot list are simply not seen. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "espfs/transport.h"

static void comm_of(const char *proc, long pid, char *out, size_t cap)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%ld/comm", proc, pid);
	FILE *f = fopen(p, "r");
	out[0] = 0;
	if (f) {
		if (fgets(out, (int)cap, f))
			out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
	if (!out[0])
		snprintf(out, cap, "?");
}

static bool is_pid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static void add(char *out, size_t cap, size_t *used, int *count, const char *proc, long pid)
{
	char comm[64];
	comm_of(proc, pid, comm, sizeof comm);
	int n = snprintf(out + *used, cap - *used, "%spid %ld (%s)", *count ? ", " : "", pid, comm);
	if (n > 0 && (size_t)n < cap - *used)
		*used += (size_t)n;
	(*count)++;
}

/* FLOCK lines of /proc/locks on this inode: "N: FLOCK ADVISORY WRITE PID
 * MAJ:MIN:INO 0 EOF" (MAJ:MIN in hex). */
static int from_locks(const char *proc, const struct stat *st, long self, char *out, size_t cap,
		      size_t *used, int *count)
{
	char p[PATH_MAX], line[256];
	snprintf(p, sizeof p, "%s/locks", proc);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		char kind[16], dev[64];
		long pid;
		unsigned long long ino;
		unsigned maj, min;
		/* "1: FLOCK  ADVISORY  WRITE 1234 00:05:3 0 EOF"; a "->" line is a waiter */
		if (strstr(line, "->"))
			continue;
		if (sscanf(line, "%*d: %15s %*s %*s %ld %63s", kind, &pid, dev) != 3)
			continue;
		if (strcmp(kind, "FLOCK") || pid == self)
			continue;
		if (sscanf(dev, "%x:%x:%llu", &maj, &min, &ino) != 3)
			continue;
		/* the lock names the inode of the device node's filesystem */
		if (ino == (unsigned long long)st->st_ino && makedev(maj, min) == st->st_dev)
			add(out, cap, used, count, proc, pid);
	}
	fclose(f);
	return *count;
}

int esp_port_holders_in(const char *proc, const char *path, char *out, size_t cap)
{
	struct stat st;
	char real[PATH_MAX];
	size_t used = 0;
	int count = 0;
	if (cap)
		out[0] = 0;
	if (!realpath(path, real) || stat(real, &st) < 0)
		return -errno;
	long self = (long)getpid();
	if (from_locks(proc, &st, self, out, cap, &used, &count))
		return count;
	DIR *pd = opendir(proc);
	if (!pd)
		return -errno;
	struct dirent *e;
	while ((e = readdir(pd))) {
		if (!is_pid(e->d_name))
			continue;
		long pid = atol(e->d_name);
		if (pid == self)
			continue;
		char fdp[PATH_MAX];
		snprintf(fdp, sizeof fdp, "%s/%s/fd", proc, e->d_name);
		DIR *fd = opendir(fdp);
		if (!fd)
			continue;
		struct dirent *fe;
		while ((fe = readdir(fd))) {
			char lp[PATH_MAX + 300], tgt[PATH_MAX];
			snprintf(lp, sizeof lp, "%s/%s", fdp, fe->d_name);
			ssize_t n = readlink(lp, tgt, sizeof tgt - 1);
			if (n <= 0)
				continue;
			tgt[n] = 0;
			struct stat fst;
			bool same = !strcmp(tgt, real) ||
				    (S_ISCHR(st.st_mode) && stat(lp, &fst) == 0 && S_ISCHR(fst.st_mode) &&
				     fst.st_rdev == st.st_rdev);
			if (same) {
				add(out, cap, &used, &count, proc, pid);
				break;
			}
		}
		closedir(fd);
	}
	closedir(pd);
	return count;
}

int esp_port_holders(const char *path, char *out, size_t cap)
{
	return esp_port_holders_in("/proc", path, out, cap);
}

long esp_process_running(const char *proc, const char *comm)
{
	DIR *pd = opendir(proc);
	if (!pd)
		return 0;
	struct dirent *e;
	long found = 0;
	while (!found && (e = readdir(pd))) {
		if (!is_pid(e->d_name))
			continue;
		char c[64];
		comm_of(proc, atol(e->d_name), c, sizeof c);
		if (!strcmp(c, comm))
			found = atol(e->d_name);
	}
	closedir(pd);
	return found;
}
