//! A PHP callable resolved once, when it is registered.
//!
//! ext-php-rs's `ZendCallable` resolves a callable three times per call (two checks, then
//! `zend_call_function` itself). A message callback runs for every message, so Surge resolves
//! it once, as PHP's own functions that call back many times do (`array_map`, `usort`), and
//! then calls the function found.

use std::ptr;

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::ffi::{
    zend_call_known_function, zend_fcall_info_cache, zend_is_callable_ex,
    ZEND_ACC_CALL_VIA_TRAMPOLINE,
};
use ext_php_rs::types::{ZendCallable, Zval};
use ext_php_rs::zend::ExecutorGlobals;

use crate::fatal_error::{unclean_shutdown, zend_try};

unsafe extern "C" {
    // Exported by PHP (Zend/zend_API.h); ext-php-rs has no binding for it.
    fn zend_release_fcall_info_cache(fcc: *mut zend_fcall_info_cache);
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
        match zend_try(|| callable.try_call(args.to_vec())) {
            Some(Ok(retval)) => Ok(retval),
            Some(Err(_)) => Err(CallError::Threw),
            None => Err(CallError::Fatal),
        }
    }
}

/// Calls a resolved callable (every message's callback goes this way).
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
    let called = zend_try(|| {
        // SAFETY: `fcc` was resolved from the callable's zval, which keeps the function alive,
        // and the `Callable` holds its object; the params and the return value are live zvals
        // that outlive the call.
        unsafe {
            zend_call_known_function(
                fcc.function_handler,
                fcc.object,
                fcc.called_scope,
                &mut retval,
                args.len() as u32,
                params.as_mut_ptr(),
                ptr::null_mut(),
            );
        }
    });
    if called.is_none() {
        return Err(CallError::Fatal);
    }
    if ExecutorGlobals::has_exception() {
        Err(CallError::Threw)
    } else {
        Ok(retval)
    }
}
