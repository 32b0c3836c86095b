/* Remote serial ports over TCP: socket:// (raw bytes) and rfc2217://
 * (RFC 2217: Telnet with the COM-PORT-OPTION, so the baud rate, DTR/RTS
 * and purges reach the far port).  Every wait has a deadline: connect,
 * negotiation, reads (the caller's), writes (WRITE_TIMEOUT_MS); a link
 * that closes, resets or times out in the kernel (keepalive, user timeout)
 * reads as -ENODEV, like an unplugged port, and the device layer keeps the
 * folder and reconnects. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "espfs/log.h"
#include "espfs/net.h"
#include "espfs/telnet.h"

#define CONNECT_TIMEOUT_MS 5000
#define NEGOTIATE_TIMEOUT_MS 3000
#define WRITE_TIMEOUT_MS 10000
/* Kernel-side liveness: an idle link is probed after 5 s, given up after
 * 3 unanswered probes 2 s apart; unacknowledged data after 10 s. */
#define KEEPIDLE_S 5
#define KEEPINTVL_S 2
#define KEEPCNT 3
#define USER_TIMEOUT_MS 10000

struct net {
	esp_transport base;
	int fd;
	bool telnet;                 /* rfc2217:// */
	struct tn_decoder dc;
	bool com_port_ok;            /* the server said DO COM-PORT-OPTION */
	bool com_port_refused;
	unsigned acks;               /* server answers (cmd + 100) seen */
	uint8_t rx[8192];            /* decoded data not yet read */
	size_t rx_pos, rx_len;
	bool dead;                   /* the link dropped: every call -ENODEV */
	struct tn_options opts;      /* options we have agreed to */
};

static struct net *N(esp_transport *t) { return (struct net *)t; }

bool esp_net_is_url(const char *port)
{
	return !strncmp(port, "rfc2217://", 10) || !strncmp(port, "socket://", 9);
}

static int link_gone(struct net *n, int e, const char *what)
{
	if (!n->dead)
		LOGW("%s: remote link lost (%s: %s)", n->base.name, what, e ? strerror(e) : "closed by the server");
	n->dead = true;
	return -ENODEV;
}

static int send_all(struct net *n, const uint8_t *b, size_t len)
{
	size_t done = 0;
	if (n->dead)
		return -ENODEV;
	while (done < len) {
		ssize_t w = send(n->fd, b + done, len - done, MSG_NOSIGNAL);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = n->fd, .events = POLLOUT };
			int r = poll(&p, 1, WRITE_TIMEOUT_MS);
			if (r == 0)
				return link_gone(n, ETIMEDOUT, "write");
			if (r < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		return link_gone(n, w < 0 ? errno : 0, "write");
	}
	return (int)done;
}

/* Answer the server's option requests: binary both ways, SGA, and the
 * COM-PORT-OPTION on our side; refuse everything else once. */
static void negotiate(struct net *n, uint8_t verb, uint8_t opt)
{
	if (opt == TN_OPT_COM_PORT && verb == TN_DO)
		n->com_port_ok = true;
	if (opt == TN_OPT_COM_PORT && verb == TN_DONT)
		n->com_port_refused = true;
	bool ours = opt == TN_OPT_BINARY || opt == TN_OPT_SGA || opt == TN_OPT_COM_PORT;
	bool theirs = opt == TN_OPT_BINARY || opt == TN_OPT_SGA;
	uint8_t r[3] = { TN_IAC, tn_answer(&n->opts, verb, opt, ours, theirs), opt };
	if (r[1])
		send_all(n, r, 3);
}

/* Take what the socket has (waiting at most wait_ms for it) into rx.
 * 0 when something was received (maybe only Telnet commands), -ETIMEDOUT,
 * -ENODEV. */
