//! A PHP callable resolved once, when it is registered.
//!
//! ext-php-rs's `ZendCallable` resolves a callable three times per call (two checks, then
//! `zend_call_function` itself). A message callback runs for every message, so Surge resolves
//! it once, as PHP's own functions that call back many times do (`array_map`, `usort`), and
//! then calls the function found.

use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::ptr;

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::ffi::{
    ext_php_rs_compiler_globals, ext_php_rs_zend_try_catch, zend_call_known_function,
    zend_fcall_info_cache, zend_is_callable_ex, ZEND_ACC_CALL_VIA_TRAMPOLINE,
};
use ext_php_rs::types::{ZendCallable, Zval};
use ext_php_rs::zend::{try_catch, ExecutorGlobals};

unsafe extern "C" {
    // Exported by PHP (Zend/zend_API.h); ext-php-rs has no binding for it.
    fn zend_release_fcall_info_cache(fcc: *mut zend_fcall_info_cache);
}

/// Whether PHP has been told to end this request uncleanly: set by every fatal error.
fn unclean_shutdown() -> bool {
    // SAFETY: PHP's compiler globals live as long as the process (this thread's, under ZTS);
    // only the PHP thread calls callbacks.
    unsafe { (*ext_php_rs_compiler_globals()).unclean_shutdown }
}

/// The most arguments Surge gives a callback (pusherClientEvent's six).
const MAX_ARGS: usize = 6;

pub struct Callable {
    /// Holds what `resolved` points into: the closure, or the object of a method.
    zval: Zval,
    /// Holds `resolved`'s object too: a method named by its class (`[self::class, 'm']`,
    /// `'C::m'`) and registered from an instance method of that class is called on that
    /// method's `$this`, which `zval` does not hold.
    object: Zval,
    /// The function, its object and scope. None when the callable resolves to a `__call` or
    /// `__callStatic` trampoline, which PHP makes for one call only: those are resolved anew at
    /// every call.
    resolved: Option<zend_fcall_info_cache>,
}

pub enum CallError {
    /// It resolved when registered, and no longer does (a trampoline's `__call` went away).
    NotCallable,
    /// It threw; the exception is left pending in PHP's executor.
    Threw,
    /// A fatal error (PHP has printed it): PHP unwound its own frames to the catch around the
    /// call, and runs no more code of this request but its shutdown functions.
    Fatal,
}

impl Callable {
    /// Resolved as seen from the PHP code running now (the caller of `on()` or `tick()`); None
    /// if it is not callable from there.
    pub fn new(zval: &Zval) -> Option<Callable> {
        let mut zval = zval.shallow_clone();
        // SAFETY: all-zero is the empty cache PHP itself starts from.
        let mut fcc: zend_fcall_info_cache = unsafe { std::mem::zeroed() };
        // SAFETY: `zval` is a live zval; the out-pointers are either null or ours.
        let callable = unsafe {
            zend_is_callable_ex(
                &mut zval,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                &mut fcc,
                ptr::null_mut(),
            )
        };
        if !callable || fcc.function_handler.is_null() {
            return None;
        }
        // SAFETY: resolution succeeded, so the handler points to a function.
        let trampoline =
            unsafe { (*fcc.function_handler).common.fn_flags } & ZEND_ACC_CALL_VIA_TRAMPOLINE != 0;
        if trampoline {
            // SAFETY: frees the trampoline made for this resolution, as PHP does after a call.
            unsafe { zend_release_fcall_info_cache(&mut fcc) };
        }
        let mut object = Zval::new();
        if !trampoline && !fcc.object.is_null() {
            // SAFETY: resolution set it to a live object; set_object adds a reference.
            object.set_object(unsafe { &mut *fcc.object });
        }
        Some(Callable {
            zval,
            object,
            resolved: (!trampoline).then_some(fcc),
        })
    }

