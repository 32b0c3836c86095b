/* Stub flasher JSON (src/proto/stub.c): what esp_stub_load_file parses
 * after reading the file; base64 decoding on its own as well. */
#include <stdlib.h>
#include <string.h>
#include "espfs/loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	esp_stub st;
	char err[256];
	if (esp_stub_parse((const char *)data, size, "fuzz.json", &st, err, sizeof err) == 0) {
		if (!st.text || !st.text_len)
			__builtin_trap();
		esp_stub_free(&st);
	}
	uint8_t out[256];
	int n = esp_base64_decode((const char *)data, size, out, sizeof out);
	if (n > (int)sizeof out)
		__builtin_trap();
	return 0;
}
