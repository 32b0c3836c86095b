/* The parsers of values users write into device files (src/fs/parse.c)
 * and the display escaping of outside bytes (src/common/text.c).  Issue 11
 * items 1 and 12: each input here was once accepted and did damage. */
#include <errno.h>
#include "espfs/text.h"
#include "parse.h"
#include "t.h"

#define MB4 (4u << 20)

static int erase(const char *s, uint32_t fsize, uint32_t *off, uint32_t *n)
{
	char why[200] = "";
	*off = 0xdead;
	*n = 0xbeef;
	int rc = parse_erase(s, strlen(s), fsize, off, n, why, sizeof why);
	if (rc < 0)
		CHECK_MSG(why[0] != 0, "no reason for \"%s\"", s);
	return rc;
}

static void erase_valid(void)
{
	uint32_t o, n;
	CHECK_EQ(erase("1\n", MB4, &o, &n), 0);
	CHECK_EQ(o, 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(erase("all", MB4, &o, &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(erase("0x9000 0x6000\n", MB4, &o, &n), 0);
	CHECK_EQ(o, 0x9000);
	CHECK_EQ(n, 0x6000);
	CHECK_EQ(erase("4096\t8192", MB4, &o, &n), 0);
	CHECK_EQ(o, 4096);
	CHECK_EQ(n, 8192);
	CHECK_EQ(erase("0x3ff000 0x1000", MB4, &o, &n), 0);  /* the last sector */
	CHECK_EQ(erase("0 0x400000", MB4, &o, &n), 0);       /* all of it, as a region */
	CHECK_EQ(n, MB4);
	CHECK_EQ(erase("0X1000 0X1000\r\n", MB4, &o, &n), 0);
}

/* The three values from issue 11 item 1: each erased most or all of the
 * chip (strtoull takes a sign; o+l wrapped to 0 in 64 bits). */
static void erase_wrap_and_sign(void)
{
	uint32_t o, n;
	CHECK(erase("0x1000 -0x1000", MB4, &o, &n) < 0);
	CHECK(erase("0xFFFFFFFF00000000 0x100000000", MB4, &o, &n) < 0);
	CHECK(erase("0x10000 0xFFFFFFFFFFFF0000", MB4, &o, &n) < 0);
	CHECK_EQ(o, 0xdead);  /* nothing handed back */
	CHECK_EQ(n, 0xbeef);
	CHECK_EQ(erase("+0x1000 0x1000", MB4, &o, &n), -EINVAL);
	CHECK_EQ(erase("0x1000 +0x1000", MB4, &o, &n), -EINVAL);
	CHECK_EQ(erase("-1", MB4, &o, &n), -EINVAL);
	CHECK_EQ(erase("0x100000000 0x1000", MB4, &o, &n), -EINVAL);  /* past 32 bits */
	CHECK_EQ(erase("0x1000 0x100001000", MB4, &o, &n), -EINVAL);
	CHECK_EQ(erase("0xfffff000 0x1000", MB4, &o, &n), -EFBIG);
	CHECK_EQ(erase("0xfffff000 0x2000", 0, &o, &n), -EFBIG);       /* wraps 32 bits */
	CHECK_EQ(erase("0x3ff000 0x2000", MB4, &o, &n), -EFBIG);
	CHECK_EQ(erase("0x400000 0x1000", MB4, &o, &n), -EFBIG);
}

static void erase_garbage(void)
{
	uint32_t o, n;
	static const char *bad[] = {
		"", "\n", "0x1000", "0x1000 ", "0x1000 0x1000 0x1000", "0x1000 0x1000x",
		"0x1000 0x1000 ", "0x1000 0x1000\n\n", "0x1000,0x1000", "0x1000\n0x1000",
		" 0x1000 0x1000", "0x 0x1000", "0x1000 0x", "09 0x1000", "0x1g00 0x1000",
		"1 ", "11", "ALL", "0x1000 0x1000\0junk", "0x1000  0x0", "0 0",
		"0x1001 0x1000", "0x1000 0x1001", "0x800 0x800",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char why[200];
		size_t l = strlen(bad[i]);
		if (i == 18)
			l = 18;  /* with the embedded NUL and what follows it */
		int rc = parse_erase(bad[i], l, MB4, &o, &n, why, sizeof why);
		CHECK_MSG(rc == -EINVAL, "\"%s\" gave %d", bad[i], rc);
	}
}

static int wifi(const char *s, char *ssid, char *pass)
{
	char why[200] = "";
	int rc = parse_wifi(s, strlen(s), ssid, 33, pass, 65, why, sizeof why);
	if (rc < 0) {
		CHECK(why[0] != 0);
		CHECK_MSG(!strstr(why, "secret123"), "reason shows the password: %s", why);
	}
	return rc;
}

static void wifi_nul(void)
{
	char ssid[33], pass[65];
	/* provisioned "Ne" for "Ne\u0000t" */
	CHECK_EQ(wifi("{\"ssid\":\"Ne\\u0000t\",\"password\":\"secret123\"}", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("{\"ssid\":\"Net\",\"password\":\"sec\\u0000ret123\"}", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("{\"ssid\":\"Net\",\"pass\":\"sec\\u0000ret123\"}", ssid, pass), -EINVAL);
	for (size_t i = 0; i < sizeof pass; i++)
		CHECK(pass[i] == 0);  /* wiped on failure */
	/* an escaped backslash before "u0000" is a literal, not a NUL */
	CHECK_EQ(wifi("{\"ssid\":\"a\\\\u0000\",\"password\":\"secret123\"}", ssid, pass), 0);
	CHECK_STR(ssid, "a\\u0000");
	char raw[] = "Net:sec\0ret";
	char why[200];
	memset(pass, 'X', sizeof pass);
	CHECK_EQ(parse_wifi(raw, sizeof raw - 1, ssid, 33, pass, 65, why, sizeof why), -EINVAL);
	/* fuzz_attrs: a NUL byte returned before pass was wiped */
	for (size_t i = 0; i < sizeof pass; i++)
		CHECK(pass[i] == 0);
}

static void wifi_valid(void)
{
	char ssid[33], pass[65];
	CHECK_EQ(wifi("HomeNet:correct horse\n", ssid, pass), 0);
	CHECK_STR(ssid, "HomeNet");
	CHECK_STR(pass, "correct horse");
	CHECK_EQ(wifi("{\"ssid\":\"H\\u00e9\",\"password\":\"secret123\"}", ssid, pass), 0);
	CHECK_STR(ssid, "H\xc3\xa9");
	CHECK_EQ(wifi("{\"ssid\":\"Open\"}", ssid, pass), 0);
	CHECK_STR(pass, "");
	CHECK_EQ(wifi(":secret123", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("{\"ssid\":5}", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("{\"ssid\":\"123456789012345678901234567890123\"}", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("{", ssid, pass), -EINVAL);
	CHECK_EQ(wifi("no colon", ssid, pass), -EINVAL);
}

static int state(const char *s, size_t len, struct state_req *q, char *why)
{
	return parse_state_cmd(s, len, q, why, 200);
}

static void state_cmds(void)
{
	struct state_req q;
	char why[200];
	CHECK_EQ(state("reset\n", 6, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_RESET);
	CHECK_EQ(state("press-reset", 11, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_PRESS_RESET);
	CHECK_EQ(state("unplug-at 50\n", 13, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_UNPLUG_AT);
	CHECK_EQ(q.pct, 50);
	CHECK_EQ(state("unplug-at 0", 11, &q, why), 0);
	CHECK_EQ(q.pct, 0);
	CHECK_EQ(state("unplug-at 101", 13, &q, why), -EINVAL);
	CHECK_EQ(state("unplug-at 5x", 12, &q, why), -EINVAL);
	CHECK_EQ(state("unplug-at -1", 12, &q, why), -EINVAL);
	CHECK_EQ(state("unplug-at x", 11, &q, why), -EINVAL);
	CHECK_EQ(state("unplug-at ", 10, &q, why), -EINVAL);
	CHECK_EQ(state("corrupt 0.00003\n", 16, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_CORRUPT);
	CHECK(q.rate > 0.00002 && q.rate < 0.00004);
	CHECK_EQ(state("corrupt 0", 9, &q, why), 0);
	CHECK_EQ(state("corrupt 2", 9, &q, why), -EINVAL);
	CHECK_EQ(state("corrupt nan", 11, &q, why), -EINVAL);
	CHECK_EQ(state("corrupt 0.1x", 12, &q, why), -EINVAL);
	CHECK_EQ(state("ack\n", 4, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_ACK);
	CHECK_EQ(state("fault program-fail\n", 19, &q, why), 0);
	CHECK_EQ(q.cmd, STATE_CMD_FAULT);
	CHECK_STR(q.fault, "program-fail");
	CHECK_EQ(state("fault stallx", 12, &q, why), -EINVAL);
	CHECK_EQ(state("fault ", 6, &q, why), -EINVAL);
	/* a known word with more after it was taken (the rest was cut off) */
	CHECK_EQ(state("reset\nunplug", 12, &q, why), -EINVAL);
	CHECK_EQ(state("resetX", 6, &q, why), -EINVAL);
	CHECK_EQ(state("reset\0junk", 10, &q, why), -EINVAL);
	CHECK_EQ(state("", 0, &q, why), -EINVAL);
	/* raw bytes written to state are never echoed as they are */
	const char junk[] = "\x1b[2J\xff\xfe\n\x01zz";
	CHECK_EQ(state(junk, sizeof junk - 1, &q, why), -EINVAL);
	CHECK(!strchr(why, '\x1b'));
	CHECK(!strchr(why, '\n'));
	CHECK(!strchr(why, '\xff'));
	CHECK(strstr(why, "\\x1b[2J\\xff\\xfe\\n\\x01zz") != NULL);
}

static void names(void)
{
	char n[300];
	memset(n, 'a', sizeof n);
	n[255] = 0;
	CHECK_EQ(check_name(n), 0);
	n[255] = 'a';
	n[256] = 0;
	CHECK_EQ(check_name(n), -ENAMETOOLONG);
	n[299] = 0;
	CHECK_EQ(check_name(n), -ENAMETOOLONG);
	CHECK_EQ(check_name("."), -EINVAL);
	CHECK_EQ(check_name(".."), -EINVAL);
	CHECK_EQ(check_name(""), -EINVAL);
	CHECK_EQ(check_name("a/b"), -EINVAL);
	CHECK_EQ(check_name("...bin"), 0);
	uint32_t off = 0;
	CHECK(esp_name_forced_offset("data@0x300000.bin", &off));
	CHECK_EQ(off, 0x300000);
	CHECK(esp_name_forced_offset("a@b@4096.bin.part", &off));
	CHECK_EQ(off, 4096);
	CHECK(!esp_name_forced_offset("x@-0x1000.bin", &off));
	CHECK(!esp_name_forced_offset("x@ 0x1000.bin", &off));
	CHECK(!esp_name_forced_offset("x@+4096.bin", &off));
	CHECK(!esp_name_forced_offset("x@0x100000000.bin", &off));
	CHECK(!esp_name_forced_offset("x@0x.bin", &off));
	CHECK(!esp_name_forced_offset("x@0x1000.binx", &off));
	CHECK(!esp_name_forced_offset("x@09.bin", &off));
	CHECK(!esp_name_forced_offset("app.bin", &off));
}

static void escape(void)
{
	char out[64];
	CHECK_EQ(esp_text_escape(out, sizeof out, "Home Net", 8), 8);
	CHECK_STR(out, "Home Net");
	esp_text_escape(out, sizeof out, "a\nb\\c", 5);
	CHECK_STR(out, "a\\nb\\\\c");
	esp_text_escape(out, sizeof out, "caf\xc3\xa9", 5);  /* valid UTF-8 kept */
	CHECK_STR(out, "caf\xc3\xa9");
	esp_text_escape(out, sizeof out, "\xff\xc3(\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf", 12);
	CHECK_STR(out, "\\xff\\xc3(\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xc0\\xaf");
	/* never cut in the middle of an escape or a sequence */
	esp_text_escape(out, 6, "ab\xff", 3);
	CHECK_STR(out, "ab");
	esp_text_escape(out, 4, "a\xc3\xa9", 3);
	CHECK_STR(out, "a\xc3\xa9");
	esp_text_escape(out, 3, "a\xc3\xa9", 3);
	CHECK_STR(out, "a");
}

int main(void)
{
	RUN(erase_valid);
	RUN(erase_wrap_and_sign);
	RUN(erase_garbage);
	RUN(wifi_nul);
	RUN(wifi_valid);
	RUN(state_cmds);
	RUN(names);
	RUN(escape);
	return t_done();
}
