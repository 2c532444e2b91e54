//! Run-time choice of AVX2 builds for the host loops.
//!
//! Release builds target baseline x86-64 (SSE2), so a plain loop vectorizes four lanes wide
//! and anything beyond SSE2 (a float-to-int conversion, say) stays scalar. Compiling the same
//! loop a second time with `#[target_feature(enable = "avx2")]` and picking it at run time
//! gives eight lanes where the CPU has them without requiring AVX2 of every machine. Rust never
//! contracts `a * b + c` into a fused multiply-add on its own, so both builds perform the same
//! f32 operations and return identical values.

/// Whether this CPU runs the AVX2 builds (detected once by the standard library, then cached).
#[inline(always)]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a function whose body is compiled twice, as written and with AVX2, and runs the
/// AVX2 build where [`has_avx2`](crate::cpu::has_avx2) says the CPU has it. For loops over
/// slices that only read and write memory through their arguments.
#[macro_export]
#[doc(hidden)]
macro_rules! avx2_dispatch {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::has_avx2() {
                // SAFETY: AVX2 is present (checked at run time just above).
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}
