//! `Surge\WebSocket\Frame`: one whole message received from a client.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;

use crate::convert::binary_zval;

#[php_class]
#[php(name = "Surge\\WebSocket\\Frame")]
pub struct Frame {
    fd: u64,
    data: Zval,
    opcode: i64,
}

impl Frame {
    pub fn new(fd: u64, data: &[u8], binary: bool) -> Self {
        Frame { fd, data: binary_zval(data), opcode: if binary { 2 } else { 1 } }
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
