#include <errno.h>
#include "t.h"
#include "espfs/slip.h"
#include "espfs/chip.h"

/* The 46-byte SYNC frame every flasher sends first (REFCLIENTS.md). */
static const uint8_t sync_frame[46] = {
	0xc0, 0x00, 0x08, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x07, 0x12, 0x20,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
	0xc0 };

static void sync_frame_encodes_exactly(void)
{
	uint8_t payload[44] = { 0x00, 0x08, 0x24, 0x00, 0, 0, 0, 0, 0x07, 0x07, 0x12, 0x20 };
	memset(payload + 12, 0x55, 32);
	uint8_t out[SLIP_MAX_ENCODED(44)];
	size_t n = slip_encode(payload, 44, out);
	CHECK_EQ(n, 46);
	CHECK_MEM(out, sync_frame, 46);
}

static void escapes_round_trip(void)
{
	uint8_t in[] = { 0xc0, 0x01, 0xdb, 0xdb, 0xc0, 0xdc, 0xdd };
	uint8_t enc[SLIP_MAX_ENCODED(sizeof in)];
	size_t n = slip_encode(in, sizeof in, enc);
	const uint8_t want[] = { 0xc0, 0xdb, 0xdc, 0x01, 0xdb, 0xdd, 0xdb, 0xdd, 0xdb, 0xdc, 0xdc, 0xdd, 0xc0 };
	CHECK_EQ(n, sizeof want);
	CHECK_MEM(enc, want, sizeof want);
	uint8_t buf[64];
	slip_decoder d;
	slip_decoder_init(&d, buf, sizeof buf);
	size_t used = 0;
	CHECK_EQ(slip_decoder_feed(&d, enc, n, &used), 1);
	CHECK_EQ(used, n);
	CHECK_EQ(d.len, sizeof in);
	CHECK_MEM(d.buf, in, sizeof in);
}

static void noise_and_empty_frames_are_skipped(void)
{
	/* boot log text, an empty frame, then the ROM's SYNC reply */
	const char *log = "ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n";
	const uint8_t reply[] = { 0xc0, 0xc0, 0x01, 0x08, 0x04, 0x00, 0x07, 0x07, 0x12, 0x20, 0x00, 0x00, 0x00, 0x00, 0xc0 };
	uint8_t stream[512];
	size_t L = strlen(log);
	memcpy(stream, log, L);
	memcpy(stream + L, reply, sizeof reply);
	uint8_t buf[64];
	slip_decoder d;
	slip_decoder_init(&d, buf, sizeof buf);
	size_t used = 0, pos = 0;
	int got = 0;
	/* feed one byte at a time to prove the decoder is incremental */
	while (pos < L + sizeof reply && !got) {
		got = slip_decoder_feed(&d, stream + pos, 1, &used);
		pos += used;
	}
	CHECK_EQ(got, 1);
	CHECK_EQ(d.len, 12);
	CHECK_EQ(d.buf[0], 0x01);
	CHECK_EQ(d.buf[1], 0x08);
	CHECK(strstr(d.text, "waiting for download") != NULL);
}

static void bad_escape_drops_frame_then_resyncs(void)
{
	const uint8_t s[] = { 0xc0, 0x01, 0xdb, 0x41, 0x02, 0xc0, 0x01, 0x0a, 0xc0 };
	uint8_t buf[64];
	slip_decoder d;
	slip_decoder_init(&d, buf, sizeof buf);
	size_t used = 0;
	CHECK_EQ(slip_decoder_feed(&d, s, sizeof s, &used), 1);
	CHECK_EQ(used, sizeof s);
	CHECK_EQ(d.len, 2);
	CHECK_EQ(d.buf[1], 0x0a);
}

static void oversize_frame_is_dropped(void)
{
	uint8_t s[40];
	s[0] = 0xc0;
	memset(s + 1, 0x11, 30);
	s[31] = 0xc0; s[32] = 0x22; s[33] = 0xc0;
	uint8_t buf[8];
	slip_decoder d;
	slip_decoder_init(&d, buf, sizeof buf);
	size_t used = 0;
	CHECK_EQ(slip_decoder_feed(&d, s, 34, &used), 1);
	CHECK_EQ(d.len, 1);
	CHECK_EQ(d.buf[0], 0x22);
}

static void chip_table_lookups(void)
{
	CHECK_EQ(esp_chip_by_magic(0x00F01D83)->id, ESP_CHIP_ESP32);
	CHECK_EQ(esp_chip_by_magic(0x1B31506F)->id, ESP_CHIP_ESP32C3);
	CHECK_EQ(esp_chip_by_magic(0xFFF0C101)->id, ESP_CHIP_ESP8266);
	CHECK(esp_chip_by_magic(0x12345678) == NULL);
	CHECK_EQ(esp_chip_by_image_id(9)->id, ESP_CHIP_ESP32S3);
	CHECK(esp_chip_by_image_id(-1) == NULL);
	CHECK_EQ(esp_chip_by_name("ESP32-S2")->id, ESP_CHIP_ESP32S2);
	CHECK_EQ(esp_chip_by_name("esp32c6")->id, ESP_CHIP_ESP32C6);
	CHECK(esp_chip_by_name("esp33") == NULL);
	CHECK_EQ(esp_flash_size_from_jedec(0x1640EF), 4u << 20);  /* W25Q32 */
	CHECK_EQ(esp_flash_size_from_jedec(0x1840C8), 16u << 20); /* GD25Q128 */
	CHECK_EQ(esp_flash_size_from_jedec(0xFFFFFF), 0);
	CHECK_EQ(esp_flash_size_from_jedec(0x00871F), 4u << 20);  /* Adesto: size id 7 */
}

int main(void)
{
	RUN(sync_frame_encodes_exactly);
	RUN(escapes_round_trip);
	RUN(noise_and_empty_frames_are_skipped);
	RUN(bad_escape_drops_frame_then_resyncs);
	RUN(oversize_frame_is_dropped);
	RUN(chip_table_lookups);
	return t_done();
}
