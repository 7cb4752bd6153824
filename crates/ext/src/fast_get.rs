//! A hand-written PHP handler for `Surge\Table::get`, put in front of the one ext-php-rs
//! generates. That one costs 30-50 ns before `get` starts (a panic and bailout guard,
//! argument parsing into Rust types), more than the rest of a `get` of a row this process
//! has read before. This handler serves only that case, `$table->get($int)` of a kept row
//! (see `Table::kept_row`), which allocates nothing and can neither fail nor call into PHP.
//! Every other call, a miss included, goes to the generated handler, so errors, exceptions
//! and the building of rows stay exactly as they are.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ext_php_rs::class::RegisteredClass;
use ext_php_rs::ffi::{zend_execute_data, zend_function, zval};
use ext_php_rs::types::{ZendClassObject, Zval};

use crate::table::Table;

/// The generated handler, as an address (0 until `install`).
static GENERATED: AtomicUsize = AtomicUsize::new(0);

type Handler = unsafe extern "C" fn(*mut zend_execute_data, *mut zval);

/// Puts `get` in front of the generated handler of `Surge\Table::get`; does nothing when it
/// is already there. Called on the PHP thread by `create()`: the class is registered by then,
/// and no `get` can have found a row before a table was created.
pub(crate) fn install() {
    let ce = Table::get_metadata().ce();
    // SAFETY: a class's function table holds its methods as pointers to zend_function, and
    // those of an internal class are internal functions, whose handler PHP reads on every
    // call. The table lives as long as the class, and only this (PHP) thread writes it.
    unsafe {
        let Some(function) = ce.function_table.get("get").and_then(|zv| zv.ptr::<zend_function>()) else {
            return;
        };
        let handler = &mut (*function).internal_function.handler;
        match *handler {
            Some(h) if h as usize != get as Handler as usize => {
                GENERATED.store(h as usize, Relaxed);
                *handler = Some(get);
            }
            _ => {}
        }
    }
}

/// PHP's handler of `Surge\Table::get`: the kept row, or the generated handler's answer.
unsafe extern "C" fn get(ex: *mut zend_execute_data, ret: *mut zval) {
    // SAFETY: PHP passes the frame of this call and the zval to return in, which holds null
    // (nothing to release before it is overwritten).
    unsafe {
        if let Some(row) = kept_row(&*ex) {
            ret.write(row);
            return;
        }
        // SAFETY: install stored the generated handler before it put this one in its place.
        let generated: Handler = std::mem::transmute::<usize, Handler>(GENERATED.load(Relaxed));
        generated(ex, ret);
    }
}

/// The kept row when the call is `$table->get($int)` on a created table and the row has not
/// changed since this process last returned it.
///
/// # Safety
/// `ex` is the frame of a call to `Surge\Table::get`.
unsafe fn kept_row(ex: &zend_execute_data) -> Option<Zval> {
    // SAFETY: every member of `u2` is the same 32-bit integer; for a call frame it is the
    // number of arguments passed, which are then in the frame's first slots.
    let key = unsafe {
        if ex.This.u2.num_args != 1 {
            return None;
        }
        ex.zend_call_arg(0)?.long()?
    };
    // None for anything but an initialised object of this class (from_zend_obj checks).
    let table = ZendClassObject::<Table>::from_zend_obj(ex.This.object()?)?;
    table.kept_row(key)
}
