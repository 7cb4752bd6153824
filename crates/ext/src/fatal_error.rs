//! PHP's fatal errors as Rust sees them. PHP ends a fatal error with a longjmp (its "bailout")
//! to the nearest zend_try; jumping over Rust frames skips their destructors and leaves the
//! event loop's state half set, so every place where PHP runs while serving is inside one.

use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::thread;

use ext_php_rs::ffi::{ext_php_rs_compiler_globals, ext_php_rs_zend_try_catch};

/// Whether PHP has been told to end this request uncleanly: set by every fatal error, also by
/// those reported without the jump (see `Callable::call`).
pub fn unclean_shutdown() -> bool {
    // SAFETY: PHP's compiler globals live as long as the process (this thread's, under ZTS);
    // only the PHP thread calls callbacks.
    unsafe { (*ext_php_rs_compiler_globals()).unclean_shutdown }
}

/// Runs `f` inside PHP's zend_try; None if PHP bailed out of it (what `f` held then is leaked:
/// its destructors were jumped over). Lighter than ext-php-rs's `try_catch`, whose bailout
/// guards Surge does not use: this runs for every message. A panic in `f` is caught before
/// PHP's C frame, which it must not unwind through, and resumed here.
pub fn zend_try<F: FnOnce() -> R, R>(f: F) -> Option<R> {
    let mut frame = Frame {
        f: Some(f),
        result: None,
    };
    let mut done = ptr::null_mut();
    // SAFETY: `run` gets the frame made for it, alive until zend_try returns.
    let bailed_out = unsafe {
        ext_php_rs_zend_try_catch(run::<F, R>, (&raw mut frame).cast_const().cast(), &mut done)
    };
    match frame.result {
        _ if bailed_out => None,
        Some(Ok(result)) => Some(result),
        Some(Err(panic)) => resume_unwind(panic),
        None => None,
    }
}

struct Frame<F, R> {
    f: Option<F>,
    result: Option<thread::Result<R>>,
}

/// Called by PHP's zend_try with the `Frame`.
unsafe extern "C" fn run<F: FnOnce() -> R, R>(ctx: *const c_void) -> *const c_void {
    // SAFETY: `ctx` is the `Frame` that `zend_try` passed, which nothing else touches meanwhile.
    let frame = unsafe { &mut *ctx.cast_mut().cast::<Frame<F, R>>() };
    if let Some(f) = frame.f.take() {
        frame.result = Some(catch_unwind(AssertUnwindSafe(f)));
    }
    ctx
}
