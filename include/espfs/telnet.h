/* The Telnet byte layer RFC 2217 (serial port control over Telnet) runs
 * on: IAC escaping of data, option negotiation and subnegotiations.  Used
 * by the rfc2217:// client transport and by espsim's RFC 2217 server.
 * Facts from RFC 854/855 (Telnet, options) and RFC 2217 (COM-PORT-OPTION). */
#ifndef ESPFS_TELNET_H
#define ESPFS_TELNET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	TN_SE = 240, TN_SB = 250, TN_WILL = 251, TN_WONT = 252, TN_DO = 253, TN_DONT = 254,
	TN_IAC = 255,
	TN_OPT_BINARY = 0, TN_OPT_SGA = 3, TN_OPT_COM_PORT = 44,
};

/* RFC 2217 COM-PORT-OPTION commands, client to server; the server answers
 * each with the same command + 100 (RFC2217_SERVER_OFFSET). */
enum {
	RFC2217_SET_BAUDRATE = 1, RFC2217_SET_DATASIZE = 2, RFC2217_SET_PARITY = 3,
	RFC2217_SET_STOPSIZE = 4, RFC2217_SET_CONTROL = 5, RFC2217_NOTIFY_LINESTATE = 6,
	RFC2217_NOTIFY_MODEMSTATE = 7, RFC2217_FLOWCONTROL_SUSPEND = 8,
	RFC2217_FLOWCONTROL_RESUME = 9, RFC2217_SET_LINESTATE_MASK = 10,
	RFC2217_SET_MODEMSTATE_MASK = 11, RFC2217_PURGE_DATA = 12,
	RFC2217_SERVER_OFFSET = 100,
	/* SET-CONTROL values */
	RFC2217_CTL_NO_FLOW = 1, RFC2217_CTL_DTR_REQ = 7, RFC2217_CTL_DTR_ON = 8,
	RFC2217_CTL_DTR_OFF = 9, RFC2217_CTL_RTS_REQ = 10, RFC2217_CTL_RTS_ON = 11,
	RFC2217_CTL_RTS_OFF = 12,
	/* PURGE-DATA values */
	RFC2217_PURGE_RX = 1, RFC2217_PURGE_TX = 2, RFC2217_PURGE_BOTH = 3,
	/* SET-PARITY 1 = NONE, SET-STOPSIZE 1 = one stop bit */
	RFC2217_PARITY_NONE = 1, RFC2217_STOPSIZE_1 = 1,
};

#define TN_SB_MAX 64

enum tn_event { TN_EV_NONE, TN_EV_NEGOTIATE, TN_EV_SUBNEG };

struct tn_decoder {
	int st;
	uint8_t verb, opt;          /* the last negotiation (TN_EV_NEGOTIATE) */
	uint8_t sb[TN_SB_MAX];      /* the last subnegotiation (TN_EV_SUBNEG) */
	size_t sb_len;
	int sb_overflow;            /* longer than TN_SB_MAX: cut, still ended */
};

/* Decode in[0..n): data bytes go to out (at most n of them; out may be
 * in).  Stops right after a negotiation or a subnegotiation ends, so the
 * caller can act on it in stream order, and says which in *ev.  Returns
 * the number of input bytes consumed; *out_n the data bytes produced. */
size_t tn_decode(struct tn_decoder *dc, const uint8_t *in, size_t n, uint8_t *out, size_t *out_n,
		 enum tn_event *ev);

/* The options each end of a connection has agreed to use: will[opt] on
 * our side, do_[opt] on the peer's. */
struct tn_options {
	bool will[256], do_[256];
};

/* The answer to the peer's DO/DONT/WILL/WONT about opt, by RFC 854's rule
 * that keeps negotiation from looping (no answer when nothing changes):
 * agree where the policy says so (ours: we use opt on our side; theirs:
 * we let the peer use it), refuse otherwise.  Updates o; returns the verb
 * to send back, or 0 for none. */
uint8_t tn_answer(struct tn_options *o, uint8_t verb, uint8_t opt, bool ours, bool theirs);

/* Data with each 0xFF doubled; out must hold 2 * n bytes.  Returns its length. */
size_t tn_escape(const uint8_t *in, size_t n, uint8_t *out);

/* IAC SB COM-PORT-OPTION cmd <data, escaped> IAC SE into out (at least
 * 6 + 2 * len bytes).  Returns its length. */
size_t tn_com_port_cmd(uint8_t cmd, const uint8_t *data, size_t len, uint8_t *out);

#endif
