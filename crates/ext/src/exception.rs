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

/// A `Surge\Exception` with `message`, to return as `Err` from a PHP method.
pub fn error(message: impl Into<String>) -> PhpException {
    let ce = EXCEPTION_CE.load(Ordering::Acquire);
    // SAFETY: set once in MINIT before any PHP code can run, never freed while PHP runs.
    match unsafe { ce.as_ref() } {
        Some(ce) => PhpException::new(message.into(), 0, ce),
        None => PhpException::new(message.into(), 0, ce::exception()),
    }
}
