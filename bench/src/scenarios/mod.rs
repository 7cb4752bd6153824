//! One module per scenario. Each takes its arguments, runs on its own Tokio runtime and
//! returns its result as one JSON object (printed as one line by `main`).

pub mod echo;
pub mod fanout;
pub mod idle;
pub mod laravel;
