/* How a file's closer is doing, from /proc (src/fs/closer.c): the end of a
 * copy (a running process's close, an exit with status 0) against a copy
 * cut short (a killed writer, one that failed, rsync's exit cleanup).
 * Issue 14: only the first may flash what it wrote. */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include "closer.h"
#include "t.h"

/* A real line (cat, Linux 6.18) with flags (field 9) and exit code
 * (field 52) put in. */
static void stat_line(char *out, size_t cap, const char *comm, unsigned flags, int code)
{
	snprintf(out, cap,
		 "13995 (%s) R 13993 13993 3386 0 -1 %u 100 0 0 0 0 0 0 0 20 0 1 0 98510 "
		 "3133440 407 18446744073709551615 94716704002048 94716704021929 "
		 "140735000421824 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94716704037936 "
		 "94716704039552 94716900323328 140735000422855 140735000422875 "
		 "140735000422875 140735000424427 %d\n",
		 comm, flags, code);
}

static int parse(const char *comm, unsigned flags, int code, struct closer *c)
{
	char line[600];
	stat_line(line, sizeof line, comm, flags, code);
	memset(c, 0x55, sizeof *c);
	return closer_parse_stat(line, strlen(line), c);
}

static void fates(void)
{
	struct closer c;
	CHECK_EQ(parse("cp", 4194304, 0, &c), 0);
	CHECK_EQ(c.fate, CLOSER_ALIVE);
	CHECK_STR(c.comm, "cp");
	/* PF_EXITING (0x4), killed by SIGINT: the kernel closes cp's file */
	CHECK_EQ(parse("cp", 4194304 | 4, SIGINT, &c), 0);
	CHECK_EQ(c.fate, CLOSER_KILLED);
	CHECK_EQ(c.sig, SIGINT);
	CHECK_EQ(parse("cp", 4194304 | 4, SIGKILL, &c), 0);
	CHECK_EQ(c.fate, CLOSER_KILLED);
	CHECK_EQ(c.sig, SIGKILL);
	/* a core dump sets 0x80 beside the signal */
	CHECK_EQ(parse("cp", 4 | 0x200, SIGSEGV | 0x80, &c), 0);
	CHECK_EQ(c.fate, CLOSER_KILLED);
	CHECK_EQ(c.sig, SIGSEGV);
	/* pv never closes stdout: exit(0) is the end of its copy */
	CHECK_EQ(parse("pv", 4194304 | 4, 0, &c), 0);
	CHECK_EQ(c.fate, CLOSER_EXITED);
	CHECK_EQ(parse("pv", 4194304 | 4, 1 << 8, &c), 0);
	CHECK_EQ(c.fate, CLOSER_FAILED);
	CHECK_EQ(c.status, 1);
	/* an exit code left over while it still runs means nothing */
	CHECK_EQ(parse("cp", 4194304, 9, &c), 0);
	CHECK_EQ(c.fate, CLOSER_ALIVE);
}

static void comm_names(void)
{
	struct closer c;
	/* a name may hold blanks and ')': it ends at the last ')' */
	CHECK_EQ(parse("a) b 4 (c", 4, SIGTERM, &c), 0);
	CHECK_STR(c.comm, "a) b 4 (c");
	CHECK_EQ(c.fate, CLOSER_KILLED);
	CHECK_EQ(c.sig, SIGTERM);
	CHECK_EQ(parse("", 0, 0, &c), 0);
	CHECK_STR(c.comm, "");
	/* longer than the kernel keeps (15): cut, not overflowed */
	CHECK_EQ(parse("0123456789abcdefghij", 0, 0, &c), 0);
	CHECK_EQ(strlen(c.comm), sizeof c.comm - 1);
}

