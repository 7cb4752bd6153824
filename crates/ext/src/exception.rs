//! `Surge\Exception`, registered by hand in MINIT: ext-php-rs's own class registration replaces
//! Exception's object creation, which loses file, line and trace and forbids PHP subclasses.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::exception::PhpException;
use ext_php_rs::zend::{ce, ClassEntry};

static EXCEPTION_CE: AtomicPtr<ClassEntry> = AtomicPtr::new(null_mut());

pub fn register() -> ext_php_rs::error::Result<()> {
    ClassBuilder::new("Surge\\Exception")
        .extends((ce::exception, "\\Exception"))
        .registration(|ce, _| EXCEPTION_CE.store(ce, Ordering::Release))
        .register()
}

/// A `Surge\Exception` with `message`, to return as `Err` from a PHP method. A NUL in it (a
/// path or header name PHP passed, quoted) is shown as `\0`: ext-php-rs cannot make an
/// exception whose message holds one, and would throw a plain `\Error` instead.
pub fn error(message: impl Into<String>) -> PhpException {
    let mut message: String = message.into();
    if message.contains('\0') {
        message = message.replace('\0', "\\0");
    }
    let ce = EXCEPTION_CE.load(Ordering::Acquire);
    // SAFETY: set once in MINIT before any PHP code can run, never freed while PHP runs.
    match unsafe { ce.as_ref() } {
        Some(ce) => PhpException::new(message, 0, ce),
        None => PhpException::new(message, 0, ce::exception()),
    }
}
