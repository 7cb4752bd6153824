//! `$server->connections`: the established WebSocket connections when it was read.

use std::cell::Cell;

use ext_php_rs::prelude::*;
use ext_php_rs::zend::ce;

#[php_class]
#[php(name = "Surge\\WebSocket\\Connections")]
#[php(implements(ce = ce::countable, stub = "\\Countable"))]
#[php(implements(ce = ce::iterator, stub = "\\Iterator"))]
pub struct Connections {
    fds: Vec<u64>,
    pos: Cell<usize>,
}

impl Connections {
    pub fn new(fds: Vec<u64>) -> Self {
        Connections {
            fds,
            pos: Cell::new(0),
        }
    }
}

#[php_impl]
impl Connections {
    /// How many connections were established when `$server->connections` was read.
    pub fn count(&self) -> i64 {
        self.fds.len() as i64
    }

    /// The current fd.
    pub fn current(&self) -> Option<i64> {
        self.fds.get(self.pos.get()).map(|fd| *fd as i64)
    }

    pub fn key(&self) -> i64 {
        self.pos.get() as i64
    }

    pub fn next(&self) {
        self.pos.set(self.pos.get() + 1);
    }

    pub fn rewind(&self) {
        self.pos.set(0);
    }

    pub fn valid(&self) -> bool {
        self.pos.get() < self.fds.len()
    }
}
