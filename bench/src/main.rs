//! surge-load: the load generator of Surge's benchmarks (see bench/run.sh and BENCHMARKS.md).
//!
//! `surge-load SCENARIO --key value ...` runs one scenario against a server on this machine and
//! prints its result as one JSON line on stdout; errors go to stderr with exit status 2.

mod args;
mod client;
mod delivery;
mod procfs;
mod scenarios;
mod stats;

use scenarios::{echo, fanout, idle, laravel};

fn usage() -> String {
    format!(
        "usage:\n  surge-load {}\n  surge-load {}\n  surge-load {}\n  surge-load {}",
        echo::USAGE,
        idle::USAGE,
        fanout::USAGE,
        laravel::USAGE
    )
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let run = match argv.first().map(String::as_str) {
        Some("echo") => echo::run,
        Some("idle") => idle::run,
        Some("fanout") => fanout::run,
        Some("laravel") => laravel::run,
        Some("-h" | "--help" | "help") => {
            println!("{}", usage());
            return;
        }
        _ => {
            eprintln!("{}", usage());
            std::process::exit(2);
        }
    };
    match args::Args::parse(&argv[1..]).and_then(run) {
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("surge-load {}: {e}", argv[0]);
            std::process::exit(2);
        }
    }
}
