/* Float-baseline harness (generated): classifies every golden sequence, counts agreement of
 * its class with the integer model's golden class, reports ticks like harness.c. */
#include "s4q_golden.h"

void s4q_out(const char *s);
uint32_t s4q_ticks(void);
uint32_t s4q_tick_calibration(void);
void s4q_exit(int code);

int s4qf_classify_any(const int8_t *codes, uint32_t steps);
int s4qf_burn_class(uint32_t i);

static void put_int(long v) {
    char buf[24];
    int i = 23;
    int neg = v < 0;
    unsigned long u = neg ? 0UL - (unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + (int)(u % 10)); u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    s4q_out(buf + i);
}

int main(void) {
    uint32_t i, same = 0, same_burn = 0, t0, t1, ticks = 0;
    for (i = 0; i < S4Q_GOLDEN_N; i++) {
        int k, best = 0, cls;
        t0 = s4q_ticks();
        cls = s4qf_classify_any(s4q_golden_inputs + s4q_golden_start[i], s4q_golden_steps[i]);
        t1 = s4q_ticks();
        ticks += t1 - t0;
        for (k = 1; k < (int)(sizeof s4q_golden_logits[0]); k++)
            if (s4q_golden_logits[i][k] > s4q_golden_logits[i][best]) best = k;
        if (cls == best) same++;
        if (cls == s4qf_burn_class(i)) same_burn++;
    }
    s4q_out("# ticks ");
    put_int((long)ticks);
    s4q_out(" steps ");
    put_int((long)S4Q_GOLDEN_TOTAL_STEPS);
    s4q_out(" calibration_ticks_per_2M_instructions ");
    put_int((long)s4q_tick_calibration());
    s4q_out("\n# float agrees with the integer class on ");
    put_int((long)same);
    s4q_out(" of ");
    put_int((long)S4Q_GOLDEN_N);
    s4q_out("\n# float C agrees with burn's float model on ");
    put_int((long)same_burn);
    s4q_out(" of ");
    put_int((long)S4Q_GOLDEN_N);
    s4q_out("\n");
    s4q_exit(0);
    return 0;
}
