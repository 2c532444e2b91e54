/* Golden harness (generated): prints `logits | class` per sequence, then a summary. */
#include "s4q_model.h"
#include "s4q_golden.h"

void s4q_out(const char *s);   /* platform: write a string */
uint32_t s4q_ticks(void);      /* platform: a monotonic tick counter (0 if none) */
uint32_t s4q_tick_calibration(void); /* platform: ticks for 2,000,000 instructions (0 if none) */
void s4q_exit(int code);       /* platform: stop with a status */

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

static s4q_state state;

int main(void) {
    int8_t out[S4Q_CLASSES];
    uint32_t i, passed = 0, failed = 0, t0, t1, ticks = 0;
    int k;
    for (i = 0; i < S4Q_GOLDEN_N; i++) {
        int cls, same = 1;
        t0 = s4q_ticks();
        cls = s4q_classify(&state, s4q_golden_inputs + s4q_golden_start[i], s4q_golden_steps[i], out);
        t1 = s4q_ticks();
        ticks += t1 - t0;
        for (k = 0; k < S4Q_CLASSES; k++) {
            put_int(out[k]);
            s4q_out(" ");
            if (out[k] != s4q_golden_logits[i][k]) same = 0;
        }
        s4q_out("| ");
        put_int(cls);
        s4q_out("\n");
        if (same) passed++; else failed++;
    }
    s4q_out("# ticks ");
    put_int((long)ticks);
    s4q_out(" steps ");
    put_int((long)S4Q_GOLDEN_TOTAL_STEPS);
    s4q_out(" calibration_ticks_per_2M_instructions ");
    put_int((long)s4q_tick_calibration());
    s4q_out(" state_bytes ");
    put_int((long)sizeof(s4q_state));
    /* The streaming API: s4q_step (advance + logits of everything so far) every step of the
     * first sequence; its logits at the end equal the whole-sequence ones. */
    s4q_reset(&state);
    t0 = s4q_ticks();
    for (i = 0; i < s4q_golden_steps[0]; i++)
        s4q_step(&state, s4q_golden_inputs + (uint32_t)S4Q_D_INPUT * i, out);
    t1 = s4q_ticks();
    for (k = 0; k < S4Q_CLASSES; k++)
        if (out[k] != s4q_golden_logits[0][k]) failed++;
    s4q_out("\n# stream_ticks ");
    put_int((long)(t1 - t0));
    s4q_out(" stream_steps ");
    put_int((long)s4q_golden_steps[0]);
    s4q_out("\n# golden: ");
    put_int((long)passed);
    s4q_out(" passed, ");
    put_int((long)failed);
    s4q_out(" failed\n");
    s4q_exit(failed == 0 ? 0 : 1);
    return failed == 0 ? 0 : 1;
}
