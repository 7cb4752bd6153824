//! `Surge\WebSocket\Frame`: one whole message received from a client.

use std::cell::RefCell;

use ext_php_rs::builders::{ClassBuilder, ClassProperty};
use ext_php_rs::convert::IntoZval;
use ext_php_rs::flags::PropertyFlags;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendObject, Zval};

use crate::convert::binary_zval;

/// Its properties are plain declared PHP properties, not ext-php-rs getters: once PHP has read
/// one, the next reads of that line of PHP code go straight to the object's slot, where a
/// getter cost a call through ext-php-rs's property handler (about 170 instructions) each time.
/// Swoole's frame has public properties too.
#[php_class]
#[php(name = "Surge\\WebSocket\\Frame")]
#[php(modifier = declare_properties)]
pub struct Frame {}

/// The properties, in the order of their slots in the object (`fill`).
const PROPERTIES: [&str; 4] = ["fd", "data", "opcode", "finish"];
const DATA: usize = 1;

fn declare_properties(mut builder: ClassBuilder) -> ClassBuilder {
    for name in PROPERTIES {
        builder = builder.property(ClassProperty {
            name: name.into(),
            flags: PropertyFlags::Public,
            default: None,
            docs: &[],
            ty: None,
            nullable: false,
            readonly: false,
            default_stub: None,
        });
    }
    builder
}

fn long(n: i64) -> Zval {
    let mut zv = Zval::new();
    zv.set_long(n);
    zv
}

/// The slot of the property `PROPERTIES[i]`.
fn slot(object: &mut ZendObject, i: usize) -> &mut Zval {
    debug_assert!(i < PROPERTIES.len());
    // SAFETY: the class declares PROPERTIES and nothing else, so its objects have their slots
    // (declared properties take the slots in order), and they always hold a valid zval.
    unsafe { &mut *object.properties_table.as_mut_ptr().add(i).cast::<Zval>() }
}

/// Writes a message's values into a frame object's properties, whatever the last callback left
/// there (the old values are released, a reference is replaced, not written through).
fn fill(object: &mut ZendObject, fd: u64, data: &[u8], binary: bool) {
    let values = [
        long(fd as i64),
        binary_zval(data),
        long(if binary { 2 } else { 1 }),
        Zval::from(true),
    ];
    for (i, value) in values.into_iter().enumerate() {
        *slot(object, i) = value;
    }
}

/// PHP's object flag (`zend_types.h`, the GC flag bit 7) for an object a `WeakReference` or
/// `WeakMap` points to; ext-php-rs has no binding for it.
const IS_OBJ_WEAKLY_REFERENCED: u32 = 1 << 7;

/// The frame objects given to message callbacks. A callback seldom keeps its frame: when only
/// we still hold it once the callback returned, the next message reuses it, instead of an object
/// allocated, initialised and destroyed for every message. Held zvals are invisible to PHP's GC:
/// `clear` when the server stops.
#[derive(Default)]
pub struct Frames(RefCell<Option<Zval>>);

impl Frames {
    /// A frame object for a message, the spare one if there is one.
    pub fn take(&self, fd: u64, data: &[u8], binary: bool) -> PhpResult<Zval> {
        let mut frame = match self.0.borrow_mut().take() {
            Some(spare) => spare,
            None => ZendClassObject::new(Frame {}).into_zval(false)?,
        };
        if let Some(object) = frame.object_mut() {
            fill(object, fd, data, binary);
        }
        Ok(frame)
    }

    /// Keeps `frame` for the next message if the callback let it go: no reference left (not
    /// even a weak one) and no property table built (a dynamic property added, or the object
    /// listed by `get_object_vars`, `var_dump`...: such a frame is simply not reused).
    pub fn give_back(&self, mut frame: Zval) {
        let Some(object) = frame.object_mut() else {
            return;
        };
        // SAFETY: reading the type info word of a live object's header.
        let flags = unsafe { object.gc.u.type_info };
        if object.gc.refcount != 1
            || flags & IS_OBJ_WEAKLY_REFERENCED != 0
            || !object.properties.is_null()
        {
            return;
        }
        // The message itself is not kept waiting for the next one.
        *slot(object, DATA) = Zval::new();
        *self.0.borrow_mut() = Some(frame);
    }

    pub fn clear(&self) {
        self.0.borrow_mut().take();
    }
}
