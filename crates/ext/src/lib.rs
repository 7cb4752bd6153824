//! The PHP extension: registers Surge's classes and constants. Thin adapters only: the network
//! work is in `surge-engine`, the shared table in `surge-table`.

use ext_php_rs::prelude::*;

mod callable;
mod callbacks;
mod connections;
mod convert;
mod event_loop;
mod exception;
mod fatal_error;
mod form_input;
mod frame;
mod pipe_message;
mod request;
mod response;
mod server;
mod static_timer;
mod supervisor;
mod table;
mod table_fast;
mod tasks;
mod timers;
mod unanswered;

/// Constants with Swoole's names and values, so ported code keeps working.
const CONSTANTS: &[(&str, i64)] = &[
    ("WEBSOCKET_OPCODE_TEXT", server::OPCODE_TEXT),
    ("WEBSOCKET_OPCODE_BINARY", server::OPCODE_BINARY),
    ("WEBSOCKET_OPCODE_CLOSE", 8),
    ("WEBSOCKET_OPCODE_PING", server::OPCODE_PING),
    ("WEBSOCKET_OPCODE_PONG", 10),
    ("WEBSOCKET_STATUS_CONNECTION", 1),
    ("WEBSOCKET_STATUS_HANDSHAKE", 2),
    ("WEBSOCKET_STATUS_ACTIVE", 3),
    ("WEBSOCKET_STATUS_FRAME", 3),
    ("WEBSOCKET_STATUS_CLOSING", 4),
    ("WEBSOCKET_CLOSE_NORMAL", 1000),
    ("WEBSOCKET_CLOSE_GOING_AWAY", 1001),
    ("WEBSOCKET_CLOSE_PROTOCOL_ERROR", 1002),
    ("WEBSOCKET_CLOSE_DATA_ERROR", 1003),
    ("WEBSOCKET_CLOSE_STATUS_ERROR", 1005),
    ("WEBSOCKET_CLOSE_ABNORMAL", 1006),
    ("WEBSOCKET_CLOSE_MESSAGE_ERROR", 1007),
    ("WEBSOCKET_CLOSE_POLICY_ERROR", 1008),
    ("WEBSOCKET_CLOSE_MESSAGE_TOO_BIG", 1009),
    ("WEBSOCKET_CLOSE_EXTENSION_MISSING", 1010),
    ("WEBSOCKET_CLOSE_SERVER_ERROR", 1011),
    ("WEBSOCKET_CLOSE_TRY_AGAIN_LATER", 1013),
    ("SWOOLE_BASE", server::SWOOLE_BASE),
    ("SWOOLE_PROCESS", server::SWOOLE_PROCESS),
    ("SWOOLE_SOCK_TCP", server::SWOOLE_SOCK_TCP),
    ("SWOOLE_SOCK_TCP6", server::SWOOLE_SOCK_TCP6),
    ("SWOOLE_SSL", server::SWOOLE_SSL),
    (
        "SWOOLE_WEBSOCKET_FLAG_FIN",
        server::SWOOLE_WEBSOCKET_FLAG_FIN,
    ),
    (
        "SWOOLE_WEBSOCKET_FLAG_COMPRESS",
        server::SWOOLE_WEBSOCKET_FLAG_COMPRESS,
    ),
];

extern "C" {
    /// PHP's own (ZEND_API), as `class_alias()` uses it: ext-php-rs has no binding for it.
    fn zend_register_class_alias_ex(
        name: *const std::ffi::c_char,
        name_len: usize,
        ce: *mut ext_php_rs::ffi::zend_class_entry,
        persistent: bool,
    ) -> i32;
}

/// Swoole's other server classes, which ported code names in type hints (`function
/// onMessage(Swoole\Server $server, ...)`) and constructs (an HTTP server): one class serves
/// both here.
const SERVER_ALIASES: [&str; 2] = ["Surge\\Server", "Surge\\Http\\Server"];

/// RINIT of the first request: the aliases, for the life of the process as the class's own
/// name (the classes are registered after the module's own startup function runs, so not
/// there). Persistent, so made once: one made per request was never freed with the class.
unsafe extern "C" fn request_startup(_ty: i32, _module: i32) -> i32 {
    use ext_php_rs::class::RegisteredClass;
    static MADE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if MADE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return 0;
    }
    let ce = std::ptr::from_ref(server::Server::get_metadata().ce()).cast_mut();
    for alias in SERVER_ALIASES {
        // SAFETY: a name and length of our own, the class entry PHP registered, in the
        // process's first request, before any script runs.
        if unsafe { zend_register_class_alias_ex(alias.as_ptr().cast(), alias.len(), ce, true) }
            != 0
        {
            return -1;
        }
    }
    0
}

unsafe extern "C" fn startup(_ty: i32, _module: i32) -> i32 {
    open_standard_fds();
    surge_engine::remember_hangup_ignored();
    match exception::register() {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Puts /dev/null on stdin, stdout or stderr where the process was started with it closed
/// (`php server.php >&- 2>&-`): the lowest free descriptor goes to the next file opened, so a
/// client's socket became fd 2 and got Surge's log lines and PHP's errors in its stream.
fn open_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether the descriptor is open; the lower ones are open by
        // now, so open() takes this one.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

#[php_module]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    let mut module = module
        .startup_function(startup)
        .request_startup_function(request_startup)
        .class::<server::Server>()
        .class::<frame::Frame>()
        .class::<request::Request>()
        .class::<response::Response>()
        .class::<connections::Connections>()
        .class::<table::Table>()
        .class::<static_timer::Timer>()
        .constant(("SURGE_VERSION", env!("CARGO_PKG_VERSION"), &[]));
    for (name, value) in CONSTANTS.iter().chain(&server::SWOOLE_LOG_LEVELS) {
        module = module.constant((name, *value, &[]));
    }
    module
}
