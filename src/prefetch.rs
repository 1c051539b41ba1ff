//! A cache hint: the one CPU instruction the counting path needs that Rust's standard library
//! offers only as an `unsafe` intrinsic.

/// Asks the CPU to start loading the cache line that holds `value`, without waiting for it. It
/// changes nothing the program computes; a no-op on targets other than x86-64.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the address comes from a live reference; a prefetch never faults and reads nothing
    // into the program, it only moves a cache line closer to the core.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
