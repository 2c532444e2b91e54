#!/usr/bin/env bash
# Cortex-M4 check of the exported C (issue 6): builds every results/deploy/*/c (or the
# directories given) with arm-none-eabi-gcc for cortex-m4, runs the golden harness under
# qemu-system-arm -M mps2-an386 with semihosting and -icount shift=0 (one instruction per
# virtual nanosecond; SysTick counts the 25 MHz CPU clock, and a 2,000,000-instruction loop
# calibrates ticks to instructions), compares its output byte for byte with the integer
# reference's and the Rust runtime's logits, and writes <dir>/cortex-m4.json with
# arm-none-eabi-size of the model object (flash = text + data, RAM = state), the stack frames
# and instructions per time step. Installs its Debian packages when missing.
# Usage: bash scripts/deploy-qemu.sh [EXPORT_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v arm-none-eabi-gcc >/dev/null 2>&1 || ! command -v qemu-system-arm >/dev/null 2>&1; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
        gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
fi
dirs=("$@")
[ ${#dirs[@]} -eq 0 ] && dirs=(results/deploy/*/)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cflags=(-std=c99 -Wall -Wextra -Werror -O2 -mcpu=cortex-m4 -mthumb -ffreestanding)
failed=0
passed=0
for d in "${dirs[@]}"; do
    d="${d%/}"
    [ -f "$d/c/s4q_model.c" ] || continue
    name="$(basename "$d")"
    o="$work/$name"
    mkdir -p "$o"
    arm-none-eabi-gcc "${cflags[@]}" -fstack-usage -c "$d/c/s4q_model.c" -o "$o/s4q_model.o"
    arm-none-eabi-gcc "${cflags[@]}" -nostartfiles -nostdlib -T "$d/c/link_m4.ld" \
        "$o/s4q_model.o" "$d/c/harness.c" "$d/c/platform_m4.c" -lgcc -o "$o/fw.elf"
    read -r text data bss _ < <(arm-none-eabi-size "$o/s4q_model.o" | tail -1)
    su="$o/s4q_model.su"
    frame() { awk -v f="$1" -F'\t' '{split($1, a, ":"); if (a[length(a)] == f) print $2}' "$su" | head -1; }
    classify=$(frame s4q_classify); advance=$(frame s4q_advance); logits=$(frame s4q_logits)
    stack=$(( ${classify:-0} + (${advance:-0} > ${logits:-0} ? ${advance:-0} : ${logits:-0}) ))
    timeout 1200 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -chardev file,id=sh,path="$o/out.txt" -semihosting-config enable=on,target=native,chardev=sh \
        -icount shift=0 -kernel "$o/fw.elf" || { echo "FAIL $name: qemu run failed"; failed=$((failed + 1)); continue; }
    grep -v '^#' "$o/out.txt" > "$o/logits.txt"
    summary=$(grep '^# ticks' "$o/out.txt")
    ticks=$(echo "$summary" | awk '{print $3}'); steps=$(echo "$summary" | awk '{print $5}')
    calib=$(echo "$summary" | awk '{print $7}'); state=$(echo "$summary" | awk '{print $9}')
    ips=$(awk -v t="$ticks" -v s="$steps" -v c="$calib" 'BEGIN { printf "%.0f", t * (2000000 / c) / s }')
    if cmp -s "$o/logits.txt" "$d/golden_logits.txt" && cmp -s "$o/logits.txt" "$d/golden_runtime.txt"; then
        ok=true; passed=$((passed + 1))
    else
        ok=false; failed=$((failed + 1))
    fi
    n=$(wc -l < "$o/logits.txt")
    cat > "$d/cortex-m4.json" <<JSON
{
  "target": "cortex-m4 (qemu-system-arm -M mps2-an386, -icount shift=0)",
  "compiler": "$(arm-none-eabi-gcc --version | head -1) ${cflags[*]}",
  "golden_sequences": $n,
  "bit_exact_with_reference_and_runtime": $ok,
  "model_object_text_bytes": $text,
  "model_object_data_bytes": $data,
  "model_object_bss_bytes": $bss,
  "flash_bytes": $((text + data)),
  "state_bytes": $state,
  "stack_bytes_classify_path": $stack,
  "ram_bytes": $((state + stack + data + bss)),
  "instructions_per_step": $ips,
  "ticks": $ticks,
  "steps": $steps,
  "calibration_ticks_per_2M_instructions": $calib
}
JSON
    echo "$([ "$ok" = true ] && echo ok || echo FAIL)   $name: Cortex-M4 == reference == runtime on $n sequences; flash $((text + data)) B, RAM $((state + stack + data + bss)) B (state $state + stack $stack), $ips instructions/step"
done
echo "deploy qemu check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
