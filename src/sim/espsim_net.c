/* espsim's network front ends: the simulated device's UART behind a TCP
 * port on 127.0.0.1, one client at a time.
 *
 *   --rfc2217 PORT  an RFC 2217 server (Telnet COM-PORT-OPTION): the
 *                   client's baud rate goes into the timing model and its
 *                   DTR/RTS into the simulated auto-reset circuit, so a
 *                   client resets the chip into its loader and out again
 *                   over the network, as through ser2net or esptool's
 *                   esp_rfc2217_server on a real board
 *   --tcp PORT      raw bytes, no control (like ser2net's raw mode)
 *
 * DTR and RTS changes that arrive together (one segment, no data between)
 * are applied as one change, as one TIOCMSET on a local port would: a
 * glitch between them would reset or strap the chip by accident.  When the
 * device re-enumerates (an ESP32-S2's USB-OTG port switching between ROM
 * and app) or is unplugged, the client is dropped, as a server loses its
 * serial port; it may connect again to the port's new incarnation. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "espfs/clock.h"
#include "espfs/telnet.h"
#include "espsim_net.h"

struct client {
	int fd;
	bool telnet;
	struct tn_decoder dc;
	struct tn_options opts;     /* options agreed with the client */
	int dtr, rts;                /* pending line change (-1: none) */
	unsigned gen;                /* the port generation it connected to */
	uint8_t out[2 * 16384 + 64]; /* escaped device output not yet sent */
	size_t out_pos, out_len;
};

