//! `Surge\WebSocket\Frame`: one whole message received from a client.

use std::cell::RefCell;

use ext_php_rs::convert::IntoZval;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, Zval};

use crate::convert::binary_zval;

#[php_class]
#[php(name = "Surge\\WebSocket\\Frame")]
pub struct Frame {
    fd: u64,
    data: Zval,
    opcode: i64,
}

impl Frame {
    fn new(fd: u64, data: &[u8], binary: bool) -> Self {
        Frame { fd, data: binary_zval(data), opcode: if binary { 2 } else { 1 } }
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
        let frame = Frame::new(fd, data, binary);
        if let Some(mut spare) = self.0.borrow_mut().take() {
            if let Some(object) = spare.object_mut().and_then(ZendClassObject::<Frame>::from_zend_obj_mut) {
                **object = frame;
                return Ok(spare);
            }
        }
        Ok(frame.into_zval(false)?)
    }

    /// Keeps `frame` for the next message if the callback let it go: no reference left (not
    /// even a weak one) and no property added to it.
    pub fn give_back(&self, mut frame: Zval) {
        let Some(object) = frame.object_mut() else { return };
        // SAFETY: reading the type info word of a live object's header.
        let flags = unsafe { object.gc.u.type_info };
        if object.gc.refcount != 1 || flags & IS_OBJ_WEAKLY_REFERENCED != 0 || !object.properties.is_null() {
            return;
        }
        if let Some(spare) = ZendClassObject::<Frame>::from_zend_obj_mut(object) {
            // The message itself is not kept waiting for the next one.
            spare.data = Zval::new();
            *self.0.borrow_mut() = Some(frame);
        }
    }

    pub fn clear(&self) {
        self.0.borrow_mut().take();
    }
}

#[php_impl]
impl Frame {
    /// The sender's connection id.
    #[php(getter)]
    pub fn get_fd(&self) -> i64 {
        self.fd as i64
    }

    /// The message: UTF-8 text for opcode 1, bytes for opcode 2.
    #[php(getter)]
    pub fn get_data(&self) -> Zval {
        self.data.shallow_clone()
    }

    /// WEBSOCKET_OPCODE_TEXT (1) or WEBSOCKET_OPCODE_BINARY (2).
    #[php(getter)]
    pub fn get_opcode(&self) -> i64 {
        self.opcode
    }

    /// Always true: fragmented messages are reassembled before PHP sees them.
    #[php(getter)]
    pub fn get_finish(&self) -> bool {
        true
    }
}
