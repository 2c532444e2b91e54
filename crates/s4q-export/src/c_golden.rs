//! The golden test harness in C: the exported model run over embedded sequences and compared
//! byte for byte with the Rust reference's logits, on the host and on Cortex-M under QEMU.

use std::fmt::Write as _;
use std::path::Path;

use qat::integer::IntegerModel;

use crate::{ExportError, ModelMeta, write_file};

/// The golden test harness: classifies every embedded sequence, prints one line per sequence
/// in the golden format, counts matches with the embedded reference logits, and reports
/// instruction counts where the platform has a counter.
const C_HARNESS: &str = r##"/* Golden harness (generated): prints `logits | class` per sequence, then a summary. */
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
"##;

const C_PLATFORM_HOST: &str = r#"/* Host platform for the golden harness: stdout, no tick counter. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

void s4q_out(const char *s) { fputs(s, stdout); }
uint32_t s4q_ticks(void) { return 0; }
uint32_t s4q_tick_calibration(void) { return 0; }
void s4q_exit(int code) { fflush(stdout); exit(code); }
"#;

const C_PLATFORM_M4: &str = r#"/* Cortex-M platform for the golden harness (QEMU mps2-an386 Cortex-M4, microbit Cortex-M0):
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
"#;

const C_LINK_M4: &str = r#"/* mps2-an386: 4 MB code SSRAM at 0x0 (flash role), 4 MB data SSRAM at 0x20000000. */
MEMORY {
    FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
    RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(Reset_Handler)
SECTIONS {
    .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
    .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
    .ARM.exidx : { *(.ARM.exidx*) } > FLASH
    _sidata = LOADADDR(.data);
    .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
    .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
    _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"#;

const C_LINK_M0: &str = r#"/* microbit (nRF51822, Cortex-M0): 256 KB flash at 0x0, 16 KB RAM at 0x20000000. */
MEMORY {
    FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 256K
    RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 16K
}
ENTRY(Reset_Handler)
SECTIONS {
    .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
    .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
    .ARM.exidx : { *(.ARM.exidx*) } > FLASH
    _sidata = LOADADDR(.data);
    .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
    .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
    _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"#;

/// Writes the model (`write_c_model`), `s4q_golden.h` (the golden sequences' input codes,
/// each at its own length, and their reference logits), the harnesses' platform files and
/// the Cortex-M link scripts into `dir`.
pub fn write_c_golden(
    im: &IntegerModel,
    meta: &ModelMeta,
    seqs: &[Vec<i8>],
    golden: &[String],
    dir: &Path,
) -> Result<(), ExportError> {
    crate::c_model::write_c_model(im, meta, dir)?;
    // One flat array of every sequence's codes, each at its own length, with its step count
    // and start: the harness runs each at its real length, as a device would.
    let steps: Vec<usize> = seqs.iter().map(|s| s.len() / im.d_input).collect();
    let total: usize = steps.iter().sum();
    let mut g = String::from(
        "/* Golden inputs and reference logits (generated). */\n#ifndef S4Q_GOLDEN_H\n#define S4Q_GOLDEN_H\n#include <stdint.h>\n",
    );
    let _ = writeln!(
        g,
        "#define S4Q_GOLDEN_N {}u\n#define S4Q_GOLDEN_TOTAL_STEPS {total}u",
        seqs.len()
    );
    let starts: Vec<usize> = steps
        .iter()
        .scan(0, |at, &n| {
            let start = *at;
            *at += n * im.d_input;
            Some(start)
        })
        .collect();
    let as_u32 = |v: &[usize]| v.iter().map(|n| format!("{n}u")).collect::<Vec<_>>();
    let _ = writeln!(
        g,
        "static const uint32_t s4q_golden_steps[{}] = {{{}}};",
        seqs.len().max(1),
        as_u32(&steps).join(", ")
    );
    let _ = writeln!(
        g,
        "static const uint32_t s4q_golden_start[{}] = {{{}}};",
        seqs.len().max(1),
        as_u32(&starts).join(", ")
    );
    let _ = write!(
        g,
        "static const int8_t s4q_golden_inputs[{}] = {{",
        (total * im.d_input).max(1)
    );
    for (i, v) in seqs.iter().flatten().enumerate() {
        if i % 32 == 0 {
            g.push_str("\n  ");
        }
        let _ = write!(g, "{v},");
    }
    g.push_str("\n};\n");
    let _ = writeln!(
        g,
        "static const int8_t s4q_golden_logits[{}][{}] = {{",
        seqs.len(),
        im.classes
    );
    for line in golden {
        let logits = line.split('|').next().unwrap_or("");
        let vals: Vec<&str> = logits.split_whitespace().collect();
        let _ = writeln!(g, "  {{{}}},", vals.join(", "));
    }
    g.push_str("};\n#endif\n");
    let files = [
        ("s4q_golden.h", g),
        ("harness.c", C_HARNESS.to_string()),
        ("platform_host.c", C_PLATFORM_HOST.to_string()),
        ("platform_m4.c", C_PLATFORM_M4.to_string()),
        ("link_m4.ld", C_LINK_M4.to_string()),
        ("link_m0.ld", C_LINK_M0.to_string()),
    ];
    for (name, text) in files {
        write_file(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
