/* The Telnet framing (IAC escaping, negotiation, subnegotiation, state
 * kept across arbitrary splits) and the rfc2217:// / socket:// client
 * transports against a scripted server on 127.0.0.1 in a thread: what
 * goes on the wire for baud, DTR/RTS and data, what the client makes of
 * escaped data, and a server that closes the link reading as -ENODEV. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "espfs/net.h"
#include "espfs/telnet.h"
#include "t.h"

/* Decode in pieces of `step` bytes; collect data and the last subneg. */
static size_t decode_split(const uint8_t *in, size_t n, size_t step, uint8_t *data, int *n_neg,
			   int *n_sb, uint8_t *sb, size_t *sb_len)
{
	struct tn_decoder dc;
	memset(&dc, 0, sizeof dc);
	size_t out = 0;
	*n_neg = *n_sb = 0;
	for (size_t off = 0; off < n;) {
		size_t piece = n - off < step ? n - off : step, used = 0;
		while (used < piece) {
			size_t dn;
			enum tn_event ev;
			used += tn_decode(&dc, in + off + used, piece - used, data + out, &dn, &ev);
			out += dn;
			if (ev == TN_EV_NEGOTIATE)
				(*n_neg)++;
			if (ev == TN_EV_SUBNEG) {
				(*n_sb)++;
				memcpy(sb, dc.sb, dc.sb_len);
				*sb_len = dc.sb_len;
			}
		}
		off += piece;
	}
	return out;
}

static void codec_round_trip_any_split(void)
{
	uint8_t data[300], wire[1200], back[1200], sb[TN_SB_MAX];
	for (int i = 0; i < 300; i++)
		data[i] = (uint8_t)(i % 3 ? 0xFF : i % 200);  /* two of three bytes are IAC */
	size_t k = 0;
	wire[k++] = TN_IAC; wire[k++] = TN_WILL; wire[k++] = TN_OPT_BINARY;
	k += tn_escape(data, 150, wire + k);
	/* SET-BAUDRATE 0x00FFFFFF: the parameter's 0xFF bytes are doubled */
	uint8_t baud[4] = { 0x00, 0xFF, 0xFF, 0xFF };
	k += tn_com_port_cmd(RFC2217_SET_BAUDRATE, baud, 4, wire + k);
	k += tn_escape(data + 150, 150, wire + k);
	CHECK_EQ(k, 3 + 300 + 200 + 4 + 4 + 3 + 2);  /* 200 doubled bytes; the command: 3 doubled */
	for (size_t step = 1; step <= k; step = step < 8 ? step + 1 : step * 3) {
		int neg, nsb;
		size_t sbl = 0;
		size_t got = decode_split(wire, k, step, back, &neg, &nsb, sb, &sbl);
		CHECK_EQ(got, 300);
		CHECK_MEM(back, data, 300);
		CHECK_EQ(neg, 1);
		CHECK_EQ(nsb, 1);
		CHECK_EQ(sbl, 6);
		uint8_t want[6] = { TN_OPT_COM_PORT, RFC2217_SET_BAUDRATE, 0x00, 0xFF, 0xFF, 0xFF };
		CHECK_MEM(sb, want, 6);
	}
}

/* ---- a scripted server ---- */
struct srv {
	int lfd, port;
	bool telnet;
	uint8_t got[4096];           /* everything the client sent */
	size_t got_len;
	pthread_mutex_t lock;
	int cfd;
};

/* Option negotiation, as both ends (net.c, espsim_net.c) answer: agree
 * by policy, refuse the rest, never answer what changes nothing (RFC 854:
 * otherwise two ends could acknowledge each other forever). */
