//! Mutation fuzzer for the model-file parser and the inference it guards, on stable Rust
//! (cargo-fuzz needs nightly's sanitizer flags; this needs nothing).
//!
//! Starting from seed files (valid exports), each iteration applies random mutations: bit
//! flips, byte overwrites with interesting values, splices, truncation, extension, rewritten
//! array counts; half of the mutants get their header length and CRC repaired so they reach
//! the structural checks behind the checksum. Every mutant goes through `Model::parse`; those
//! that parse run a few steps of inference with random inputs. A panic (including an
//! arithmetic overflow: build with the `fuzz` profile, which enables overflow checks) is
//! caught, the input saved to `--crash-dir`, and the process exits 1.
//!
//! ```text
//! cargo run --profile fuzz -p s4q-runtime --bin fuzz-parser -- --minutes 10 results/deploy/*/model.s4qm
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use s4q_runtime::{HEADER_LEN, Model, State, crc32};

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let pos = rng.below(data.len());
        match rng.below(9) {
            0 => data[pos] ^= 1 << rng.below(8),
            1 => data[pos] = rng.next() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let w = [1, 2, 4][rng.below(3)];
                for (i, b) in v.iter().take(w).enumerate() {
                    if let Some(slot) = data.get_mut(pos + i) {
                        *slot = *b;
                    }
                }
            }
            3 => data.truncate(pos),
            4 => {
                let n = 1 + rng.below(64);
                for _ in 0..n {
                    data.insert(pos, rng.next() as u8);
                }
            }
            5 => {
                let n = 1 + rng.below(64.min(data.len() - pos));
                data.drain(pos..pos + n);
            }
            6 => {
                // splice a chunk of another seed at the same offset
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let n = 1 + rng.below(256.min(other.len() - start));
                    for i in 0..n {
                        if let Some(slot) = data.get_mut(pos + i) {
                            *slot = other[start + i];
                        }
                    }
                }
            }
            7 => {
                // a small signed delta on a 32-bit word (array counts, grid bounds, shifts)
                if pos + 4 <= data.len() {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(&data[pos..pos + 4]);
                    let v = i32::from_le_bytes(w).wrapping_add(rng.below(33) as i32 - 16);
                    data[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => {
                let v = rng.next() as u8;
                let n = 1 + rng.below(32);
                for i in 0..n {
                    if let Some(slot) = data.get_mut(pos + i) {
                        *slot = v;
                    }
                }
            }
        }
    }
}

/// Rewrites the header's payload length and CRC so the mutant reaches the field parser.
fn repair(data: &mut [u8]) {
    if data.len() >= HEADER_LEN {
        let len = (data.len() - HEADER_LEN) as u32;
        let crc = crc32(&data[HEADER_LEN..]);
        data[8..12].copy_from_slice(&len.to_le_bytes());
        data[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Parses, and on success runs a short random sequence plus logits.
fn exercise(data: &[u8], rng_seed: u64) -> (bool, bool) {
    let Ok(model) = Model::parse(data) else {
        return (false, false);
    };
    let mut rng = Rng(rng_seed | 1);
    let mut x = vec![0i8; model.state_len()];
    let mut g = vec![0i8; model.heads()];
    let mut sums = vec![0i64; model.heads()];
    let mut out = vec![0i8; model.classes()];
    let Ok(mut state) = State::new(&model, &mut x, &mut g, &mut sums) else {
        return (true, false);
    };
    let mut input = vec![0i8; model.d_input()];
    let steps = 1 + rng.below(8);
    for _ in 0..steps {
        for v in input.iter_mut() {
            *v = rng.next() as i8;
        }
        if model.step(&mut state, &input, &mut out).is_err() {
            return (true, false);
        }
    }
    (true, true)
}

struct Args {
    minutes: f64,
    seed: u64,
    crash_dir: PathBuf,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        minutes: 1.0,
        seed: 0x5EED,
        crash_dir: PathBuf::from("target/fuzz-crashes"),
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--minutes" => {
                args.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--crash-dir" => args.crash_dir = PathBuf::from(value("--crash-dir")?),
            "-h" | "--help" => {
                return Err(
                    "usage: fuzz-parser [--minutes M] [--seed N] [--crash-dir DIR] SEED_FILE..."
                        .into(),
                );
            }
            _ => args.files.push(PathBuf::from(a)),
        }
    }
    if args.files.is_empty() {
        return Err("give at least one seed model file (.s4qm)".into());
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut seeds = Vec::new();
    for f in &args.files {
        match std::fs::read(f) {
            Ok(b) => {
                if Model::parse(&b).is_err() {
                    eprintln!("warning: seed {} does not parse", f.display());
                }
                seeds.push(b);
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", f.display());
                std::process::exit(2);
            }
        }
    }
    // Silence the default panic message; the harness reports it.
    std::panic::set_hook(Box::new(|_| {}));
    let budget = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut rng = Rng(args.seed | 1);
    let (mut iters, mut parsed, mut ran) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while started.elapsed() < budget {
        let mut data = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, &seeds);
        if rng.below(2) == 0 {
            repair(&mut data);
        }
        let run_seed = rng.next();
        let result = catch_unwind(AssertUnwindSafe(|| exercise(&data, run_seed)));
        iters += 1;
        match result {
            Ok((p, r)) => {
                parsed += p as u64;
                ran += r as u64;
            }
            Err(_) => {
                let _ = std::fs::create_dir_all(&args.crash_dir);
                let path = args.crash_dir.join(format!("crash-{iters}.s4qm"));
                let _ = std::fs::write(&path, &data);
                eprintln!(
                    "PANIC on iteration {iters}; input saved to {}",
                    path.display()
                );
                std::process::exit(1);
            }
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            println!(
                "{:.1} min: {iters} inputs, {parsed} parsed, {ran} ran inference, no crash",
                started.elapsed().as_secs_f64() / 60.0
            );
            last_report = Instant::now();
        }
    }
    println!(
        "done: {:.1} minutes, {iters} inputs, {parsed} parsed, {ran} ran inference, 0 crashes",
        started.elapsed().as_secs_f64() / 60.0
    );
}
