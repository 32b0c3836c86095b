/* Showing bytes that came from outside (an SSID, strings a device sent)
 * in a text file or a JSON string: always one line of valid UTF-8. */
#ifndef ESPFS_TEXT_H
#define ESPFS_TEXT_H
#include <stddef.h>

/* Copies in[0..inlen) to out as printable, valid UTF-8 on one line: valid
 * multi-byte UTF-8 is kept; a backslash becomes "\\", a control byte
 * "\n", "\r", "\t" or "\xHH", and every byte that is not part of a valid
 * UTF-8 sequence (overlong, surrogate, past U+10FFFF, cut short) "\xHH".
 * Plain printable ASCII is unchanged, so ordinary names read as typed.
 * Always NUL-terminates (cap > 0); stops before an escape that would not
 * fit.  Returns the length written. */
size_t esp_text_escape(char *out, size_t cap, const char *in, size_t inlen);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there
 * are not one. */
size_t esp_utf8_seq(const unsigned char *s, size_t n);

/* The offset a dropped file's name forces: "NAME@0x10000.bin" (also with
 * KIO's ".part" still on it).  The number is unsigned (0x hex, leading-0
 * octal or decimal), at most 32 bits, with no sign or blanks; false when
 * the name forces nothing. */
#include <stdbool.h>
#include <stdint.h>
bool esp_name_forced_offset(const char *name, uint32_t *off);

#endif
