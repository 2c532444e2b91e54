//! libFuzzer target: any byte string goes through `Model::parse`; a file that parses runs a
//! few inference steps whose inputs come from the tail of the fuzz input. A panic, an
//! overflow (cargo-fuzz builds with debug assertions) or an out-of-bounds access is a finding.
//! Seed it with real exports: `scripts/fuzz-runtime.sh` explains the command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s4q_runtime::{Model, State};

/// Buffers the caller allocates for a parsed model; refuse absurd sizes so the harness, not
/// the runtime (which never allocates), does not run out of memory.
const MAX_BUFFER: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::parse(data) else {
        return;
    };
    let (state_len, heads, classes, d_input) = (
        model.state_len(),
        model.heads(),
        model.classes(),
        model.d_input(),
    );
    if [state_len, heads, classes, d_input]
        .iter()
        .any(|&n| n > MAX_BUFFER)
    {
        return;
    }
    let mut x = vec![0i8; state_len];
    let mut g = vec![0i8; heads];
    let mut sums = vec![0i64; heads];
    let mut out = vec![0i8; classes];
    let Ok(mut state) = State::new(&model, &mut x, &mut g, &mut sums) else {
        return;
    };
    let mut input = vec![0i8; d_input];
    for (t, chunk) in data.rchunks(d_input.max(1)).take(4).enumerate() {
        for (i, v) in input.iter_mut().enumerate() {
            *v = chunk.get(i).map_or(t as i8, |&b| b as i8);
        }
        if model.step(&mut state, &input, &mut out).is_err() {
            return;
        }
    }
});
