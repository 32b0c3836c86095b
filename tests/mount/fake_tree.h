/* A fake file tree (/sys, /proc) under a temp dir `root`, for the tests
 * of code that reads the kernel's files (test_brltty.c, test_usb_path.c). */
#ifndef ESPFS_TEST_FAKE_TREE_H
#define ESPFS_TEST_FAKE_TREE_H
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char root[PATH_MAX];

/* mkdir -p root/rel */
static inline void mkdirs(const char *rel)
{
	char p[PATH_MAX * 2];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(p, 0755);
		*s = '/';
	}
	mkdir(p, 0755);
}

/* root/rel holds text */
static inline void put(const char *rel, const char *text)
{
	char p[PATH_MAX * 2];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

#endif