static int pump(struct net *n, int wait_ms)
{
	uint8_t raw[4096];
	if (n->dead)
		return -ENODEV;
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	int r = poll(&p, 1, wait_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	if (r == 0)
		return -ETIMEDOUT;
	if (n->rx_pos == n->rx_len)
		n->rx_pos = n->rx_len = 0;
	size_t room = sizeof n->rx - n->rx_len;
	if (room < sizeof raw && n->rx_pos) {  /* make room at the end */
		memmove(n->rx, n->rx + n->rx_pos, n->rx_len - n->rx_pos);
		n->rx_len -= n->rx_pos;
		n->rx_pos = 0;
		room = sizeof n->rx - n->rx_len;
	}
	if (room > sizeof raw)
		room = sizeof raw;
	if (room == 0)
		return 0;
	ssize_t got = recv(n->fd, raw, room, 0);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0)
		return link_gone(n, got < 0 ? errno : 0, "read");
	if (!n->telnet) {
		memcpy(n->rx + n->rx_len, raw, (size_t)got);
		n->rx_len += (size_t)got;
		return 0;
	}
	size_t i = 0;
	while (i < (size_t)got) {
		size_t dn;
		enum tn_event ev;
		i += tn_decode(&n->dc, raw + i, (size_t)got - i, n->rx + n->rx_len, &dn, &ev);
		n->rx_len += dn;
		if (ev == TN_EV_NEGOTIATE)
			negotiate(n, n->dc.verb, n->dc.opt);
		else if (ev == TN_EV_SUBNEG && n->dc.sb_len >= 2 && n->dc.sb[0] == TN_OPT_COM_PORT &&
			 n->dc.sb[1] > RFC2217_SERVER_OFFSET)
			n->acks++;  /* an answer to a setting, or a modem/line-state notice */
	}
	return 0;
}

static int net_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms)
{
	struct net *n = N(t);
	uint64_t deadline = esp_now_us(esp_clock_real()) + (uint64_t)timeout_ms * 1000;
	for (;;) {
		if (n->rx_pos < n->rx_len) {
			size_t k = n->rx_len - n->rx_pos;
			if (k > len)
				k = len;
			memcpy(buf, n->rx + n->rx_pos, k);
			n->rx_pos += k;
			return (int)k;
		}
		uint64_t now = esp_now_us(esp_clock_real());
		if (now >= deadline && timeout_ms)
			return n->dead ? -ENODEV : -ETIMEDOUT;
		uint64_t left = deadline > now ? (deadline - now + 999) / 1000 : 0;
		int rc = pump(n, left > INT_MAX ? INT_MAX : (int)left);
		if (rc == -ETIMEDOUT && n->rx_pos == n->rx_len)
			return -ETIMEDOUT;
		if (rc < 0 && rc != -ETIMEDOUT)
			return rc;
	}
}

static int net_write(esp_transport *t, const uint8_t *buf, size_t len)
{
	struct net *n = N(t);
	if (!n->telnet)
		return send_all(n, buf, len) < 0 ? -ENODEV : (int)len;
	uint8_t esc[8192];
	for (size_t off = 0; off < len;) {
		size_t k = len - off > sizeof esc / 2 ? sizeof esc / 2 : len - off;
		size_t e = tn_escape(buf + off, k, esc);
		if (send_all(n, esc, e) < 0)
			return -ENODEV;
		off += k;
	}
	return (int)len;
}

static int com_port(struct net *n, uint8_t cmd, const uint8_t *data, size_t len)
{
	uint8_t b[6 + 2 * 8];
	return send_all(n, b, tn_com_port_cmd(cmd, data, len, b)) < 0 ? -ENODEV : 0;
}

static int net_flush_input(esp_transport *t)
{
	struct net *n = N(t);
	if (n->dead)
		return -ENODEV;
	if (n->telnet) {  /* what the server holds from the port */
		uint8_t v = RFC2217_PURGE_RX;
		if (com_port(n, RFC2217_PURGE_DATA, &v, 1) < 0)
			return -ENODEV;
	}
	/* and what has reached us */
	for (;;) {
		n->rx_pos = n->rx_len = 0;
		int rc = pump(n, 0);
		if (rc == -ETIMEDOUT)
			break;
		if (rc < 0)
			return rc;
	}
	n->rx_pos = n->rx_len = 0;
	return 0;
}

static int net_set_baud(esp_transport *t, uint32_t baud)
{
	struct net *n = N(t);
	if (n->dead)
		return -ENODEV;
	if (!n->telnet)  /* the server's port runs at its own rate */
		return baud == t->baud ? 0 : -EOPNOTSUPP;
	uint8_t v[4] = { (uint8_t)(baud >> 24), (uint8_t)(baud >> 16), (uint8_t)(baud >> 8), (uint8_t)baud };
	if (com_port(n, RFC2217_SET_BAUDRATE, v, 4) < 0)
		return -ENODEV;
	t->baud = baud;
	return 0;
}

