#!/usr/bin/env bash
# Cortex-M checks of the exported C (issues 6, 20): for every results/deploy/*/c (or the
# directories given)
#  - Cortex-M4: arm-none-eabi-gcc -mcpu=cortex-m4 (DSP path: SMLAD/SSAT), golden harness
#    under qemu-system-arm -M mps2-an386;
#  - Cortex-M0: the portable C path, -mcpu=cortex-m0, under qemu-system-arm -M microbit;
#  - float baseline on Cortex-M4F: c/s4q_float.c (float weights/state, libm GELU/sigmoid)
#    with -mfloat-abi=hard -mfpu=fpv4-sp-d16, same harness platform and counter;
# all with semihosting and -icount shift=0 (SysTick counts the CPU clock; a 2,000,000-
# instruction loop calibrates ticks to instructions). The integer runs are compared byte for
# byte with the integer reference's and the Rust runtime's logits. Writes <dir>/cortex-m4.json
# (flash = text + data of the model object, RAM = state + stack + data + bss, instructions
# per step for M4, M0 and the float baseline). Installs its Debian packages when missing.
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
common=(-std=c99 -Wall -Wextra -Werror -O2 -mthumb -ffreestanding)
m4=(-mcpu=cortex-m4)
m0=(-mcpu=cortex-m0)
m4f=(-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16)
failed=0
passed=0
# run_qemu MACHINE ELF OUT: the harness output file; returns qemu's status.
run_qemu() {
    timeout 1800 qemu-system-arm -M "$1" -nographic -monitor none -serial none \
        -chardev file,id=sh,path="$3" -semihosting-config enable=on,target=native,chardev=sh \
        -icount shift=0 -kernel "$2"
}
# per_step OUT: instructions per time step from the harness summary line.
per_step() {
    awk '/^# ticks/ { printf "%.0f", $3 * (2000000 / $7) / $5 }' "$1"
}
for d in "${dirs[@]}"; do
    d="${d%/}"
    [ -f "$d/c/s4q_model.c" ] || continue
    name="$(basename "$d")"
    o="$work/$name"
    mkdir -p "$o"
    # Cortex-M4, integer.
    arm-none-eabi-gcc "${common[@]}" "${m4[@]}" -fstack-usage -c "$d/c/s4q_model.c" -o "$o/s4q_model.o"
    arm-none-eabi-gcc "${common[@]}" "${m4[@]}" -nostartfiles -nostdlib -T "$d/c/link_m4.ld" \
        "$o/s4q_model.o" "$d/c/harness.c" "$d/c/platform_m4.c" -lgcc -o "$o/fw.elf"
    read -r text data bss _ < <(arm-none-eabi-size "$o/s4q_model.o" | tail -1)
    su="$o/s4q_model.su"
    frame() { awk -v f="$1" -F'\t' '{split($1, a, ":"); if (a[length(a)] == f || a[length(a)] == f ".part.0") print $2}' "$su" | sort -n | tail -1; }
    classify=$(frame s4q_classify); advance=$(frame s4q_advance); logits=$(frame s4q_logits)
    stack=$(( ${classify:-0} + (${advance:-0} > ${logits:-0} ? ${advance:-0} : ${logits:-0}) ))
    run_qemu mps2-an386 "$o/fw.elf" "$o/out.txt" || { echo "FAIL $name: qemu M4 run failed"; failed=$((failed + 1)); continue; }
    grep -v '^#' "$o/out.txt" > "$o/logits.txt"
    state=$(awk '/^# ticks/ {print $9}' "$o/out.txt")
    ips=$(per_step "$o/out.txt")
    sips=$(awk '/^# ticks/ {c = $7} /^# stream_ticks/ {printf "%.0f", $3 * (2000000 / c) / $5}' "$o/out.txt")
    ok=false
    if cmp -s "$o/logits.txt" "$d/golden_logits.txt" && cmp -s "$o/logits.txt" "$d/golden_runtime.txt"; then ok=true; fi
    n=$(wc -l < "$o/logits.txt")
    # Cortex-M0, integer (portable C path).
    arm-none-eabi-gcc "${common[@]}" "${m0[@]}" -c "$d/c/s4q_model.c" -o "$o/s4q_model_m0.o"
    read -r text0 data0 _ < <(arm-none-eabi-size "$o/s4q_model_m0.o" | tail -1)
    ok0=false; ips0=null; fits0=true
    # A model (with its golden sequences) larger than the microbit's 256 KB flash / 16 KB RAM
    # does not link there: recorded as not fitting, not as a failure of the arithmetic.
    if ! arm-none-eabi-gcc "${common[@]}" "${m0[@]}" -nostartfiles -nostdlib -T "$d/c/link_m0.ld" \
        "$o/s4q_model_m0.o" "$d/c/harness.c" "$d/c/platform_m4.c" -lgcc -o "$o/fw_m0.elf" 2> "$o/ld_m0.txt"; then
        fits0=false
        echo "note $name: does not fit the microbit (Cortex-M0, 256 KB flash, 16 KB RAM): $(grep -o 'region .* overflowed by [0-9]* bytes' "$o/ld_m0.txt" | tr '\n' ';')"
    elif run_qemu microbit "$o/fw_m0.elf" "$o/out_m0.txt"; then
        grep -v '^#' "$o/out_m0.txt" > "$o/logits_m0.txt"
        ips0=$(per_step "$o/out_m0.txt")
        cmp -s "$o/logits_m0.txt" "$d/golden_logits.txt" && ok0=true
    fi
    # Float baseline, Cortex-M4F.
    fips=null; fflash=null; fagree=null
    if [ -f "$d/c/s4q_float.c" ]; then
        arm-none-eabi-gcc "${common[@]}" "${m4f[@]}" -c "$d/c/s4q_float.c" -o "$o/s4q_float.o"
        arm-none-eabi-gcc "${common[@]}" "${m4f[@]}" -nostartfiles -nostdlib -T "$d/c/link_m4.ld" \
            "$o/s4q_float.o" "$d/c/harness_float.c" "$d/c/platform_m4.c" -lm -lc -lgcc -o "$o/fw_float.elf"
        read -r ftext fdata _ < <(arm-none-eabi-size "$o/s4q_float.o" | tail -1)
        fflash=$((ftext + fdata))
        if run_qemu mps2-an386 "$o/fw_float.elf" "$o/out_float.txt"; then
            fips=$(per_step "$o/out_float.txt")
            fagree=$(awk '/^# float agrees/ {print $9}' "$o/out_float.txt")
        fi
    fi
    # A model that does not fit the M0 passes on its M4 result alone.
    row=FAIL
    if $ok && { $ok0 || ! $fits0; }; then row=ok; fi
    if [ "$row" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    cat > "$d/cortex-m4.json" <<JSON
{
  "target": "cortex-m4 (qemu-system-arm -M mps2-an386, -icount shift=0)",
  "compiler": "$(arm-none-eabi-gcc --version | head -1) ${common[*]} ${m4[*]}",
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
  "streaming_step_instructions": $sips,
  "cortex_m0": {
    "target": "cortex-m0 (qemu-system-arm -M microbit, -icount shift=0), portable C path",
    "fits_microbit": $fits0,
    "bit_exact_with_reference": $ok0,
    "flash_bytes": $((text0 + data0)),
    "instructions_per_step": $ips0
  },
  "float_baseline_m4f": {
    "compiler_flags": "${common[*]} ${m4f[*]}, newlib libm",
    "flash_bytes": $fflash,
    "instructions_per_step": $fips,
    "same_class_as_integer_of_golden": $fagree
  }
}
JSON
    echo "$row   $name: M4 bit-exact $ok ($n seq), M0 bit-exact $ok0; flash $((text + data)) B, RAM $((state + stack + data + bss)) B; instr/step M4 $ips (streaming s4q_step $sips), M0 $ips0, float M4F $fips (float flash $fflash B, same class $fagree/$n)"
done
echo "deploy qemu check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
