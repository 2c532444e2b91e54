/* s4q integer S4D classifier, exported by `experiments export --format c`.
 * C99, no malloc, no floating point, weights const. Bit-exact with s4q-runtime and the
 * qat::integer reference (same arithmetic, same half-to-even rounding). */
#ifndef S4Q_MODEL_H
#define S4Q_MODEL_H

#include <stdint.h>

#define S4Q_D_INPUT 1
#define S4Q_HEADS 32
#define S4Q_MODES 16
#define S4Q_CLASSES 10
#define S4Q_MAX_STEPS (UINT32_C(1) << 24)
/* Class names in class-index order (what s4q_classify's result indexes). */
#define S4Q_CLASS_NAMES { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }
/* Host side, not used by the integer model: the input code of a raw reading x of
* channel c is clamp(round(x / S4Q_INPUT_SCALE[c] + S4Q_INPUT_OFFSET[c]), S4Q_INPUT_QMIN,
* S4Q_INPUT_QMAX): the training split's standardisation folded into the input quantizer. */
#define S4Q_INPUT_SCALE { 3.921569e-3f }
#define S4Q_INPUT_OFFSET { -1.28e2f }
#define S4Q_INPUT_QMIN (-128)
#define S4Q_INPUT_QMAX (127)

#define S4Q_BLOCKS 3
/* One stream's state: state codes [block][H][M][re, im], activation and block-output
 * scratch, pooled sums, steps. */
typedef struct {
    int8_t x[2 * S4Q_BLOCKS * S4Q_HEADS * S4Q_MODES];
    int8_t g[S4Q_HEADS];
    int8_t io[S4Q_HEADS];
    int64_t sums[S4Q_HEADS];
    uint32_t t;
} s4q_state;

/* Zero state (x = 0, empty pool). */
void s4q_reset(s4q_state *s);
/* One time step of S4Q_D_INPUT input codes; 0, or -1 past S4Q_MAX_STEPS. */
int s4q_advance(s4q_state *s, const int8_t *input);
/* Logit codes of the sequence so far. */
void s4q_logits(const s4q_state *s, int8_t *out);
/* advance + logits. */
int s4q_step(s4q_state *s, const int8_t *input, int8_t *out);
/* Whole sequence of `steps` steps from the zero state; returns the predicted class. */
int s4q_classify(s4q_state *s, const int8_t *inputs, uint32_t steps, int8_t *out);

#endif
