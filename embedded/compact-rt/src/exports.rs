//! The C and ARM EABI symbols, on bare-metal targets only (on a host they
//! would replace the C library's).
#![cfg(target_os = "none")]
// The symbols are found by the linker, not by path.
#![allow(unreachable_pub)]

use crate::{compare, copy, copy_forward, fill};

/// # Safety
/// As C's `memcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's `memcpy` contract (no overlap).
    unsafe { copy_forward(dst, src, n) };
    dst
}

/// # Safety
/// As C's `memmove`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's `memmove` contract.
    unsafe { copy(dst, src, n) };
    dst
}

/// # Safety
/// As C's `memset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's `memset` contract; C converts `c` to a byte.
    unsafe { fill(dst, c as u8, n) };
    dst
}

/// # Safety
/// As C's `memcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's `memcmp` contract.
    unsafe { compare(a, b, n) }
}

/// # Safety
/// As C's `bcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's `bcmp` contract.
    unsafe { compare(a, b, n) }
}

/// The ARM run-time ABI's names (the `4`/`8` forms only promise alignment,
/// which `copy_forward` and `fill` find out for themselves).
macro_rules! aeabi {
    ($($copy:ident)*; $($moves:ident)*; $($set:ident)*; $($clr:ident)*) => {
        $(
            /// # Safety
            /// As `memcpy`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $copy(dst: *mut u8, src: *const u8, n: usize) {
                // SAFETY: the caller's `memcpy` contract.
                unsafe { copy_forward(dst, src, n) }
            }
        )*
        $(
            /// # Safety
            /// As `memmove`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $moves(dst: *mut u8, src: *const u8, n: usize) {
                // SAFETY: the caller's `memmove` contract.
                unsafe { copy(dst, src, n) }
            }
        )*
        $(
            /// # Safety
            /// As `memset`, with the EABI's argument order.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $set(dst: *mut u8, n: usize, c: i32) {
                // SAFETY: the caller's `memset` contract.
                unsafe { fill(dst, c as u8, n) }
            }
        )*
        $(
            /// # Safety
            /// As `memset` with 0.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $clr(dst: *mut u8, n: usize) {
                // SAFETY: the caller's `memset` contract.
                unsafe { fill(dst, 0, n) }
            }
        )*
    };
}

aeabi!(
    __aeabi_memcpy __aeabi_memcpy4 __aeabi_memcpy8;
    __aeabi_memmove __aeabi_memmove4 __aeabi_memmove8;
    __aeabi_memset __aeabi_memset4 __aeabi_memset8;
    __aeabi_memclr __aeabi_memclr4 __aeabi_memclr8
);

/// compiler_builtins' `__aeabi_uldivmod` (what `u64 / u64` and `%` call on
/// thumbv7m) divides through this; its own is 870 bytes.
#[unsafe(no_mangle)]
pub extern "C" fn __udivmoddi4(n: u64, d: u64, rem: *mut u64) -> u64 {
    let (q, r) = crate::divide(n, d);
    if !rem.is_null() {
        // SAFETY: a non-null `rem` points to a u64 the caller owns
        // (compiler_builtins passes its own local).
        unsafe { *rem = r };
    }
    q
}
