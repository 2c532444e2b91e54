#!/usr/bin/env bash
# Host check of the exported C (issue 6): every results/deploy/*/c (or the directories given)
# is built with gcc -std=c99 -pedantic -Wall -Wextra -Werror and ASan + UBSan, its golden
# harness run, and its output compared byte for byte with the integer reference's
# (golden_logits.txt) and the Rust runtime's (golden_runtime.txt) logits.
# Usage: bash scripts/deploy-host-check.sh [EXPORT_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v gcc >/dev/null 2>&1; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq gcc
fi
dirs=("$@")
[ ${#dirs[@]} -eq 0 ] && dirs=(results/deploy/*/)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
passed=0
for d in "${dirs[@]}"; do
    d="${d%/}"
    [ -f "$d/c/s4q_model.c" ] || continue
    name="$(basename "$d")"
    gcc -std=c99 -pedantic -Wall -Wextra -Werror -O2 -g \
        -fsanitize=address,undefined -fno-sanitize-recover=all \
        "$d/c/s4q_model.c" "$d/c/harness.c" "$d/c/platform_host.c" -o "$work/$name"
    if ! "$work/$name" > "$work/$name.out"; then
        echo "FAIL $name: harness exited non-zero"; failed=$((failed + 1)); continue
    fi
    grep -v '^#' "$work/$name.out" > "$work/$name.logits"
    if cmp -s "$work/$name.logits" "$d/golden_logits.txt" && cmp -s "$work/$name.logits" "$d/golden_runtime.txt"; then
        n=$(wc -l < "$work/$name.logits")
        echo "ok   $name: C on host == integer reference == Rust runtime on $n golden sequences ($(grep '^# golden' "$work/$name.out" | sed 's/^# golden: //'))"
        passed=$((passed + 1))
    else
        echo "FAIL $name: C output differs from the golden logits"; failed=$((failed + 1))
    fi
done
echo "deploy host check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
