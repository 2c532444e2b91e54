/* Cortex-M platform for the golden harness (QEMU mps2-an386 Cortex-M4, microbit Cortex-M0):
 * vector table, reset handler (FPU on where there is one), semihosting output and exit,
 * SysTick as the tick counter. No libc needed. */
#include <stdint.h>

/* GCC assembles Thumb-1 inline asm in divided syntax; these blocks are written unified. */
#if defined(__ARM_ARCH_6M__)
#define S4Q_ASM_BEGIN ".syntax unified\n\t"
#define S4Q_ASM_END "\n\t.syntax divided"
#else
#define S4Q_ASM_BEGIN ""
#define S4Q_ASM_END ""
#endif

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void s4q_exit(int code);

static volatile uint32_t systick_wraps;

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 (the FPU) before any float instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    s4q_exit(main());
}

void Default_Handler(void) { for (;;) {} }
void SysTick_Handler(void) { systick_wraps++; }

__attribute__((section(".isr_vector"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};

static int semihost(int op, const void *arg) {
    int result;
    __asm__ volatile(S4Q_ASM_BEGIN "mov r0, %1\n\tmov r1, %2\n\tbkpt 0xAB\n\tmov %0, r0" S4Q_ASM_END
                     : "=r"(result) : "r"(op), "r"(arg) : "r0", "r1", "memory");
    return result;
}

void s4q_out(const char *s) { semihost(0x04, s); }

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

/* SysTick on the processor clock, 24-bit, counting down; wraps counted by the interrupt. */
uint32_t s4q_ticks(void) {
    uint32_t w, v;
    if (!(SYST_CSR & 1u)) {
        SYST_RVR = 0xFFFFFFu;
        SYST_CVR = 0;
        SYST_CSR = 7u;
        /* The write above cleared the counter; until it reloads, a read says 0, which would
         * time the first interval from 2^24 - 1 and make it negative. */
        while (SYST_CVR == 0u) {}
    }
    uint32_t pending;
    do {
        w = systick_wraps;
        v = SYST_CVR;
        pending = SCB_ICSR & (1u << 26); /* PENDSTSET: a wrap whose handler has not run yet */
    } while (w != systick_wraps);
    /* Counted from the reload value again but not yet in systick_wraps: without this a read
     * in that window goes back 2^24 ticks (short sequences read the clock often enough to
     * hit it). */
    if (pending && v > 0x800000u) w++;
    return w * 0x1000000u + (0xFFFFFFu - v);
}

/* Ticks for a loop of exactly 2,000,000 instructions (1,000,000 x `subs; bne`), so the
 * harness can convert ticks to instructions under `qemu -icount`. */
uint32_t s4q_tick_calibration(void) {
    uint32_t t0 = s4q_ticks(), n = 1000000u;
    __asm__ volatile(S4Q_ASM_BEGIN "1:\n\tsubs %0, %0, #1\n\tbne 1b" S4Q_ASM_END : "+r"(n) : : "cc");
    return s4q_ticks() - t0;
}

void s4q_exit(int code) {
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026) or RunTimeErrorUnknown (0x20023). */
    semihost(0x18, (const void *)(uintptr_t)(code == 0 ? 0x20026u : 0x20023u));
    for (;;) {}
}
