/* Metadata latency probe for the bench's parallel case, in C so that what
 * it measures is espfs, not a runtime's garbage collector or timer slack
 * (the node sampler it replaces showed 15-20 ms spikes that a C loop
 * doing the same calls never saw).
 *
 *   latprobe INTERVAL_MS FILE...
 *
 * Prints "ready" once started; then every INTERVAL_MS, for each FILE:
 * stat + open + read + close, timed as one sample (CLOCK_MONOTONIC).
 * On SIGTERM or SIGINT prints
 *   {"samples":{"FILE":[ms,...],...},"errors":{"FILE":n,...}}
 * and exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct series {
	const char *path;
	double *ms;
	size_t n, cap;
	unsigned errors;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int probe(const char *path)
{
	struct stat st;
	char buf[4096];
	if (stat(path, &st) < 0)
		return -errno;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0)
		;
	int rc = r < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int add(struct series *s, double ms)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		double *p = realloc(s->ms, nc * sizeof *p);
		if (!p)
			return -1;
		s->ms = p;
		s->cap = nc;
	}
	s->ms[s->n++] = ms;
	return 0;
}

/* JSON string body: the paths are ours, but quote what JSON requires */
static void put_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: latprobe INTERVAL_MS FILE...\n");
		return 2;
	}
	long interval = strtol(argv[1], NULL, 10);
	if (interval <= 0)
		interval = 20;
	int nf = argc - 2;
	struct series *s = calloc((size_t)nf, sizeof *s);
	if (!s)
		return 1;
	for (int i = 0; i < nf; i++)
		s[i].path = argv[i + 2];

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	printf("ready\n");
	fflush(stdout);
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!stop) {
		for (int i = 0; i < nf; i++) {
			double t0 = now_ms();
			int rc = probe(s[i].path);
			double t1 = now_ms();
			if (rc < 0)
				s[i].errors++;
			else if (add(&s[i], t1 - t0) < 0)
				return 1;
		}
		/* a fixed cadence, not interval after each probe */
		next.tv_nsec += interval * 1000000L;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		double late = now_ms() - (next.tv_sec * 1e3 + next.tv_nsec / 1e6);
		if (late > 0)   /* overran (a slow probe): no burst to catch up */
			clock_gettime(CLOCK_MONOTONIC, &next);
		while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}

	printf("{\"samples\":{");
	for (int i = 0; i < nf; i++) {
		printf(i ? "," : "");
		put_str(s[i].path);
		printf(":[");
		for (size_t k = 0; k < s[i].n; k++)
			printf(k ? ",%.3f" : "%.3f", s[i].ms[k]);
		printf("]");
	}
	printf("},\"errors\":{");
	for (int i = 0; i < nf; i++) {
		printf(i ? "," : "");
		put_str(s[i].path);
		printf(":%u", s[i].errors);
	}
	printf("}}\n");
	fflush(stdout);
	for (int i = 0; i < nf; i++)
		free(s[i].ms);
	free(s);
	return 0;
}