static int net_set_lines(esp_transport *t, int dtr, int rts)
{
	struct net *n = N(t);
	if (!n->telnet)
		return -ENOTTY;
	if (n->dead)
		return -ENODEV;
	/* both commands in one segment: the server applies them together,
	 * as one TIOCMSET does locally (no EN/IO0 glitch in between) */
	uint8_t b[32];
	size_t k = 0;
	if (dtr >= 0) {
		uint8_t v = dtr ? RFC2217_CTL_DTR_ON : RFC2217_CTL_DTR_OFF;
		k += tn_com_port_cmd(RFC2217_SET_CONTROL, &v, 1, b + k);
	}
	if (rts >= 0) {
		uint8_t v = rts ? RFC2217_CTL_RTS_ON : RFC2217_CTL_RTS_OFF;
		k += tn_com_port_cmd(RFC2217_SET_CONTROL, &v, 1, b + k);
	}
	return k && send_all(n, b, k) < 0 ? -ENODEV : 0;
}

static void net_close(esp_transport *t)
{
	close(N(t)->fd);
	free(t);
}

static const struct esp_transport_ops net_ops = {
	.read = net_read, .write = net_write, .flush_input = net_flush_input,
	.set_baud = net_set_baud, .set_lines = net_set_lines, .close = net_close,
};

/* "HOST:PORT" or "[V6]:PORT", anything from '?' or '/' on ignored. */
static int parse_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *end = s + strcspn(s, "?/");
	const char *colon;
	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(end - s));
		if (!rb || rb[1] != ':')
			return -EINVAL;
		if ((size_t)(rb - s - 1) >= hcap)
			return -EINVAL;
		snprintf(host, hcap, "%.*s", (int)(rb - s - 1), s + 1);
		colon = rb + 1;
	} else {
		colon = NULL;
		for (const char *p = s; p < end; p++)
			if (*p == ':')
				colon = p;
		if (!colon || colon == s || (size_t)(colon - s) >= hcap)
			return -EINVAL;
		snprintf(host, hcap, "%.*s", (int)(colon - s), s);
	}
	size_t pl = (size_t)(end - colon - 1);
	if (pl == 0 || pl >= pcap)
		return -EINVAL;
	snprintf(port, pcap, "%.*s", (int)pl, colon + 1);
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	long v = atol(port);
	return v > 0 && v < 65536 ? 0 : -EINVAL;
}

static int connect_to(const char *host, const char *port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int rc = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			rc = fd;
			break;
		}
		if (errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int r;
			do
				r = poll(&p, 1, CONNECT_TIMEOUT_MS);
			while (r < 0 && errno == EINTR);
			int soerr = 0;
			socklen_t sl = sizeof soerr;
			if (r == 0)
				soerr = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
			if (soerr == 0) {
				rc = fd;
				break;
			}
			rc = -soerr;
		} else {
			rc = -errno;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (rc < 0)
		snprintf(err, errlen, "connect to %s:%s: %s", host, port, strerror(-rc));
	return rc;
}

static void tune(int fd)
{
	int one = 1, v;
	/* small frames go out at once: the loader waits for each answer */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	v = KEEPIDLE_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v);
	v = KEEPINTVL_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
	v = KEEPCNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
	v = USER_TIMEOUT_MS;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
}

/* Offer binary both ways and the COM-PORT-OPTION; wait for the server to
 * take the latter, then set 8N1 at the rate asked, no flow control. */
