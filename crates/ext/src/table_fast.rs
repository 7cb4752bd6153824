//! Hand-written PHP handlers for `Surge\Table::get` and `exists`, put in front of the ones
//! ext-php-rs generates. Those cost 30-50 ns before the method starts (a panic and bailout
//! guard, argument parsing into Rust types), as much as the rest of a `get` of a row this
//! process has read before. These handlers serve only calls that allocate nothing and can
//! neither fail nor call into PHP: `get($int_or_short_string)` of a kept row (see `Table::kept_row`) and
//! `exists($int_or_string)` (see `Table::exists_now`). Every other call, and any that
//! would fail, goes to the generated handler, so errors, exceptions and the building of rows
//! stay exactly as they are.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ext_php_rs::class::RegisteredClass;
use ext_php_rs::ffi::{zend_execute_data, zend_function, zval};
use ext_php_rs::types::{ZendClassObject, Zval};

use crate::table::Table;

type Handler = unsafe extern "C" fn(*mut zend_execute_data, *mut zval);

/// A method whose handler is replaced: its name, and the generated handler as an address
/// (0 until `install`).
struct Method {
    name: &'static str,
    generated: AtomicUsize,
}

static GET: Method = Method {
    name: "get",
    generated: AtomicUsize::new(0),
};
static EXISTS: Method = Method {
    name: "exists",
    generated: AtomicUsize::new(0),
};

/// Puts the handlers of this module in front of the generated ones; does nothing for a
/// method where one already is. Called on the PHP thread by `create()`: the class is
/// registered by then, and no `get` or `exists` can have found a row before a table was.
pub(crate) fn install() {
    GET.install(get);
    EXISTS.install(exists);
}

impl Method {
    fn install(&self, ours: Handler) {
        let ce = Table::get_metadata().ce();
        // SAFETY: a class's function table holds its methods as pointers to zend_function,
        // and those of an internal class are internal functions, whose handler PHP reads on
        // every call. The table lives as long as the class, and only this (PHP) thread
        // writes it.
        unsafe {
            let Some(function) = ce
                .function_table
                .get(self.name)
                .and_then(|zv| zv.ptr::<zend_function>())
            else {
                return;
            };
            let handler = &mut (*function).internal_function.handler;
            match *handler {
                Some(h) if h as usize != ours as usize => {
                    self.generated.store(h as usize, Relaxed);
                    *handler = Some(ours);
                }
                _ => {}
            }
        }
    }

    /// # Safety
    /// As for any handler: the frame and return value PHP passed to one; `install` ran.
    unsafe fn call_generated(&self, ex: *mut zend_execute_data, ret: *mut zval) {
        // SAFETY: install stored the generated handler before it put ours in its place.
        unsafe {
            let generated = std::mem::transmute::<usize, Handler>(self.generated.load(Relaxed));
            generated(ex, ret);
        }
    }
}

/// PHP's handler of `Surge\Table::get`: the kept row, or the generated handler's answer.
unsafe extern "C" fn get(ex: *mut zend_execute_data, ret: *mut zval) {
    // SAFETY: PHP passes the frame of this call and the zval to return in, which holds null
    // (nothing to release before it is overwritten).
    unsafe {
        match one_argument(&*ex).and_then(|(table, key)| table.kept_row(key)) {
            Some(row) => ret.write(row),
            None => GET.call_generated(ex, ret),
        }
    }
}

/// PHP's handler of `Surge\Table::exists`; see `get`.
unsafe extern "C" fn exists(ex: *mut zend_execute_data, ret: *mut zval) {
    // SAFETY: as in `get`.
    unsafe {
        match one_argument(&*ex).and_then(|(table, key)| table.exists_now(key)) {
            Some(found) => {
                let mut zv = Zval::new();
                zv.set_bool(found);
                ret.write(zv);
            }
            None => EXISTS.call_generated(ex, ret),
        }
    }
}

/// The table and the argument of a call with exactly one argument on a created table (or
/// one that `create()` was not called on, which the table's methods then refuse).
///
/// # Safety
/// `ex` is the frame of a call to a method of `Surge\Table`.
unsafe fn one_argument(ex: &zend_execute_data) -> Option<(&Table, &Zval)> {
    // SAFETY: every member of `u2` is the same 32-bit integer; for a call frame it is the
    // number of arguments passed, which are then in the frame's first slots.
    let key = unsafe {
        if ex.This.u2.num_args != 1 {
            return None;
        }
        ex.zend_call_arg(0)?
    };
    // None for anything but an initialised object of this class (from_zend_obj checks).
    let table = ZendClassObject::<Table>::from_zend_obj(ex.This.object()?)?;
    Some((table, key))
}