static void malformed(void)
{
	struct closer c;
	const char *bad[] = {
		"",
		"13995 cp R 1 2",
		"13995 (cp R 1 2 3 4 5 6 7 8 9",
		"13995 (cp) R 1 2 3 4 5 4 7",  /* no exit code (Linux before 3.5) */
		"13995 (cp) R 1 2 3 4 5 x4 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 "
		"27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 0",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_MSG(closer_parse_stat(bad[i], strlen(bad[i]), &c) == -EINVAL, "accepted \"%s\"",
			  bad[i]);
}

static void status(void)
{
	struct closer c = {0};
	const char *st = "Name:\trsync\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7248\n"
			 "Uid:\t1000\t1001\t1002\t1001\nGid:\t100\t101\t102\t101\n"
			 "SigQ:\t0/31457\nSigPnd:\t0000000000000000\n"
			 "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000a00\n"
			 "SigCgt:\t0000000000014007\n";
	CHECK_EQ(closer_parse_status(st, strlen(st), &c), 0);
	CHECK_EQ(c.sigign, 0xa00);  /* SIGUSR1 (10) and SIGUSR2 (12) */
	CHECK_EQ(c.uid[0], 1000);
	CHECK_EQ(c.uid[1], 1001);
	CHECK_EQ(c.uid[2], 1002);
	CHECK_EQ(c.gid[2], 102);
	const char *bad[] = {
		"Name:\tcp\nSigBlk:\t0000000000000000\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
		"Name:\tcp\nSigIgn:\tzz\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
		"Name:\tcp\nSigIgn:\t0\nUid:\t0\t0\nGid:\t0\t0\t0\t0\n",
		"Name:\tcp\nSigIgn:\t0\nUid:\t0\t-1\t0\t0\nGid:\t0\t0\t0\t0\n",
		"Name:\tcp\nSigIgn:\t0\nUid:\t0\t0\t0\t0\n",
		/* a name is not a key: "Uid" inside another line does not count */
		"Name:\tx\nUid:\t0\t0\t0\nSigIgn:\t0\nXGid:\t0\t0\t0\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_MSG(closer_parse_status(bad[i], strlen(bad[i]), &c) == -EINVAL,
			  "accepted case %zu", i);
}

/* The kernel shows an exit code only to root and to the process's own
 * user (a zombie of root's, killed by SIGINT, read as nobody: exit code
 * 0; as root: 2).  An exit with 0 that may be a hidden signal is not a
 * finished copy. */
static void exit_seen(void)
{
	struct closer c = {.fate = CLOSER_EXITED, .uid = {1000, 1000, 1000},
			   .gid = {100, 100, 100}};
	closer_judge_exit(&c, 1000, 100);
	CHECK_EQ(c.fate, CLOSER_EXITED);
	closer_judge_exit(&c, 0, 0);  /* root sees all */
	CHECK_EQ(c.fate, CLOSER_EXITED);
	closer_judge_exit(&c, 1001, 100);
	CHECK_EQ(c.fate, CLOSER_UNSEEN);
	c = (struct closer){.fate = CLOSER_EXITED, .uid = {1000, 0, 1000}, .gid = {100, 100, 100}};
	closer_judge_exit(&c, 1000, 100);  /* setuid: not its user's alone */
	CHECK_EQ(c.fate, CLOSER_UNSEEN);
	c = (struct closer){.fate = CLOSER_EXITED, .uid = {1000, 1000, 1000}, .gid = {100, 5, 100}};
	closer_judge_exit(&c, 1000, 100);
	CHECK_EQ(c.fate, CLOSER_UNSEEN);
	c = (struct closer){.fate = CLOSER_EXITED, .uid = {-1, -1, -1}, .gid = {-1, -1, -1}};
	closer_judge_exit(&c, 1000, 100);  /* status unread */
	CHECK_EQ(c.fate, CLOSER_UNSEEN);
	c = (struct closer){.fate = CLOSER_KILLED, .sig = SIGINT, .uid = {7, 7, 7}};
	closer_judge_exit(&c, 1000, 100);  /* a signal it could see stands */
	CHECK_EQ(c.fate, CLOSER_KILLED);
	c = (struct closer){.fate = CLOSER_ALIVE, .uid = {7, 7, 7}};
	closer_judge_exit(&c, 1000, 100);
	CHECK_EQ(c.fate, CLOSER_ALIVE);
}

/* rsync's exit cleanup starts with SIGUSR1 ignored; while it copies,
 * SIGUSR1 has a handler */
static void rsync_cleanup(void)
{
	struct closer c = {.fate = CLOSER_ALIVE, .sigign = 1ull << (SIGUSR1 - 1)};
	snprintf(c.comm, sizeof c.comm, "rsync");
	CHECK(closer_rsync_cleanup(&c));
	c.sigign = 0;
	CHECK(!closer_rsync_cleanup(&c));
	c.sigign = 1ull << (SIGUSR1 - 1);
	snprintf(c.comm, sizeof c.comm, "cp");
	CHECK(!closer_rsync_cleanup(&c));
	snprintf(c.comm, sizeof c.comm, "rsync");
	c.fate = CLOSER_KILLED;  /* killed outright: the kill says it */
	CHECK(!closer_rsync_cleanup(&c));
}

/* this very process, through /proc */
static void self(void)
{
	struct closer c;
	CHECK_EQ(closer_read(getpid(), &c), 0);
	CHECK_EQ(c.fate, CLOSER_ALIVE);
	CHECK_STR(c.comm, "test_closer");
	CHECK_EQ(c.uid[1], (long)geteuid());
	CHECK_EQ(c.gid[1], (long)getegid());
	CHECK(!(c.sigign & (1ull << (SIGUSR1 - 1))));
	signal(SIGUSR1, SIG_IGN);
	CHECK_EQ(closer_read(getpid(), &c), 0);
	CHECK(c.sigign & (1ull << (SIGUSR1 - 1)));
	signal(SIGUSR1, SIG_DFL);
	CHECK_EQ(closer_read(0, &c), -ESRCH);  /* no pid: another namespace */
	CHECK_EQ(c.fate, CLOSER_UNKNOWN);
}

int main(void)
{
	RUN(fates);
	RUN(comm_names);
	RUN(malformed);
	RUN(status);
	RUN(exit_seen);
	RUN(rsync_cleanup);
	RUN(self);
	return t_done();
}
