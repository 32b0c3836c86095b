/* A tiny TAP test harness: each TEST is one "ok"/"not ok" line; CHECKs
 * inside a test record failures and go on.  meson runs these with
 * protocol 'tap'. */
#ifndef ESPFS_T_H
#define ESPFS_T_H
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_num, t_failed_cases, t_case_failed;
static const char *t_skip_reason;

#define CHECK(cond) do { if (!(cond)) { t_case_failed = 1; \
	printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { t_case_failed = 1; \
	printf("#   %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); printf(__VA_ARGS__); printf("\n"); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { t_case_failed = 1; \
	printf("#   %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); } } while (0)
#define CHECK_MEM(a, b, n) do { if (memcmp((a), (b), (n)) != 0) { t_case_failed = 1; \
	printf("#   %s:%d: memory %s != %s (%zu bytes)\n", __FILE__, __LINE__, #a, #b, (size_t)(n)); } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); if (!_a || !_b || strcmp(_a, _b) != 0) { t_case_failed = 1; \
	printf("#   %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, _a ? _a : "(null)", _b ? _b : "(null)"); } } while (0)
/* Inside a test: mark it skipped with a reason and return. */
#define SKIP(reason) do { t_skip_reason = (reason); return; } while (0)

static inline void t_run(const char *name, void (*fn)(void))
{
	t_case_failed = 0;
	t_skip_reason = NULL;
	fflush(stdout);
	fn();
	t_num++;
	if (t_skip_reason)
		printf("ok %d - %s # SKIP %s\n", t_num, name, t_skip_reason);
	else if (t_case_failed) {
		printf("not ok %d - %s\n", t_num, name);
		t_failed_cases++;
	} else
		printf("ok %d - %s\n", t_num, name);
	fflush(stdout);
}
#define RUN(fn) t_run(#fn, fn)
static inline int t_done(void)
{
	printf("1..%d\n", t_num);
	return t_failed_cases ? 1 : 0;
}

/* Path of a file in ../shared/firmware, or NULL when shared/ is absent. */
static inline const char *t_shared_path(const char *rel, char *buf, size_t cap)
{
	const char *root = getenv("ESPFS_SHARED");
	if (!root)
		return NULL;
	snprintf(buf, cap, "%s/%s", root, rel);
	FILE *f = fopen(buf, "rb");
	if (!f)
		return NULL;
	fclose(f);
	return buf;
}

static inline uint8_t *t_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b)
		*len = (size_t)n;
	return b;
}
#endif