static void negotiation_answers(void)
{
	struct tn_options o;
	memset(&o, 0, sizeof o);
	CHECK_EQ(tn_answer(&o, TN_DO, TN_OPT_BINARY, true, true), TN_WILL);
	CHECK(o.will[TN_OPT_BINARY]);
	CHECK_EQ(tn_answer(&o, TN_DO, TN_OPT_BINARY, true, true), 0);      /* already */
	CHECK_EQ(tn_answer(&o, TN_DONT, TN_OPT_BINARY, true, true), TN_WONT);
	CHECK_EQ(tn_answer(&o, TN_DONT, TN_OPT_BINARY, true, true), 0);
	CHECK_EQ(tn_answer(&o, TN_DO, 1 /* ECHO */, false, false), TN_WONT); /* refused */
	CHECK_EQ(tn_answer(&o, TN_WILL, TN_OPT_COM_PORT, true, false), TN_DONT);
	CHECK_EQ(tn_answer(&o, TN_WILL, TN_OPT_SGA, true, true), TN_DO);
	CHECK(o.do_[TN_OPT_SGA]);
	CHECK_EQ(tn_answer(&o, TN_WILL, TN_OPT_SGA, true, true), 0);
	CHECK_EQ(tn_answer(&o, TN_WONT, TN_OPT_SGA, true, true), TN_DONT);
	CHECK_EQ(tn_answer(&o, TN_WONT, TN_OPT_SGA, true, true), 0);
	CHECK_EQ(tn_answer(&o, TN_SB, TN_OPT_SGA, true, true), 0);          /* not a verb */
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	s->cfd = fd;
	if (fd < 0)
		return NULL;
	if (s->telnet) {
		/* take the COM-PORT-OPTION, answer five settings */
		uint8_t hello[] = { TN_IAC, TN_DO, TN_OPT_COM_PORT, TN_IAC, TN_WILL, TN_OPT_BINARY };
		send(fd, hello, sizeof hello, MSG_NOSIGNAL);
		uint8_t ack[8];
		for (int c = 1; c <= 5; c++) {
			uint8_t v = 0;
			send(fd, ack, tn_com_port_cmd((uint8_t)(100 + c), &v, 1, ack), MSG_NOSIGNAL);
		}
	}
	for (;;) {
		uint8_t b[1024];
		ssize_t n = recv(fd, b, sizeof b, 0);
		if (n <= 0)
			break;
		pthread_mutex_lock(&s->lock);
		if (s->got_len + (size_t)n <= sizeof s->got) {
			memcpy(s->got + s->got_len, b, (size_t)n);
			s->got_len += (size_t)n;
		}
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int srv_start(struct srv *s, bool telnet, pthread_t *th)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
	s->telnet = telnet;
	s->cfd = -1;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(s->lfd, 1) < 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	s->port = ntohs(a.sin_port);
	return pthread_create(th, NULL, srv_main, s);
}

static bool srv_has(struct srv *s, const uint8_t *pat, size_t n)
{
	for (int tries = 0; tries < 200; tries++) {
		pthread_mutex_lock(&s->lock);
		bool found = false;
		for (size_t i = 0; !found && i + n <= s->got_len; i++)
			found = memcmp(s->got + i, pat, n) == 0;
		pthread_mutex_unlock(&s->lock);
		if (found)
			return true;
		usleep(10000);
	}
	return false;
}

static void rfc2217_client_on_the_wire(void)
{
	struct srv s;
	pthread_t th;
	char url[64], err[200] = "";
	esp_transport *t = NULL;
	if (srv_start(&s, true, &th) != 0)
		SKIP("no loopback socket");
	snprintf(url, sizeof url, "rfc2217://127.0.0.1:%d", s.port);
	CHECK_EQ(esp_net_open(url, 115200, NULL, &t, err, sizeof err), 0);
	if (!t) {
		printf("# %s\n", err);
		return;
	}
	CHECK(!(t->flags & ESP_TR_NO_LINES));
	uint8_t offer[] = { TN_IAC, TN_WILL, TN_OPT_COM_PORT };
	CHECK(srv_has(&s, offer, 3));
	uint8_t b115200[] = { TN_IAC, TN_SB, TN_OPT_COM_PORT, 1, 0x00, 0x01, 0xC2, 0x00, TN_IAC, TN_SE };
	CHECK(srv_has(&s, b115200, sizeof b115200));
	/* 921600 = 0x000E1000 */
	CHECK_EQ(esp_tr_set_baud(t, 921600), 0);
	uint8_t b921600[] = { TN_IAC, TN_SB, TN_OPT_COM_PORT, 1, 0x00, 0x0E, 0x10, 0x00, TN_IAC, TN_SE };
	CHECK(srv_has(&s, b921600, sizeof b921600));
	CHECK_EQ(t->baud, 921600);
	/* EN low (RTS on), IO0 free (DTR off): both in one go */
	CHECK_EQ(esp_tr_set_lines(t, 0, 1), 0);
	uint8_t lines[] = { TN_IAC, TN_SB, TN_OPT_COM_PORT, 5, 9, TN_IAC, TN_SE,
			    TN_IAC, TN_SB, TN_OPT_COM_PORT, 5, 11, TN_IAC, TN_SE };
	CHECK(srv_has(&s, lines, sizeof lines));
	CHECK_EQ(esp_tr_flush_input(t), 0);
	uint8_t purge[] = { TN_IAC, TN_SB, TN_OPT_COM_PORT, 12, 1, TN_IAC, TN_SE };
	CHECK(srv_has(&s, purge, sizeof purge));
	/* data: 0xFF doubled on the way out */
	uint8_t d[] = { 0xC0, 0xFF, 0x00, 0xFF, 0xC0 };
	CHECK_EQ(esp_tr_write(t, d, sizeof d), (int)sizeof d);
	uint8_t dw[] = { 0xC0, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0xC0 };
	CHECK(srv_has(&s, dw, sizeof dw));
	/* and undoubled on the way in, with a notice in between */
	uint8_t in[] = { 0x11, 0xFF, 0xFF, TN_IAC, TN_SB, TN_OPT_COM_PORT, 107, 0x30, TN_IAC, TN_SE, 0x22 };
	send(s.cfd, in, sizeof in, MSG_NOSIGNAL);
	uint8_t r[16];
	size_t got = 0;
	for (int i = 0; i < 10 && got < 3; i++) {
		int n = esp_tr_read(t, r + got, sizeof r - got, 1000);
		if (n > 0)
			got += (size_t)n;
	}
	CHECK_EQ(got, 3);
	uint8_t want[] = { 0x11, 0xFF, 0x22 };
	CHECK_MEM(r, want, 3);
	/* the server goes away: the port is gone, not slow */
	shutdown(s.cfd, SHUT_RDWR);
	int rc = esp_tr_read(t, r, sizeof r, 2000);
	CHECK_EQ(rc, -ENODEV);
	CHECK_EQ(esp_tr_set_lines(t, 1, 1), -ENODEV);
	esp_tr_close(t);
	pthread_join(th, NULL);
	close(s.cfd);
	close(s.lfd);
}

static void socket_client_is_raw(void)
{
	struct srv s;
	pthread_t th;
	char url[64], err[200] = "";
	esp_transport *t = NULL;
	if (srv_start(&s, false, &th) != 0)
		SKIP("no loopback socket");
	snprintf(url, sizeof url, "socket://127.0.0.1:%d", s.port);
	CHECK_EQ(esp_net_open(url, 115200, NULL, &t, err, sizeof err), 0);
	if (!t)
		return;
	CHECK(t->flags & ESP_TR_NO_LINES);
	CHECK_EQ(esp_tr_set_lines(t, 0, 1), -ENOTTY);
	CHECK_EQ(esp_tr_set_baud(t, 115200), 0);
	CHECK(esp_tr_set_baud(t, 921600) < 0);   /* the server's rate is fixed */
	uint8_t d[] = { 0xC0, 0xFF, 0xC0 };
	CHECK_EQ(esp_tr_write(t, d, 3), 3);
	CHECK(srv_has(&s, d, 3));
	pthread_mutex_lock(&s.lock);
	CHECK_EQ(s.got_len, 3);                  /* nothing else: no Telnet */
	pthread_mutex_unlock(&s.lock);
	esp_tr_close(t);
	pthread_join(th, NULL);
	close(s.cfd);
	close(s.lfd);
}

static void bad_urls_and_refused(void)
{
	char err[200];
	esp_transport *t;
	CHECK_EQ(esp_net_open("rfc2217://nohost", 0, NULL, &t, err, sizeof err), -EINVAL);
	CHECK_EQ(esp_net_open("rfc2217://127.0.0.1:99999", 0, NULL, &t, err, sizeof err), -EINVAL);
	CHECK_EQ(esp_net_open("socket://127.0.0.1:x", 0, NULL, &t, err, sizeof err), -EINVAL);
	CHECK(esp_net_is_url("rfc2217://h:1") && esp_net_is_url("socket://h:1") && !esp_net_is_url("/dev/ttyUSB0"));
	/* a port nobody listens on (bound, not listening) */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	bind(fd, (struct sockaddr *)&a, sizeof a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	char url[64];
	snprintf(url, sizeof url, "rfc2217://127.0.0.1:%d", ntohs(a.sin_port));
	CHECK_EQ(esp_net_open(url, 0, NULL, &t, err, sizeof err), -ECONNREFUSED);
	CHECK(strstr(err, "refused") != NULL);
	close(fd);
}

int main(void)
{
	RUN(codec_round_trip_any_split);
	RUN(negotiation_answers);
	RUN(rfc2217_client_on_the_wire);
	RUN(socket_client_is_raw);
	RUN(bad_urls_and_refused);
	return t_done();
}