    /// Another reference, so no borrow of where it is kept is held while PHP runs it.
    pub fn shallow_clone(&self) -> Callable {
        Callable {
            zval: self.zval.shallow_clone(),
            object: self.object.shallow_clone(),
            resolved: self.resolved,
        }
    }

    /// Calls it. A fatal error in it (PHP's bailout, a longjmp) is caught here, at the edge of
    /// PHP's frames: left alone, it would jump over the Rust frames of the event loop and the
    /// runtime, whose destructors would never run. Some fatal errors do not jump: the one of
    /// `memory_limit` is reported and unwound inside PHP's allocator, and the call returns;
    /// both ways, PHP marks the request as ending uncleanly, which is what tells them apart
    /// from a return.
    /// Returns what the callable returned.
    pub fn call(&self, args: &[&dyn IntoZvalDyn]) -> Result<Zval, CallError> {
        let unclean_before = unclean_shutdown();
        let result = match self.resolved {
            Some(fcc) if args.len() <= MAX_ARGS => call_resolved(&fcc, args),
            _ => self.call_unresolved(args),
        };
        if unclean_shutdown() && !unclean_before {
            return Err(CallError::Fatal);
        }
        result
    }

    /// A trampoline, or more arguments than `call_resolved` takes: through ext-php-rs.
    fn call_unresolved(&self, args: &[&dyn IntoZvalDyn]) -> Result<Zval, CallError> {
        let callable = ZendCallable::new(&self.zval).map_err(|_| CallError::NotCallable)?;
        match try_catch(AssertUnwindSafe(|| callable.try_call(args.to_vec()))) {
            Ok(Ok(retval)) => Ok(retval),
            Ok(Err(_)) => Err(CallError::Threw),
            Err(_) => Err(CallError::Fatal),
        }
    }
}

/// A resolved call, as `call_known` gets it through PHP's zend_try.
struct KnownCall<'a> {
    fcc: &'a zend_fcall_info_cache,
    params: *mut Zval,
    count: u32,
    retval: *mut Zval,
}

/// Runs inside PHP's zend_try (ext-php-rs's C wrapper): PHP code only, nothing that unwinds.
unsafe extern "C" fn call_known(ctx: *const c_void) -> *const c_void {
    // SAFETY: `ctx` is the `KnownCall` that `call_resolved` passed, alive for the call.
    let call = unsafe { &*ctx.cast::<KnownCall>() };
    // SAFETY: `fcc` was resolved from the callable's zval, which keeps the function alive, and
    // the `Callable` holds its object; the params and the return value are live zvals that
    // outlive the call.
    unsafe {
        zend_call_known_function(
            call.fcc.function_handler,
            call.fcc.object,
            call.fcc.called_scope,
            call.retval,
            call.count,
            call.params,
            ptr::null_mut(),
        );
    }
    ctx
}

/// Calls a resolved callable (every message's callback goes this way: lighter than
/// ext-php-rs's `try_catch`, which also catches Rust panics and runs its own cleanups).
fn call_resolved(
    fcc: &zend_fcall_info_cache,
    args: &[&dyn IntoZvalDyn],
) -> Result<Zval, CallError> {
    // On the stack: a callback runs for every message.
    let mut params: [Zval; MAX_ARGS] = std::array::from_fn(|_| Zval::new());
    for (param, arg) in params.iter_mut().zip(args) {
        *param = arg.as_zval(false).map_err(|_| CallError::Threw)?;
    }
    let mut retval = Zval::new();
    let call = KnownCall {
        fcc,
        params: params.as_mut_ptr(),
        count: args.len() as u32,
        retval: &mut retval,
    };
    let mut done = ptr::null_mut();
    // SAFETY: `call_known` only calls PHP, with what `call` points to, alive until we return.
    let bailed_out =
        unsafe { ext_php_rs_zend_try_catch(call_known, (&raw const call).cast(), &mut done) };
    if bailed_out {
        return Err(CallError::Fatal);
    }
    if ExecutorGlobals::has_exception() {
        Err(CallError::Threw)
    } else {
        Ok(retval)
    }
}
