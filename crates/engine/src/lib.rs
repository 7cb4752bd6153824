//! Surge's network engine: WebSocket and HTTP on Tokio threads. It knows nothing of PHP: the
//! PHP layer (crates/ext) drives it through [`Engine`] and the [`Event`]s it hands over.

mod budget_queue;
mod bus;
pub mod channels;
mod client_frames;
pub mod config;
mod connection;
pub mod cookie;
mod deflate;
mod engine;
pub mod events;
pub mod frame;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod heartbeat;
mod http_compression;
pub mod http_file;
pub mod http_stream;
mod inline_dispatch;
mod lingering_close;
mod listener;
mod listener_not_inherited;
mod local;
mod logging;
mod made_in;
mod memory;
mod message_reader;
pub mod multipart_form;
pub mod pusher;
mod rate_limit;
pub mod redis_bridge;
pub mod registry;
mod send_timeout;
mod shared;
mod signal_arrival;
mod socket;
mod static_files;
pub mod stats;
pub mod stop_watchdog;
mod tasks;
mod timers;
mod tls;
mod unix_send;
mod wake_signal;
pub mod workers;

pub use config::{Config, ConfigError, Value};
pub use engine::{ClientInfo, Engine, Handler, Payload};
pub use events::{
    Admission, Closed, Event, HttpRequest, HttpResponse, PusherEvent, ReplyTo, Responder, Task,
};
pub use redis_bridge::{BridgeSnapshot, BridgeState, RedisBridge};
pub use registry::PushError;
pub use signal_arrival::{remember_hangup_ignored, stop_on_hangup};
pub use stats::{mark_server_start, StatsSnapshot};
pub use tasks::NO_RESULT;
pub use workers::{Pool, Worker};