static int send_now(struct client *c, const uint8_t *b, size_t n)
{
	/* control answers are tiny: a blocking-ish loop is fine */
	size_t done = 0;
	while (done < n) {
		ssize_t w = send(c->fd, b + done, n - done, MSG_NOSIGNAL);
		if (w > 0) {
			done += (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = { c->fd, POLLOUT, 0 };
			if (poll(&p, 1, 1000) <= 0)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

static void apply_lines(sim_device *d, struct client *c)
{
	if (c->dtr < 0 && c->rts < 0)
		return;
	sim_set_lines(d, c->dtr, c->rts);
	c->dtr = c->rts = -1;
}

static void negotiate(struct client *c, uint8_t verb, uint8_t opt)
{
	bool ours = opt == TN_OPT_BINARY || opt == TN_OPT_SGA;
	bool theirs = opt == TN_OPT_BINARY || opt == TN_OPT_SGA || opt == TN_OPT_COM_PORT;
	uint8_t r[3] = { TN_IAC, tn_answer(&c->opts, verb, opt, ours, theirs), opt };
	if (r[1])
		send_now(c, r, 3);
}

/* One COM-PORT-OPTION command from the client; answered with cmd + 100. */
static void com_port(sim_device *d, struct client *c, const uint8_t *sb, size_t len, uint64_t now)
{
	if (len < 2 || sb[0] != TN_OPT_COM_PORT)
		return;
	uint8_t cmd = sb[1];
	const uint8_t *v = sb + 2;
	size_t vl = len - 2;
	switch (cmd) {
	case RFC2217_SET_BAUDRATE:
		if (vl == 4) {
			uint32_t b = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
			apply_lines(d, c);
			if (b) {  /* 0 asks for the current rate */
				sim_set_baud(d, b);
				fprintf(stderr, "espsim: baud %u\n", b);  /* tests watch it */
			}
		}
		break;
	case RFC2217_SET_CONTROL:
		if (vl == 1) {
			if (v[0] == RFC2217_CTL_DTR_ON || v[0] == RFC2217_CTL_DTR_OFF) {
				if (c->dtr >= 0)  /* a second change of the same line: in order */
					apply_lines(d, c);
				c->dtr = v[0] == RFC2217_CTL_DTR_ON;
			} else if (v[0] == RFC2217_CTL_RTS_ON || v[0] == RFC2217_CTL_RTS_OFF) {
				if (c->rts >= 0)
					apply_lines(d, c);
				c->rts = v[0] == RFC2217_CTL_RTS_ON;
			}
		}
		break;
	case RFC2217_PURGE_DATA:
		if (vl == 1 && (v[0] == RFC2217_PURGE_RX || v[0] == RFC2217_PURGE_BOTH)) {
			/* what the port received and the client has not got yet */
			uint8_t junk[4096];
			c->out_pos = c->out_len = 0;
			while (sim_host_read(d, junk, sizeof junk, now) > 0)
				;
		}
		break;
	default:
		break;  /* data size, parity, stop size, masks: 8N1 is all there is */
	}
	if (cmd >= RFC2217_SET_BAUDRATE && cmd <= RFC2217_PURGE_DATA) {
		uint8_t ans[6 + 2 * TN_SB_MAX];
		send_now(c, ans, tn_com_port_cmd((uint8_t)(cmd + RFC2217_SERVER_OFFSET), v, vl, ans));
	}
}

/* Bytes from the client: data to the device, commands in stream order.
 * -1 when the client has gone. */
static int from_client(sim_device *d, struct client *c, const esp_clock *clk)
{
	uint8_t in[4096], data[4096];
	ssize_t n = recv(c->fd, in, sizeof in, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	if (!c->telnet) {
		sim_host_write(d, in, (size_t)n, esp_now_us(clk));
		return 0;
	}
	size_t i = 0;
	while (i < (size_t)n) {
		size_t dn;
		enum tn_event ev;
		i += tn_decode(&c->dc, in + i, (size_t)n - i, data, &dn, &ev);
		if (dn) {
			apply_lines(d, c);
			sim_host_write(d, data, dn, esp_now_us(clk));
		}
		if (ev == TN_EV_NEGOTIATE)
			negotiate(c, c->dc.verb, c->dc.opt);
		else if (ev == TN_EV_SUBNEG)
			com_port(d, c, c->dc.sb, c->dc.sb_len, esp_now_us(clk));
	}
	apply_lines(d, c);
	return 0;
}

static void drop(sim_device *d, struct client *c, const char *why)
{
	fprintf(stderr, "espsim: client %s\n", why);
	close(c->fd);
	c->fd = -1;
	/* a closed port releases its lines (HUPCL): the chip runs */
	if (c->telnet)
		sim_set_lines(d, 0, 0);
}

static void start_client(sim_device *d, struct client *c, int fd, bool telnet)
{
	int one = 1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->telnet = telnet;
	c->dtr = c->rts = -1;
	c->gen = sim_port_generation(d);
	if (telnet) {
		static const uint8_t offer[] = {
			TN_IAC, TN_DO, TN_OPT_COM_PORT, TN_IAC, TN_WILL, TN_OPT_BINARY,
			TN_IAC, TN_DO, TN_OPT_BINARY, TN_IAC, TN_WILL, TN_OPT_SGA,
		};
		c->opts.do_[TN_OPT_COM_PORT] = c->opts.do_[TN_OPT_BINARY] = true;
		c->opts.will[TN_OPT_BINARY] = c->opts.will[TN_OPT_SGA] = true;
		send_now(c, offer, sizeof offer);
	}
	fprintf(stderr, "espsim: client connected\n");
}

int espsim_listen(int port, int *bound_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	*bound_port = ntohs(a.sin_port);
	return fd;
}

void espsim_serve_net(sim_device *d, int lfd, bool telnet, volatile sig_atomic_t *stop)
{
	static struct client c;
	static const char *const names[] = { "off", "rom", "stub", "app", "boot-loop" };
	const esp_clock *clk = esp_clock_real();
	sim_mode mode = sim_get_mode(d);
	unsigned boots = 0;
	c.fd = -1;
	while (!*stop) {
		uint64_t now = esp_now_us(clk);
		sim_mode m = sim_get_mode(d);
		if (m != mode) {
			/* on stderr for whoever watches the bench (tests do) */
			if (m == SIM_MODE_APP || m == SIM_MODE_ROM)
				boots++;
			fprintf(stderr, "espsim: mode %s (boot %u)\n", (unsigned)m < 5 ? names[m] : "?", boots);
			mode = m;
		}
		bool present = sim_usb_pid(d) != 0;
		if (c.fd >= 0 && (!present || sim_port_generation(d) != c.gen))
			drop(d, &c, present ? "dropped: the port re-enumerated" : "dropped: device unplugged");
		/* device output: to the client, or lost like on an unread UART */
		if (c.out_pos == c.out_len) {
			uint8_t raw[16384];
			size_t n = sim_host_read(d, raw, sizeof raw, now);
			c.out_pos = 0;
			c.out_len = 0;
			if (n && c.fd >= 0) {
				if (c.telnet)
					c.out_len = tn_escape(raw, n, c.out);
				else
					memcpy(c.out, raw, c.out_len = n);
			}
		}
		while (c.fd >= 0 && c.out_pos < c.out_len) {
			ssize_t w = send(c.fd, c.out + c.out_pos, c.out_len - c.out_pos, MSG_NOSIGNAL);
			if (w > 0)
				c.out_pos += (size_t)w;
			else if (w < 0 && (errno == EAGAIN || errno == EINTR))
				break;   /* the client is not reading: hold on to it */
			else {
				drop(d, &c, "gone (write failed)");
				break;
			}
		}
		uint64_t next = sim_next_event_us(d);
		int timeout = 10;
		if (c.fd >= 0 && c.out_pos < c.out_len)
			timeout = 2;
		else if (next != UINT64_MAX && next > now && next - now < 10000)
			timeout = (int)((next - now + 999) / 1000);
		else if (next != UINT64_MAX && next <= now)
			timeout = 0;
		struct pollfd p[2] = { { lfd, POLLIN, 0 }, { c.fd, POLLIN, 0 } };
		int r = poll(p, c.fd >= 0 ? 2 : 1, timeout);
		if (r <= 0)
			continue;
		if (c.fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    from_client(d, &c, clk) < 0)
			drop(d, &c, "disconnected");
		if (p[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			if (c.fd >= 0 || sim_usb_pid(d) == 0) {
				/* one client at a time; none while unplugged */
				fprintf(stderr, "espsim: connection refused (%s)\n",
					c.fd >= 0 ? "port in use" : "device unplugged");
				close(fd);
				continue;
			}
			start_client(d, &c, fd, telnet);
		}
	}
	if (c.fd >= 0)
		close(c.fd);
	close(lfd);
}
