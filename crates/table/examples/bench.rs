//! Cost of single operations on a 3-column row (INT, FLOAT, STRING(32)), one process.
//!   CARGO_TARGET_DIR=... cargo run --release -p surge-table --example bench
//! Prints nanoseconds per operation. An argument runs only
//! the cases whose name contains it (handy under `perf record`).

use std::hint::black_box;
use std::time::Instant;

use surge_table::{ColumnType, Table, Value};

const ROWS: usize = 10_000;
const BATCH: usize = 10_000;
const BATCHES: usize = 200;

/// The best of many short batches: on a shared machine most batches are cut by other
/// processes, and the best one is the closest to the cost of the code.
fn measure(name: &str, mut op: impl FnMut(usize)) {
    if !std::env::args()
        .nth(1)
        .is_none_or(|only| name.contains(&only))
    {
        return;
    }
    let best = (0..BATCHES)
        .map(|b| {
            let start = Instant::now();
            for i in b * BATCH..(b + 1) * BATCH {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:<34} {best:>7.1} ns");
}

fn main() {
    let t = Table::new(ROWS, 0.2).unwrap();
    t.add_column("id", ColumnType::Int).unwrap();
    t.add_column("score", ColumnType::Float).unwrap();
    t.add_column("name", ColumnType::Str(32)).unwrap();
    t.create().unwrap();
    let keys: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| format!("user:{i}").into_bytes())
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let row = [
            ("id", Value::Int(i as i64)),
            ("score", Value::Float(i as f64 / 3.0)),
            ("name", Value::from(format!("name number {i}"))),
        ];
        t.set(key, &row).unwrap();
    }
    // Keys far apart, so most rows come from L3 or RAM, as in a big table; and a few keys
    // used over and over, which stay in L1: the cost of the code itself.
    let key = |i: usize| &keys[(i * 7919) % ROWS][..];
    let hot = |i: usize| &keys[i % 64][..];
    let mut out = Vec::new();
    measure("get_into, 64 hot keys", |i| {
        black_box(t.get_into(hot(i), &mut out).unwrap());
    });
    measure("exists, 64 hot keys", |i| {
        black_box(t.exists(hot(i)).unwrap());
    });
    measure("incr INT, 64 hot keys", |i| {
        black_box(t.incr(hot(i), "id", Value::Int(1)).unwrap());
    });
    measure("get_into, keys spread over 10k rows", |i| {
        black_box(t.get_into(key(i), &mut out).unwrap());
    });
    measure("get (allocates the row)", |i| {
        black_box(t.get(key(i)).unwrap());
    });
    measure("get_field INT", |i| {
        black_box(t.get_field(key(i), "id").unwrap());
    });
    measure("exists (hit)", |i| {
        black_box(t.exists(key(i)).unwrap());
    });
    measure("exists (miss)", |i| {
        black_box(
            t.exists(if i % 2 == 0 { b"nope:1" } else { b"nope:2" })
                .unwrap(),
        );
    });
    measure("incr INT", |i| {
        black_box(t.incr(key(i), "id", Value::Int(1)).unwrap());
    });
    let name = [("name", Value::from("a new name"))];
    measure("set one STRING column", |i| {
        t.set(key(i), &name).unwrap();
    });
    measure("del + set (new row)", |i| {
        let k = key(i);
        t.del(k).unwrap();
        t.set(k, &name).unwrap();
    });
    let slots = t.stats().unwrap().slots_touched;
    let start = Instant::now();
    let rows = t.iter().unwrap().count();
    let per_row = start.elapsed().as_nanos() as f64 / rows as f64;
    println!(
        "{:<34} {per_row:>7.1} ns ({rows} rows, {slots} slots)",
        "iterate, per row"
    );
}
