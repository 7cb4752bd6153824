//! Which process made something that a child forked by a PHP callback (`pcntl_fork()`) inherits
//! a copy of: the child has none of that process's threads, so it must neither wait for them
//! nor do their work twice (write its parent's pushes, shut down its runtime).

/// The process that made the value holding it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MadeIn(u32);

impl MadeIn {
    pub(crate) fn here() -> Self {
        MadeIn(std::process::id())
    }

    /// This is a child forked from that process.
    pub(crate) fn forked(self) -> bool {
        std::process::id() != self.0
    }
}
