/* Host platform for the golden harness: stdout, no tick counter. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

void s4q_out(const char *s) { fputs(s, stdout); }
uint32_t s4q_ticks(void) { return 0; }
uint32_t s4q_tick_calibration(void) { return 0; }
void s4q_exit(int code) { fflush(stdout); exit(code); }
