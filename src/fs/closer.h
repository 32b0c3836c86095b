/* How the process that closes a file is doing, from /proc/PID (a FUSE
 * flush carries the closing thread's id).  A copy tool closes its file
 * while it runs; a killed one has it closed by the kernel as it exits,
 * with PF_EXITING set and the signal in its exit code, and rsync closes
 * its temp file in its exit cleanup, which starts by ignoring SIGUSR1
 * (rsync's cleanup.c; docs/files.md, "Copies that end early").
 * The parsers are pure, for the unit tests. */
#ifndef ESPFS_FS_CLOSER_H
#define ESPFS_FS_CLOSER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum closer_fate {
	CLOSER_UNKNOWN,   /* no pid (another pid namespace) or /proc unreadable */
	CLOSER_ALIVE,     /* close() by a running process */
	CLOSER_EXITED,    /* the kernel closes it as the process exits with status 0 */
	CLOSER_FAILED,    /* ... exits with another status */
	CLOSER_KILLED,    /* ... is killed by a signal */
	CLOSER_UNSEEN,    /* ... exits, and how is hidden from us: the kernel
			   * shows the exit code only to the process's owner
			   * (ptrace's read check), and 0 to anyone else */
};

struct closer {
	enum closer_fate fate;
	int sig;          /* CLOSER_KILLED: the signal */
	int status;       /* CLOSER_EXITED, CLOSER_FAILED: the exit status */
	uint64_t sigign;  /* signals it ignores: bit N-1 for signal N */
	long uid[3], gid[3]; /* real, effective, saved; -1 unknown */
	char comm[16];    /* its name, as the kernel keeps it */
};

/* /proc/PID/stat: comm, and the fate from the flags (field 9) and the
 * exit code (field 52, as waitpid reports it).  0 or -EINVAL. */
int closer_parse_stat(const char *buf, size_t len, struct closer *c);
/* /proc/PID/status: the SigIgn mask, the Uid and Gid lines.  0 or
 * -EINVAL. */
int closer_parse_status(const char *buf, size_t len, struct closer *c);
/* An exit with status 0 as /proc/PID/stat shows it to a reader with
 * effective uid/gid euid/egid: CLOSER_EXITED only if that reader may see
 * the exit code (root, or the process's own user and group), else
 * CLOSER_UNSEEN. */
void closer_judge_exit(struct closer *c, long euid, long egid);
/* All of it, for thread `tid`, as seen by this process; c->fate is
 * CLOSER_UNKNOWN when it cannot be read.  0 or -errno. */
int closer_read(pid_t tid, struct closer *c);
/* rsync in its exit cleanup: it closed its temp file because it stops
 * (a signal, a lost connection, an error), not because the file is
 * whole. */
bool closer_rsync_cleanup(const struct closer *c);

#endif
