/* Setting any baud rate on a tty fd (standard rates through termios,
 * others through termios2/BOTHER); kept apart because <asm/termbits.h>
 * and <termios.h> cannot share a file. */
#ifndef ESPFS_SERIAL_BAUD_H
#define ESPFS_SERIAL_BAUD_H
#include <stdint.h>
int esp_serial_set_baud_fd(int fd, uint32_t baud);
#endif
