// SPDX-License-Identifier: GPL-2.0
/*
 * Wait until everything written to the console has left the UART (tcdrain: TCSBRK 1 ->
 * tty_wait_until_sent -> uart_wait_until_sent). Bochs emulates UART timing, so without this
 * the last lines are lost when init powers the machine off; a sleep would cost minutes of
 * emulated idle time instead.
 */
#include <termios.h>
#include <unistd.h>

int main(void)
{
	return tcdrain(STDOUT_FILENO) ? 1 : 0;
}
