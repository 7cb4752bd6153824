//! A fixed-capacity table of typed rows in shared memory, for `Surge\Table`.
//!
//! Define columns (INT, FLOAT, STRING(n)), call [`Table::create`], then fork: every process
//! forked after `create()` reads and writes the same rows. Keys are 1 to [`KEY_MAX`] (63)
//! bytes, binary-safe. The table holds exactly the `size` rows given to [`Table::new`],
//! whatever the keys hash to. No PHP types here; the PHP class wraps this.
//!
//! # Layout
//! One `mmap(MAP_SHARED | MAP_ANONYMOUS)` region, made at `create()` and never resized,
//! seen as 64-bit words (every access to it, from any process, is atomic):
//! - header, 64 bytes: magic, hash seed, row count, free-list head, high-water mark,
//!   refused-insert counter;
//! - hash index: a power-of-two number (at least 2) of bucket words, each the head of a
//!   chain of rows (slot + 1, 0 = empty) and a version; then as many 32-bit words, each the
//!   bucket's lock: the pid of the process holding it (0 when none is);
//! - rows: `size` slots of `row_bytes` each: a seqlock word, a chain link, a 64-byte key
//!   block (length byte, key, zero padding; length 0 = dead row), then the columns (a
//!   STRING is a length word and its bytes). Bytes are packed into little-endian words.
//!
//! # Memory formula ([`memory_size`])
//! `HEADER_BYTES (64) + 12 * buckets + size * row_bytes`, where
//! `buckets = next_power_of_two(ceil(size * (1 + conflict_proportion)))` and
//! `row_bytes = 80 + sum(column bytes)`, a column taking 8 bytes for INT and FLOAT and
//! `8 + round_up(n, 8)` for STRING(n). E.g. INT + FLOAT + STRING(255) is 80+8+8+264 = 360
//! bytes a row. [`Table::memory_size`] returns exactly this; pages are committed as touched.
//!
//! # Concurrency protocol
//! Locks are spin words in the shared region (they spin briefly, then yield the CPU, then
//! sleep):
//! - Each row has a seqlock: a writer makes the word odd (a CAS, which also excludes other
//!   writers, and puts its pid in the word's top bits), writes, and makes it even again
//!   (without the pid); a reader copies the row and keeps the copy
//!   only if the word was even and unchanged around it. Readers write no shared memory
//!   but to release a dead writer's lock (below) or to wait their turn as a writer when
//!   writers keep the row busy (the lock taken, nothing changed), and never see a torn row (but one a
//!   killed writer left). incr/decr read and write under this lock: no lost updates.
//! - Each bucket has a lock (its holder's pid, set by one CAS), held to insert into or unlink
//!   from its chain, and a version that each such change bumps when it unlocks. Lock order
//!   is bucket, then row. A reader that finds a row busy through its spins and yields takes
//!   the row's lock as a writer would, so that writers in a loop cannot starve it.
//! - get/exists walk the chain without locks. A hit is final (the row was live with that
//!   key in a stable copy). A miss is final only if the chain's version did not move during
//!   the walk; otherwise it walks again, because a deleted row may have been reused in
//!   another chain while the walk stood on it. A freed row is reused only after the bump.
//! - set/incr on an existing key lock just its row (and re-check the key under the lock);
//!   a missing key takes the bucket lock, looks again, then inserts. Delete marks the row
//!   dead under its row lock, unlinks it, bumps the version, frees the slot, then unlocks the
//!   bucket: rows are taken and given back only under a bucket lock.
//! - Free slots form a lock-free stack with a tag against ABA; slots never used are handed
//!   out from a high-water mark. The row count is reserved before a slot is taken, so the
//!   table never holds more than its capacity and "full" is exact when nothing is in flight.
//!
//! A process killed (SIGKILL, the OOM killer) inside one of these few-store critical sections
//! leaves its row or bucket locked. A process that has waited on it for about 10 ms looks
//! for the holder's pid, and if that process is gone (or a zombie) releases the lock in its
//! place: the row keeps what the dead `set` had written (torn at word granularity: a string
//! may be half old, half new), a chain the rows it had linked or unlinked; a row it had not
//! linked yet is marked dead. A row the dead process was inserting or deleting stays out of
//! the count's reach until an insert finds the table full: it then locks every bucket and
//! gives back the rows that neither a chain nor the free list holds (see `reclaim` in
//! table.rs). A holder whose pid was reused by then is not seen as gone.
//!
//! # Iteration
//! [`Table::next_entry`] / [`Table::iter`] walk slots in order, holding nothing between
//! rows, and yield each row that is live when its slot is read, as a stable copy. A row
//! deleted before the cursor reaches it is not seen; a row inserted meanwhile is seen if it
//! lands in a slot after the cursor; a key deleted and inserted again meanwhile may be seen
//! twice or not at all. Never a crash, never a torn row. Cost is O(slots ever used).

//! # Cost
//! `cargo run --release -p surge-table --example bench` times single operations on a
//! 3-column row. On the 2-core development VM, with keys in cache: get_into about 45 ns,
//! exists 20-30 ns, incr about 40 ns; about 85 ns for get_into over 10k rows spread across
//! memory, where cache misses dominate. `get` adds the allocation of the row; `get_into`
//! reuses the caller's buffers.

mod error;
mod process;
mod schema;
mod shm;
mod sync;
mod table;

pub use error::TableError;
pub use schema::{
    bucket_count, checked_string_size, checked_table_size, memory_size, row_bytes, Column,
    ColumnType, Value, BUCKET_BYTES, HEADER_BYTES, KEY_MAX, MAX_ROWS, ROW_HEADER_BYTES, STRING_MAX,
};
/// The shared mapping under a table, for other counters that forked processes share.
pub use shm::Mapping;
pub use table::{hash_words, Entry, Iter, RowVersion, Stats, Table};
