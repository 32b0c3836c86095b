/* Telnet framing for RFC 2217: a byte-at-a-time decoder (data, IAC IAC,
 * IAC verb option, IAC SB ... IAC SE) and the escaping of data. */
#include <string.h>
#include "espfs/telnet.h"

enum { ST_DATA, ST_IAC, ST_VERB, ST_SB, ST_SB_IAC };

size_t tn_decode(struct tn_decoder *dc, const uint8_t *in, size_t n, uint8_t *out, size_t *out_n,
		 enum tn_event *ev)
{
	size_t i = 0, o = 0;
	*ev = TN_EV_NONE;
	while (i < n && *ev == TN_EV_NONE) {
		uint8_t b = in[i++];
		switch (dc->st) {
		case ST_DATA:
			if (b == TN_IAC)
				dc->st = ST_IAC;
			else
				out[o++] = b;
			break;
		case ST_IAC:
			if (b == TN_IAC) {          /* an escaped 0xFF data byte */
				out[o++] = b;
				dc->st = ST_DATA;
			} else if (b >= TN_WILL && b <= TN_DONT) {
				dc->verb = b;
				dc->st = ST_VERB;
			} else if (b == TN_SB) {
				dc->sb_len = 0;
				dc->sb_overflow = 0;
				dc->st = ST_SB;
			} else {                    /* NOP, GA, ...: nothing to do */
				dc->st = ST_DATA;
			}
			break;
		case ST_VERB:
			dc->opt = b;
			dc->st = ST_DATA;
			*ev = TN_EV_NEGOTIATE;
			break;
		case ST_SB:
			if (b == TN_IAC)
				dc->st = ST_SB_IAC;
			else if (dc->sb_len < TN_SB_MAX)
				dc->sb[dc->sb_len++] = b;
			else
				dc->sb_overflow = 1;
			break;
		case ST_SB_IAC:
			if (b == TN_SE) {
				dc->st = ST_DATA;
				*ev = TN_EV_SUBNEG;
			} else {
				/* IAC IAC inside: a 0xFF of the parameters; anything
				 * else is malformed, kept as data of the option */
				if (dc->sb_len < TN_SB_MAX)
					dc->sb[dc->sb_len++] = b;
				else
					dc->sb_overflow = 1;
				dc->st = ST_SB;
			}
			break;
		}
	}
	*out_n = o;
	return i;
}

size_t tn_escape(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		out[o++] = in[i];
		if (in[i] == TN_IAC)
			out[o++] = TN_IAC;
	}
	return o;
}

size_t tn_com_port_cmd(uint8_t cmd, const uint8_t *data, size_t len, uint8_t *out)
{
	size_t o = 0;
	out[o++] = TN_IAC;
	out[o++] = TN_SB;
	out[o++] = TN_OPT_COM_PORT;
	out[o++] = cmd;
	o += tn_escape(data, len, out + o);
	out[o++] = TN_IAC;
	out[o++] = TN_SE;
	return o;
}

uint8_t tn_answer(struct tn_options *o, uint8_t verb, uint8_t opt, bool ours, bool theirs)
{
	switch (verb) {
	case TN_DO:
		if (ours && o->will[opt])
			return 0;
		o->will[opt] = ours;
		return ours ? TN_WILL : TN_WONT;
	case TN_DONT:
		if (!o->will[opt])
			return 0;
		o->will[opt] = false;
		return TN_WONT;
	case TN_WILL:
		if (theirs && o->do_[opt])
			return 0;
		o->do_[opt] = theirs;
		return theirs ? TN_DO : TN_DONT;
	case TN_WONT:
		if (!o->do_[opt])
			return 0;
		o->do_[opt] = false;
		return TN_DONT;
	default:
		return 0;
	}
}