static int start_rfc2217(struct net *n, uint32_t baud, char *err, size_t errlen)
{
	static const uint8_t offer[] = {
		TN_IAC, TN_WILL, TN_OPT_BINARY, TN_IAC, TN_DO, TN_OPT_BINARY,
		TN_IAC, TN_WILL, TN_OPT_SGA, TN_IAC, TN_DO, TN_OPT_SGA,
		TN_IAC, TN_WILL, TN_OPT_COM_PORT,
	};
	n->opts.will[TN_OPT_BINARY] = n->opts.will[TN_OPT_SGA] = n->opts.will[TN_OPT_COM_PORT] = true;
	n->opts.do_[TN_OPT_BINARY] = n->opts.do_[TN_OPT_SGA] = true;
	if (send_all(n, offer, sizeof offer) < 0) {
		snprintf(err, errlen, "connection closed during Telnet negotiation");
		return -ENODEV;
	}
	uint64_t until = esp_now_us(esp_clock_real()) + NEGOTIATE_TIMEOUT_MS * 1000ull;
	while (!n->com_port_ok && !n->com_port_refused) {
		uint64_t now = esp_now_us(esp_clock_real());
		if (now >= until) {
			snprintf(err, errlen, "no RFC 2217 from the server (no answer to COM-PORT-OPTION "
				 "in %u ms; a raw port wants socket://)", NEGOTIATE_TIMEOUT_MS);
			return -EPROTO;
		}
		int rc = pump(n, (int)((until - now) / 1000) + 1);
		if (rc == -ENODEV) {
			snprintf(err, errlen, "connection closed during Telnet negotiation");
			return rc;
		}
	}
	if (n->com_port_refused) {
		snprintf(err, errlen, "the server refuses RFC 2217 (COM-PORT-OPTION)");
		return -EPROTO;
	}
	uint8_t v = 8;
	int rc = com_port(n, RFC2217_SET_DATASIZE, &v, 1);
	v = RFC2217_PARITY_NONE;
	rc = rc ? rc : com_port(n, RFC2217_SET_PARITY, &v, 1);
	v = RFC2217_STOPSIZE_1;
	rc = rc ? rc : com_port(n, RFC2217_SET_STOPSIZE, &v, 1);
	v = RFC2217_CTL_NO_FLOW;
	rc = rc ? rc : com_port(n, RFC2217_SET_CONTROL, &v, 1);
	rc = rc ? rc : net_set_baud(&n->base, baud);
	if (rc < 0) {
		snprintf(err, errlen, "connection closed while setting up the port");
		return rc;
	}
	/* the settings are answered in order: the baud answer (the last) tells
	 * the port is set up before the first data goes out */
	until = esp_now_us(esp_clock_real()) + NEGOTIATE_TIMEOUT_MS * 1000ull;
	while (n->acks < 5) {
		uint64_t now = esp_now_us(esp_clock_real());
		if (now >= until) {
			LOGW("%s: the RFC 2217 server answered %u of 5 port settings; going on",
			     n->base.name, n->acks);
			break;
		}
		if (pump(n, (int)((until - now) / 1000) + 1) == -ENODEV) {
			snprintf(err, errlen, "connection closed while setting up the port");
			return -ENODEV;
		}
	}
	n->rx_pos = n->rx_len = 0;  /* anything before the setup is noise */
	return 0;
}

int esp_net_open(const char *url, uint32_t baud, const esp_clock *clock, esp_transport **out,
		 char *err, size_t errlen)
{
	char host[256], port[8];
	bool telnet = !strncmp(url, "rfc2217://", 10);
	*out = NULL;
	if (!esp_net_is_url(url) ||
	    parse_hostport(url + (telnet ? 10 : 9), host, sizeof host, port, sizeof port) < 0) {
		snprintf(err, errlen, "%.200s: expected rfc2217://HOST:PORT or socket://HOST:PORT", url);
		return -EINVAL;
	}
	int fd = connect_to(host, port, err, errlen);
	if (fd < 0)
		return fd;
	tune(fd);
	struct net *n = calloc(1, sizeof *n);
	if (!n) {
		close(fd);
		return -ENOMEM;
	}
	n->fd = fd;
	n->telnet = telnet;
	n->base.ops = &net_ops;
	n->base.clock = clock ? clock : esp_clock_real();
	n->base.baud = 115200;
	if (!telnet)
		n->base.flags |= ESP_TR_NO_LINES;
	snprintf(n->base.name, sizeof n->base.name, "%.40s:%s", host, port);
	if (telnet) {
		int rc = start_rfc2217(n, baud ? baud : 115200, err, errlen);
		if (rc < 0) {
			net_close(&n->base);
			return rc;
		}
	}
	*out = &n->base;
	return 0;
}
