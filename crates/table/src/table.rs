//! The table itself: the schema before `create()`, the shared region after it, and every
//! operation on rows. The protocol is described in the crate documentation (lib.rs); the
//! comments here say why each step is where it is.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};

use crate::error::TableError;
use crate::process;
use crate::schema::{
    bucket_count, check_conflict_proportion, check_size, memory_size, row_bytes, Column,
    ColumnType, Value, HEADER_BYTES, KEY_BYTES, KEY_MAX, STRING_MAX,
};
use crate::shm::Mapping;
use crate::sync::{chain_head, chain_version, read_stable, Backoff, BucketGuard, RowGuard};

// Words of the header.
const H_MAGIC: usize = 0;
const H_SEED: usize = 1;
const H_COUNT: usize = 2;
const H_FREE: usize = 3;
const H_UNUSED: usize = 4;
const H_FULL: usize = 5;
/// Buckets taken over from a holder that died, and that count when the table last reclaimed
/// the rows such deaths can lose (see `reclaim`).
const H_DEATHS: usize = 6;
const H_RECLAIMED: usize = 7;
const MAGIC: u64 = u64::from_be_bytes(*b"SURGETB1");

// Words of a row.
const SEQ: usize = 0;
const NEXT: usize = 1;
const KEY: usize = 2;
const KEY_WORDS: usize = KEY_BYTES / 8;
const FIRST_COLUMN: usize = KEY + KEY_WORDS;

/// A fixed-capacity table of typed rows in shared memory. See the crate documentation.
pub struct Table {
    size: usize,
    conflict_proportion: f64,
    pending: Mutex<Vec<Column>>,
    created: OnceLock<Shared>,
}

/// A row found by iteration: where it is, its key and its values in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The row's slot; pass `slot + 1` to [`Table::next_entry`] to go on.
    pub slot: usize,
    pub key: Vec<u8>,
    pub values: Vec<Value>,
}

/// Which content a row had: its slot and its seqlock word. Every write to a row moves the
/// word on (a delete and a new key in the same slot included), in whichever process (so does
/// a read that had to take the row's lock: a remembered version is then read again), and the
/// word comes back to a value it had only after 2^41 writes to the row, so two reads with the
/// same version saw the same key and values. For caches of rows: see [`Table::get_versioned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowVersion {
    pub slot: usize,
    pub seq: u64,
}

/// A snapshot of the table's counters. Chain figures come from a walk of the index, so they
/// cost O(buckets) and are approximate while other processes insert or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Live rows (including inserts under way).
    pub rows: usize,
    /// Rows the table can hold: exactly the size given to `new`.
    pub capacity: usize,
    /// Bytes mapped, as [`crate::memory_size`] computes them.
    pub memory_size: usize,
    /// Bytes of one row.
    pub row_bytes: usize,
    /// Buckets of the hash index.
    pub buckets: usize,
    /// Buckets whose chain is not empty.
    pub used_buckets: usize,
    /// Rows that share their bucket with an earlier row of the chain.
    pub collisions: usize,
    /// Rows in the longest chain.
    pub longest_chain: usize,
    /// Slots ever used; iteration scans these only.
    pub slots_touched: usize,
    /// Inserts refused because the table was full.
    pub full_refusals: u64,
}

impl Table {
    /// A table of exactly `size` rows (at most [`crate::MAX_ROWS`]). `conflict_proportion`
    /// (0 to 1, Swoole's default is 0.2) only sizes the hash index; see
    /// [`crate::bucket_count`]. Add columns, then call [`Table::create`].
    pub fn new(size: usize, conflict_proportion: f64) -> Result<Table, TableError> {
        check_size(size)?;
        check_conflict_proportion(conflict_proportion)?;
        Ok(Table {
            size,
            conflict_proportion,
            pending: Mutex::new(Vec::new()),
            created: OnceLock::new(),
        })
    }

    /// Adds a column; only before `create()`. STRING sizes run from 1 to
    /// [`crate::STRING_MAX`] bytes.
    pub fn add_column(&self, name: &str, ty: ColumnType) -> Result<(), TableError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if self.created.get().is_some() {
            return Err(TableError::ColumnAfterCreate {
                column: name.to_string(),
            });
        }
        if name.is_empty() {
            return Err(TableError::EmptyColumnName);
        }
        if pending.iter().any(|c| c.name == name) {
            return Err(TableError::DuplicateColumn {
                column: name.to_string(),
            });
        }
        if let ColumnType::Str(max) = ty {
            if !(1..=STRING_MAX).contains(&max) {
                return Err(TableError::StringSize {
                    column: name.to_string(),
                    got: max as i128,
                });
            }
        }
        pending.push(Column {
            name: name.to_string(),
            ty,
        });
        Ok(())
    }

    /// Maps the shared region. Processes forked after this share the rows.
    pub fn create(&self) -> Result<(), TableError> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if self.created.get().is_some() {
            return Err(TableError::AlreadyCreated);
        }
        let shared = Shared::map(self.size, self.conflict_proportion, pending.clone())?;
        // Before any fork: each child must know its own pid to mark the locks it takes.
        crate::process::watch_forks();
        // Cannot fail: the lock is held and nothing was set.
        let _ = self.created.set(shared);
        Ok(())
    }

    pub fn is_created(&self) -> bool {
        self.created.get().is_some()
    }

    /// Rows the table holds at most: exactly the `size` given to `new` (Swoole's tables hold
    /// fewer than their size once keys collide; this one always holds `size`).
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Bytes mapped; equal to [`crate::memory_size`] for this table's size and schema.
    pub fn memory_size(&self) -> Result<usize, TableError> {
        Ok(self.shared()?.map.len())
    }

    /// The columns in schema order, which is the order of values in rows.
    pub fn columns(&self) -> Result<&[Column], TableError> {
        Ok(&self.shared()?.columns)
    }

    /// The position of a column in rows, or an error naming the known columns.
    pub fn column_index(&self, name: &str) -> Result<usize, TableError> {
        self.shared()?.column(name)
    }

    /// Writes the given columns of a row. An existing row keeps its other columns; a new row
    /// gets 0, 0.0 and "" for them. Types must match the columns, except that an integer
    /// may go into a FLOAT column; floats never go into INT columns and numeric strings are
    /// not numbers. Everything is checked before anything is written. When a column is given
    /// twice, the last value wins.
    pub fn set(&self, key: &[u8], values: &[(&str, Value)]) -> Result<(), TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        for (name, value) in values {
            t.check_value(name, value)?;
        }
        t.upsert(&key, |row| {
            for (name, value) in values {
                if let Ok(c) = t.column(name) {
                    t.store_value(row, c, value);
                }
            }
            Ok(())
        })
    }

    /// The whole row in column order, or None.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<Value>>, TableError> {
        let mut out = Vec::new();
        Ok(self.get_into(key, &mut out)?.then_some(out))
    }

    /// Like `get`, but fills `out` (reusing its string buffers) and says whether the key was
    /// there; on a miss `out` is emptied. The allocation-free path for hot loops.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<Value>) -> Result<bool, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        let found = t.find(&key, |_, row| t.load_values(row, out)).is_some();
        if !found {
            out.clear();
        }
        Ok(found)
    }

    /// For callers that keep the rows they have read: like `get_into`, but `is_kept(version)`
    /// is asked first whether the caller already holds the row as it was at that version, and
    /// then `out` is not filled. Returns the row's version, and whether `out` holds the row;
    /// None when the key is missing (`out` untouched).
    pub fn get_versioned(
        &self,
        key: &[u8],
        out: &mut Vec<Value>,
        mut is_kept: impl FnMut(RowVersion) -> bool,
    ) -> Result<Option<(RowVersion, bool)>, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        Ok(t.find(&key, |version, row| {
            let kept = is_kept(version);
            if !kept {
                t.load_values(row, out);
            }
            (version, !kept)
        }))
    }

    /// True while the row read at `version` is unchanged: no process has written, deleted or
    /// reused its slot since. One atomic load, with no key lookup, for callers that remember
    /// which slot a key was in (a key moved to another slot leaves this one changed).
    pub fn is_current(&self, version: RowVersion) -> bool {
        match self.created.get() {
            Some(t) if version.slot < t.capacity => {
                t.row(version.slot)[SEQ].load(Acquire) == version.seq
            }
            _ => false,
        }
    }

    /// One column of a row, or None when the key is missing.
    pub fn get_field(&self, key: &[u8], column: &str) -> Result<Option<Value>, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        let c = t.column(column)?;
        Ok(t.find(&key, |_, row| {
            let mut value = Value::Int(0);
            t.load_value(row, c, &mut value);
            value
        }))
    }

    pub fn exists(&self, key: &[u8]) -> Result<bool, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        Ok(t.find(&key, |_, _| ()).is_some())
    }

    /// Deletes a row; false when there was none.
    pub fn del(&self, key: &[u8]) -> Result<bool, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        Ok(t.delete(&key))
    }

    /// Adds `by` to an INT or FLOAT column atomically and returns the new value. A missing
    /// row is created (all columns zero/empty) first. INT columns take integer steps and
    /// refuse to overflow; FLOAT columns take integer or float steps.
    pub fn incr(&self, key: &[u8], column: &str, by: Value) -> Result<Value, TableError> {
        self.add(key, column, by, false)
    }

    /// Subtracts `by`; otherwise as [`Table::incr`].
    pub fn decr(&self, key: &[u8], column: &str, by: Value) -> Result<Value, TableError> {
        self.add(key, column, by, true)
    }

    /// Live rows.
    pub fn count(&self) -> Result<usize, TableError> {
        Ok(self.shared()?.count())
    }

    /// The first live row at `slot` or after it. Start at 0 and go on from `entry.slot + 1`:
    /// nothing is held between calls, so other processes may write meanwhile (see the crate
    /// documentation for what iteration then sees).
    pub fn next_entry(&self, slot: usize) -> Result<Option<Entry>, TableError> {
        Ok(self.shared()?.entry_from(slot))
    }

    /// All live rows, in slot order; built on [`Table::next_entry`].
    pub fn iter(&self) -> Result<Iter<'_>, TableError> {
        Ok(Iter {
            table: self.shared()?,
            slot: 0,
        })
    }

    pub fn stats(&self) -> Result<Stats, TableError> {
        Ok(self.shared()?.stats())
    }

    fn shared(&self) -> Result<&Shared, TableError> {
        self.created.get().ok_or(TableError::NotCreated)
    }

    fn add(&self, key: &[u8], column: &str, by: Value, decr: bool) -> Result<Value, TableError> {
        let t = self.shared()?;
        let key = t.key(key)?;
        let c = t.column(column)?;
        let ty = t.columns[c].ty;
        let word = t.offsets[c];
        let add_float = |step: f64| {
            let step = if decr { -step } else { step };
            t.upsert(&key, |row| {
                let next = f64::from_bits(row[word].load(Relaxed)) + step;
                row[word].store(next.to_bits(), Relaxed);
                Ok(Value::Float(next))
            })
        };
        match (ty, &by) {
            (ColumnType::Str(_), _) => Err(TableError::NotNumeric {
                column: column.to_string(),
            }),
            (ColumnType::Int, Value::Int(step)) => t.upsert(&key, |row| {
                let current = row[word].load(Relaxed) as i64;
                let next = if decr {
                    current.checked_sub(*step)
                } else {
                    current.checked_add(*step)
                };
                let next = next.ok_or_else(|| TableError::Overflow {
                    column: column.to_string(),
                    current,
                    op: if decr { "decr" } else { "incr" },
                    by: *step,
                })?;
                row[word].store(next as u64, Relaxed);
                Ok(Value::Int(next))
            }),
            (ColumnType::Float, Value::Int(step)) => add_float(*step as f64),
            (ColumnType::Float, Value::Float(step)) => add_float(*step),
            _ => Err(TableError::WrongStep {
                column: column.to_string(),
                column_type: ty,
                got: by.kind(),
            }),
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Table");
        d.field("capacity", &self.size)
            .field("conflict_proportion", &self.conflict_proportion);
        match self.created.get() {
            Some(t) => d.field("columns", &t.columns).field("rows", &t.count()),
            None => d.field(
                "columns",
                &*self.pending.lock().unwrap_or_else(|e| e.into_inner()),
            ),
        };
        d.field("created", &self.is_created()).finish()
    }
}

/// Iterator over live rows; see [`Table::iter`].
pub struct Iter<'a> {
    table: &'a Shared,
    slot: usize,
}

impl Iterator for Iter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let entry = self.table.entry_from(self.slot)?;
        self.slot = entry.slot + 1;
        Some(entry)
    }
}

/// A checked key and its hash. It is stored as a 64-byte block: the length byte, the key,
/// zero padding. The words of that block are computed when needed rather than kept in an
/// array: moving such an array around costs more (store-forwarding stalls) than the two
/// loads that make a word.
struct Key<'a> {
    bytes: &'a [u8],
    hash: u64,
}

impl Key<'_> {
    /// Words of the block that hold the length and the key; the rest of the block is unused.
    fn used(&self) -> usize {
        (self.bytes.len() + 1).div_ceil(8)
    }

    /// Word `i` of the block: key bytes 8i-1..8i+7, behind the length byte for word 0.
    #[inline]
    fn word(&self, i: usize) -> u64 {
        let len = self.bytes.len();
        if i == 0 {
            len as u64 | le_word(&self.bytes[..len.min(7)]) << 8
        } else {
            le_word(&self.bytes[8 * i - 1..len.min(8 * i + 7)])
        }
    }

    /// Compares only the words the key uses: the length byte is in the first, and the padding
    /// of the last is zero in both, so equal words mean equal keys.
    #[inline]
    fn matches(&self, row: &[AtomicU64]) -> bool {
        (0..self.used()).all(|i| row[KEY + i].load(Relaxed) == self.word(i))
    }

    fn store(&self, row: &[AtomicU64]) {
        for i in 0..self.used() {
            row[KEY + i].store(self.word(i), Relaxed);
        }
    }
}

/// The created table: the mapping and what every process needs to find its way in it.
/// Forked children inherit a copy of this struct that points at the same shared pages.
struct Shared {
    map: Mapping,
    columns: Vec<Column>,
    /// Word offset of each column inside a row.
    offsets: Vec<usize>,
    row_words: usize,
    capacity: usize,
    bucket_mask: usize,
    buckets_at: usize,
    /// Word where the buckets' owner pids start, two to a word.
    owners_at: usize,
    rows_at: usize,
    seed: u64,
    /// When this process last looked for buckets held by gone processes (ms since the epoch):
    /// at most once a second, as it reads every owner word (a 1M-row table: ~1 ms).
    owners_looked_at: AtomicU64,
}

impl Shared {
    fn map(size: usize, cp: f64, columns: Vec<Column>) -> Result<Shared, TableError> {
        let bytes = memory_size(size, cp, &columns)?;
        let buckets = bucket_count(size, cp)?;
        let map = Mapping::new(bytes)?;
        let mut offsets = Vec::with_capacity(columns.len());
        let mut word = FIRST_COLUMN;
        for c in &columns {
            offsets.push(word);
            word += c.ty.bytes() / 8;
        }
        let row_words = row_bytes(&columns) / 8;
        debug_assert_eq!(word, row_words);
        // A per-table secret, so nobody outside can choose keys that all land in one chain.
        let seed = RandomState::new().hash_one(bytes);
        let buckets_at = HEADER_BYTES / 8;
        let shared = Shared {
            map,
            columns,
            offsets,
            row_words,
            capacity: size,
            bucket_mask: buckets - 1,
            buckets_at,
            owners_at: buckets_at + buckets,
            rows_at: buckets_at + buckets + buckets / 2,
            seed,
            owners_looked_at: AtomicU64::new(0),
        };
        // Everything else starts as zero, which the mapping already is: empty chains, an
        // empty free list, no slot used, and every row dead (key length 0).
        shared.header(H_MAGIC).store(MAGIC, Relaxed);
        shared.header(H_SEED).store(seed, Relaxed);
        Ok(shared)
    }

    fn header(&self, word: usize) -> &AtomicU64 {
        &self.map.words()[word]
    }

    fn bucket(&self, hash: u64) -> &AtomicU64 {
        &self.map.words()[self.buckets_at + (hash as usize & self.bucket_mask)]
    }

    /// The bucket of `hash`, locked.
    fn lock_bucket(&self, hash: u64) -> BucketGuard<'_> {
        let owners = self.map.halves(self.owners_at, self.bucket_mask + 1);
        BucketGuard::lock(
            self.bucket(hash),
            &owners[hash as usize & self.bucket_mask],
            self.header(H_DEATHS),
        )
    }

    /// The row's lock (see `sync::RowGuard`).
    fn lock_row(&self, slot: usize) -> RowGuard<'_> {
        RowGuard::lock(&self.row(slot)[SEQ], || self.repair_row(slot))
    }

    /// `copy` run on a stable copy of the row (see `sync::read_stable`).
    fn read_row<T>(&self, slot: usize, copy: impl FnMut(u64) -> T) -> T {
        read_stable(&self.row(slot)[SEQ], || self.repair_row(slot), copy)
    }

    /// Run on a row taken over from a writer that died holding its lock (see `sync`). A set
    /// leaves the columns it had written; an insert that died after it wrote the key but
    /// before it linked the row into its chain leaves a row that iteration would show and no
    /// lookup can find (a later set of the key would make a second one): such a row is marked
    /// dead (its slot stays counted until `reclaim` gives it back). Whether the row is in its
    /// chain is asked as `find` asks for a key: a walk counts only if the chain's version did
    /// not move meanwhile. The chain cannot be locked here: its lock comes before the row's.
    #[cold]
    #[inline(never)]
    fn repair_row(&self, slot: usize) {
        let row = self.row(slot);
        let mut bytes = Vec::new();
        if !self.load_key(row, &mut bytes) {
            return;
        }
        let Ok(key) = self.key(&bytes) else {
            return;
        };
        if self
            .walk_chain(key.hash, |s| (s == slot).then_some(()))
            .is_none()
        {
            row[KEY].store(0, Relaxed);
        }
    }

    fn row(&self, slot: usize) -> &[AtomicU64] {
        let start = self.rows_at + slot * self.row_words;
        &self.map.words()[start..start + self.row_words]
    }

    fn count(&self) -> usize {
        self.header(H_COUNT).load(Acquire) as usize
    }

    fn column(&self, name: &str) -> Result<usize, TableError> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| TableError::UnknownColumn {
                column: name.to_string(),
                known: self.columns.iter().map(|c| c.name.clone()).collect(),
            })
    }

    // Inlined: a Key returned inside a Result is copied through memory, and reading back
    // what was just stored in pieces stalls the CPU.
    #[inline(always)]
    fn key<'k>(&self, bytes: &'k [u8]) -> Result<Key<'k>, TableError> {
        if bytes.is_empty() {
            return Err(TableError::EmptyKey);
        }
        if bytes.len() > KEY_MAX {
            return Err(TableError::KeyTooLong { len: bytes.len() });
        }
        let mut key = Key { bytes, hash: 0 };
        key.hash = hash_words(self.seed, (0..key.used()).map(|i| key.word(i)));
        Ok(key)
    }

    fn check_value(&self, name: &str, value: &Value) -> Result<usize, TableError> {
        let c = self.column(name)?;
        let ty = self.columns[c].ty;
        match (ty, value) {
            (ColumnType::Int, Value::Int(_)) => Ok(c),
            (ColumnType::Float, Value::Int(_) | Value::Float(_)) => Ok(c),
            (ColumnType::Str(max), Value::Str(s)) if s.len() <= max => Ok(c),
            (ColumnType::Str(max), Value::Str(s)) => Err(TableError::StringTooLong {
                column: name.to_string(),
                len: s.len(),
                max,
            }),
            _ => Err(TableError::WrongType {
                column: name.to_string(),
                column_type: ty,
                got: value.kind(),
            }),
        }
    }

    /// Stores a value already accepted by `check_value`. Caller holds the row lock.
    fn store_value(&self, row: &[AtomicU64], c: usize, value: &Value) {
        let at = self.offsets[c];
        match value {
            Value::Int(i) if self.columns[c].ty == ColumnType::Float => {
                row[at].store((*i as f64).to_bits(), Relaxed)
            }
            Value::Int(i) => row[at].store(*i as u64, Relaxed),
            Value::Float(f) => row[at].store(f.to_bits(), Relaxed),
            Value::Str(s) => {
                row[at].store(s.len() as u64, Relaxed);
                for (stored, chunk) in row[at + 1..].iter().zip(s.chunks(8)) {
                    stored.store(le_word(chunk), Relaxed);
                }
            }
        }
    }

    /// Reads one column into `slot`, reusing its buffer when it already holds a string. May
    /// run on a torn row (then its result is thrown away), so lengths are clamped.
    fn load_value(&self, row: &[AtomicU64], c: usize, slot: &mut Value) {
        let at = self.offsets[c];
        match self.columns[c].ty {
            ColumnType::Int => *slot = Value::Int(row[at].load(Relaxed) as i64),
            ColumnType::Float => *slot = Value::Float(f64::from_bits(row[at].load(Relaxed))),
            ColumnType::Str(max) => {
                if !matches!(slot, Value::Str(_)) {
                    *slot = Value::Str(Vec::new());
                }
                if let Value::Str(buf) = slot {
                    let len = (row[at].load(Relaxed) as usize).min(max);
                    unpack(&row[at + 1..], len, buf);
                }
            }
        }
    }

    fn load_values(&self, row: &[AtomicU64], out: &mut Vec<Value>) {
        out.resize_with(self.columns.len(), || Value::Int(0));
        for (c, slot) in out.iter_mut().enumerate() {
            self.load_value(row, c, slot);
        }
    }

    /// The key of a row, or false when the row is dead. Same clamping as `load_value`.
    fn load_key(&self, row: &[AtomicU64], out: &mut Vec<u8>) -> bool {
        let len = (row[KEY].load(Relaxed) as u8 as usize).min(KEY_MAX);
        if len == 0 {
            return false;
        }
        let mut block = [0u8; KEY_BYTES];
        unpack(&row[KEY..KEY + KEY_WORDS], len + 1, out);
        block[..=len].copy_from_slice(out);
        out.clear();
        out.extend_from_slice(&block[1..=len]);
        true
    }

    /// Lock-free search. `on_hit` runs on a stable copy of the row holding the key (possibly
    /// more than once, if a writer interferes), with the row's version in that copy, and its
    /// last result is returned.
    ///
    /// A hit needs no further check: the row was live with this key at the instant the
    /// seqlock read was stable, and a key lives in one row at most. A miss might come from
    /// a walk that left the chain (a row deleted under us and reused elsewhere); every such
    /// reuse comes after a version bump of this chain, so a miss counts only if the version
    /// is still the one the walk started from.
    fn find<T>(
        &self,
        key: &Key<'_>,
        mut on_hit: impl FnMut(RowVersion, &[AtomicU64]) -> T,
    ) -> Option<T> {
        self.walk_chain(key.hash, |slot| {
            let row = self.row(slot);
            self.read_row(slot, |seq| {
                key.matches(row)
                    .then(|| on_hit(RowVersion { slot, seq }, row))
            })
        })
    }

    /// Walks the chain of `hash` without a lock, giving `visit` each slot, until it says
    /// Some. None is a trustworthy miss: walked again while the chain's version moves (see
    /// `find`).
    fn walk_chain<T>(&self, hash: u64, mut visit: impl FnMut(usize) -> Option<T>) -> Option<T> {
        let bucket = self.bucket(hash);
        loop {
            let start = bucket.load(Acquire);
            let mut link = chain_head(start);
            // A walk that left the chain may run in circles; a real chain is never longer
            // than the capacity.
            let mut steps = 0;
            while link != 0 && steps < self.capacity {
                let slot = link as usize - 1;
                if let Some(hit) = visit(slot) {
                    return Some(hit);
                }
                link = self.row(slot)[NEXT].load(Acquire) as u32;
                steps += 1;
            }
            fence(Acquire);
            if chain_version(bucket.load(Relaxed)) == chain_version(start) {
                return None;
            }
        }
    }

    /// Search with the bucket lock held: the chain cannot change and the keys of its rows
    /// cannot either (only insert and delete write keys, both under this lock), so no
    /// seqlock read is needed. Returns the row's slot and the link pointing at it.
    fn find_locked(
        &self,
        guard: &BucketGuard<'_>,
        key: &Key<'_>,
    ) -> Option<(usize, Option<usize>)> {
        let mut prev = None;
        let mut link = guard.head();
        while link != 0 {
            let slot = link as usize - 1;
            let row = self.row(slot);
            if key.matches(row) {
                return Some((slot, prev));
            }
            prev = Some(slot);
            link = row[NEXT].load(Relaxed) as u32;
        }
        None
    }

    /// Runs `change` on the key's row under the row lock, inserting the row (all columns
    /// zero/empty) when the key is missing. If `change` fails, nothing was written: it
    /// checks before it stores, and a row inserted for it is given back unpublished. A table
    /// found full is tried again after `reclaim` found rows lost to killed processes.
    fn upsert<T>(
        &self,
        key: &Key<'_>,
        mut change: impl FnMut(&[AtomicU64]) -> Result<T, TableError>,
    ) -> Result<T, TableError> {
        loop {
            match self.upsert_once(key, &mut change) {
                Err(TableError::Full { .. }) if self.reclaim() => continue,
                result => return result,
            }
        }
    }

    fn upsert_once<T>(
        &self,
        key: &Key<'_>,
        mut change: impl FnMut(&[AtomicU64]) -> Result<T, TableError>,
    ) -> Result<T, TableError> {
        // Fast path, the common one for set and incr: the key exists, so only its row is
        // locked. The search was lock-free, so the row may have been deleted (and reused)
        // before the lock was taken; the key is checked again under the lock.
        while let Some(slot) = self.find(key, |at, _| at.slot) {
            let row = self.row(slot);
            let _row_lock = self.lock_row(slot);
            if key.matches(row) {
                return change(row);
            }
        }
        // Slow path: lock the chain, so that two processes inserting the same key cannot
        // both add it. Look again: someone may have inserted it since the search.
        let bucket = self.lock_bucket(key.hash);
        if let Some((slot, _)) = self.find_locked(&bucket, key) {
            let row = self.row(slot);
            let _row_lock = self.lock_row(slot);
            return change(row);
        }
        let slot = self.take_slot()?;
        let row = self.row(slot);
        // The row lock is held until the row is published, so no reader that wandered into
        // this slot sees the key before the chain does.
        let row_lock = self.lock_row(slot);
        for &at in &self.offsets {
            row[at].store(0, Relaxed); // 0, 0.0 and "" alike
        }
        match change(row) {
            Ok(result) => {
                key.store(row);
                row[NEXT].store(bucket.head() as u64, Release);
                bucket.publish(slot as u32 + 1);
                drop(row_lock);
                Ok(result)
            }
            Err(e) => {
                drop(row_lock);
                self.give_back(slot);
                Err(e)
            }
        }
    }

    fn delete(&self, key: &Key<'_>) -> bool {
        let bucket = self.lock_bucket(key.hash);
        let Some((slot, prev)) = self.find_locked(&bucket, key) else {
            return false;
        };
        let row = self.row(slot);
        {
            // Under the row lock, so that a writer on the fast path, which checks the key
            // under this lock, either finishes first or sees the row dead.
            let _row_lock = self.lock_row(slot);
            row[KEY].store(0, Relaxed);
        }
        let next = row[NEXT].load(Relaxed);
        let head = match prev {
            None => next as u32,
            Some(p) => {
                self.row(p)[NEXT].store(next, Release);
                bucket.head()
            }
        };
        // The version bump comes before the slot can be reused (give_back), which is what
        // makes a lock-free miss trustworthy (see `find`). The slot is given back before the
        // bucket is unlocked, so that every change to which rows are taken happens under a
        // bucket lock (see `reclaim`).
        let mut bucket = bucket;
        bucket.move_to(head);
        self.give_back(slot);
        true
    }

    /// Gives back the rows of the table that processes killed inside a bucket lock had taken
    /// and not linked into a chain yet (or unlinked and not given back yet), and puts the
    /// count right: every change to which rows are taken (take_slot, give_back) is made
    /// under a bucket lock, so with every bucket locked each row is in a chain, on the free
    /// list, or lost. An insert that finds the table full calls this; it does the work only
    /// when a bucket was taken over from a dead holder since it last did, or one is held by a
    /// process that is gone (a death nobody has waited on yet), and says whether it gave
    /// anything back. O(buckets + slots), with inserts and deletes waiting meanwhile; the look
    /// for gone holders, O(buckets), at most once a second per process.
    #[cold]
    #[inline(never)]
    fn reclaim(&self) -> bool {
        let buckets = self.bucket_mask + 1;
        let owners = self.map.halves(self.owners_at, buckets);
        let deaths = self.header(H_DEATHS);
        let held_by_the_dead = |owner: &AtomicU32| {
            let pid = owner.load(Relaxed);
            pid != 0 && process::is_gone(pid)
        };
        if deaths.load(Relaxed) == self.header(H_RECLAIMED).load(Relaxed)
            && !(self.may_look_at_owners() && owners.iter().any(held_by_the_dead))
        {
            return false;
        }
        // In index order, as no other process ever holds two buckets: no deadlock.
        let mut guards: Vec<BucketGuard<'_>> = (0..buckets)
            .map(|b| BucketGuard::lock(&self.map.words()[self.buckets_at + b], &owners[b], deaths))
            .collect();
        self.header(H_RECLAIMED)
            .store(deaths.load(Relaxed), Relaxed);
        let mut held = vec![false; self.capacity];
        let mut live = 0;
        for guard in &mut guards {
            // A row marked dead in its chain is one a delete died before unlinking.
            let (mut head, mut prev, mut link) = (guard.head(), None, guard.head());
            while link != 0 {
                let slot = link as usize - 1;
                let next = self.row(slot)[NEXT].load(Relaxed) as u32;
                if self.row(slot)[KEY].load(Relaxed) as u8 == 0 {
                    match prev {
                        None => head = next,
                        Some(p) => self.row(p)[NEXT].store(u64::from(next), Release),
                    }
                } else {
                    held[slot] = true;
                    live += 1;
                    prev = Some(slot);
                }
                link = next;
            }
            // Moves every version on: a lost row given back below may be reused at once.
            guard.move_to(head);
        }
        let mut link = self.header(H_FREE).load(Acquire) as u32;
        while link != 0 {
            let slot = link as usize - 1;
            held[slot] = true;
            link = self.row(slot)[NEXT].load(Relaxed) as u32;
        }
        let used = (self.header(H_UNUSED).load(Relaxed) as usize).min(self.capacity);
        let mut lost = 0;
        for slot in (0..used).filter(|&s| !held[s]) {
            {
                let _row_lock = self.lock_row(slot);
                self.row(slot)[KEY].store(0, Relaxed);
            }
            self.push_free(slot);
            lost += 1;
        }
        let counted = self.header(H_COUNT).swap(live, Release);
        lost > 0 || counted != live
    }

    /// Whether a second has passed since this process last looked at every bucket's owner (a
    /// table full for good would otherwise pay that walk on every refused insert).
    fn may_look_at_owners(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.owners_looked_at.load(Relaxed);
        now.abs_diff(last) >= 1000
            && (self.owners_looked_at)
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }

    /// Reserves one row in the count, then takes a slot: from the free list, else one never
    /// used. The reservation is what enforces the capacity; since a slot is counted until
    /// it is back on the free list (give_back pushes, then decrements), a successful
    /// reservation means a free slot exists at every instant, so the loop ends.
    fn take_slot(&self) -> Result<usize, TableError> {
        let count = self.header(H_COUNT);
        let mut rows = count.load(Relaxed);
        loop {
            if rows as usize >= self.capacity {
                self.header(H_FULL).fetch_add(1, Relaxed);
                return Err(TableError::Full {
                    rows: rows as usize,
                    capacity: self.capacity,
                });
            }
            match count.compare_exchange_weak(rows, rows + 1, Acquire, Relaxed) {
                Ok(_) => break,
                Err(now) => rows = now,
            }
        }
        let mut backoff = Backoff::new();
        loop {
            if let Some(slot) = self.pop_free().or_else(|| self.take_unused()) {
                return Ok(slot);
            }
            backoff.snooze();
        }
    }

    fn give_back(&self, slot: usize) {
        self.push_free(slot);
        self.header(H_COUNT).fetch_sub(1, Release);
    }

    /// The free list is a stack linked through the rows' NEXT words. Its head word holds
    /// the top slot plus one in the low half and a tag in the high half; the tag changes on
    /// every push and pop, so a pop that read a stale NEXT cannot succeed (no ABA).
    fn pop_free(&self) -> Option<usize> {
        let free = self.header(H_FREE);
        let mut top = free.load(Acquire);
        loop {
            let link = top as u32;
            if link == 0 {
                return None;
            }
            let slot = link as usize - 1;
            let next = self.row(slot)[NEXT].load(Relaxed) as u32;
            let new = (top >> 32).wrapping_add(1) << 32 | next as u64;
            match free.compare_exchange_weak(top, new, Acquire, Acquire) {
                Ok(_) => return Some(slot),
                Err(now) => top = now,
            }
        }
    }

    fn push_free(&self, slot: usize) {
        let free = self.header(H_FREE);
        let mut top = free.load(Relaxed);
        loop {
            self.row(slot)[NEXT].store(top as u32 as u64, Release);
            let new = (top >> 32).wrapping_add(1) << 32 | (slot as u64 + 1);
            match free.compare_exchange_weak(top, new, Release, Relaxed) {
                Ok(_) => return,
                Err(now) => top = now,
            }
        }
    }

    /// Slots above the high-water mark have never been written; handing them out in order
    /// keeps create() O(1) (no free list to build, no page touched) and keeps iteration
    /// to the part of the table ever used.
    fn take_unused(&self) -> Option<usize> {
        let unused = self.header(H_UNUSED);
        let mut next = unused.load(Relaxed);
        loop {
            if next as usize >= self.capacity {
                return None;
            }
            match unused.compare_exchange_weak(next, next + 1, Relaxed, Relaxed) {
                Ok(_) => return Some(next as usize),
                Err(now) => next = now,
            }
        }
    }

    fn entry_from(&self, slot: usize) -> Option<Entry> {
        let end = (self.header(H_UNUSED).load(Acquire) as usize).min(self.capacity);
        let mut key = Vec::new();
        let mut values = Vec::new();
        for s in slot..end {
            let row = self.row(s);
            let live = self.read_row(s, |_| {
                let live = self.load_key(row, &mut key);
                if live {
                    self.load_values(row, &mut values);
                }
                live
            });
            if live {
                return Some(Entry {
                    slot: s,
                    key,
                    values,
                });
            }
        }
        None
    }

    fn stats(&self) -> Stats {
        let buckets = self.bucket_mask + 1;
        let (mut used_buckets, mut chained, mut longest_chain) = (0, 0, 0);
        for b in 0..buckets {
            let mut link = chain_head(self.map.words()[self.buckets_at + b].load(Acquire));
            let mut len = 0;
            while link != 0 && len < self.capacity {
                len += 1;
                link = self.row(link as usize - 1)[NEXT].load(Acquire) as u32;
            }
            if len > 0 {
                used_buckets += 1;
                chained += len;
                longest_chain = longest_chain.max(len);
            }
        }
        Stats {
            rows: self.count(),
            capacity: self.capacity,
            memory_size: self.map.len(),
            row_bytes: self.row_words * 8,
            buckets,
            used_buckets,
            collisions: chained - used_buckets,
            longest_chain,
            slots_touched: (self.header(H_UNUSED).load(Acquire) as usize).min(self.capacity),
            full_refusals: self.header(H_FULL).load(Relaxed),
        }
    }
}

/// Replaces `out` with the first `len` bytes stored in `words` (little-endian words).
fn unpack(words: &[AtomicU64], len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(len, 0);
    for (chunk, w) in out.chunks_mut(8).zip(words) {
        chunk.copy_from_slice(&w.load(Relaxed).to_le_bytes()[..chunk.len()]);
    }
}

/// Up to 8 bytes as a little-endian word, zero-padded. Built in registers with at most two
/// overlapping loads: writing the bytes into a buffer and reading it back as a word would
/// stall the CPU, which cannot forward narrow stores to a wide load.
#[inline]
fn le_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let le32 = |at: usize| u32::from_le_bytes(fixed(&bytes[at..])) as u64;
    match n {
        8.. => u64::from_le_bytes(fixed(bytes)),
        4..=7 => le32(0) | le32(n - 4) << (8 * (n - 4)),
        1..=3 => {
            let byte = |at: usize| (bytes[at] as u64) << (8 * at);
            byte(0) | byte(n / 2) | byte(n - 1)
        }
        0 => 0,
    }
}

/// The first N bytes of `bytes`, which has at least N.
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&bytes[..N]);
    a
}

/// The key hash: each word goes through a 64x64->128 multiply whose halves are folded
/// together, chained through the seed. Cheap (one multiply per 8 bytes) and well mixed in
/// the low bits, which pick the bucket. Also hashes the PHP extension's memo of short keys.
pub fn hash_words(seed: u64, words: impl ExactSizeIterator<Item = u64>) -> u64 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15; // 2^64 / golden ratio
    const K2: u64 = 0x243f_6a88_85a3_08d3; // fraction of pi
    let fold = |a: u64, b: u64| {
        let p = a as u128 * b as u128;
        p as u64 ^ (p >> 64) as u64
    };
    let n = words.len() as u64;
    let mut h = seed ^ K1;
    for w in words {
        h = fold(h ^ w, K2);
    }
    fold(h ^ n, K1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain way: copy into a zeroed buffer, read little-endian words.
    fn padded_words(block: &[u8]) -> Vec<u64> {
        let mut buf = block.to_vec();
        buf.resize(block.len().div_ceil(8) * 8, 0);
        buf.chunks(8)
            .map(|c| u64::from_le_bytes(fixed(c)))
            .collect()
    }

    #[test]
    fn le_word_reads_any_short_slice() {
        let bytes: Vec<u8> = (1..=9).collect();
        for n in 0..=8 {
            let expected = padded_words(&bytes[..n]).first().copied().unwrap_or(0);
            assert_eq!(le_word(&bytes[..n]), expected, "{n} bytes");
        }
    }

    #[test]
    fn key_words_are_the_stored_block() {
        let all: Vec<u8> = (0..KEY_MAX as u8)
            .map(|b| b.wrapping_mul(37) ^ 0xa5)
            .collect();
        for len in 1..=KEY_MAX {
            let key = Key {
                bytes: &all[..len],
                hash: 0,
            };
            let mut block = vec![len as u8];
            block.extend_from_slice(&all[..len]);
            let expected = padded_words(&block);
            let words: Vec<u64> = (0..key.used()).map(|i| key.word(i)).collect();
            assert_eq!(words, expected, "key of {len} bytes");
        }
    }

    #[test]
    fn unpack_reads_back_what_store_wrote() {
        let row: Vec<AtomicU64> = (0..9).map(|_| AtomicU64::new(u64::MAX)).collect();
        let data: Vec<u8> = (0..64u8).collect();
        for len in 0..=64 {
            for (stored, chunk) in row.iter().zip(data[..len].chunks(8)) {
                stored.store(le_word(chunk), Relaxed);
            }
            let mut out = vec![9; 3];
            unpack(&row, len, &mut out);
            assert_eq!(out, &data[..len]);
        }
    }
}

/// A process killed inside a critical section, as SIGKILL or the OOM killer leaves one: a
/// forked child takes a lock and exits without releasing it. The others must go on.
#[cfg(test)]
mod dead_holder_tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn table() -> Table {
        let t = Table::new(64, 0.2).unwrap();
        t.add_column("n", ColumnType::Int).unwrap();
        t.add_column("s", ColumnType::Str(8)).unwrap();
        t.create().unwrap();
        t
    }

    /// Forks a child that runs `lock` (which takes a lock and forgets its guard) and waits
    /// until it has exited. The child is left unreaped: a zombie, as a worker is until the
    /// master reaps it.
    fn die_holding(lock: impl FnOnce()) -> libc::pid_t {
        // SAFETY: the child only takes a lock (atomics, no allocation) and _exit()s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            lock();
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(0) }
        }
        // SAFETY: waits for our own child, leaving it waitable (WNOWAIT).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0, "waitid failed");
        pid
    }

    fn reap(pid: libc::pid_t) {
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }

    /// Runs `body` on another thread and fails if it has not returned within 10 s (a lock
    /// nobody releases hangs it for ever).
    fn within_seconds<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(body()));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("waited for ever on a lock held by a dead process")
    }

    #[test]
    fn a_row_locked_by_a_dead_writer_is_released() {
        let t = std::sync::Arc::new(table());
        t.set(b"k", &[("n", Value::Int(5))]).unwrap();
        let slot = t
            .shared()
            .unwrap()
            .find(&t.shared().unwrap().key(b"k").unwrap(), |v, _| v.slot)
            .unwrap();
        let child = die_holding(|| {
            std::mem::forget(t.shared().unwrap().lock_row(slot));
        });
        let seen = std::sync::Arc::clone(&t);
        // A reader, then a writer, then iteration, each of which waited on the row before.
        let (row, after) = within_seconds(move || {
            let mut row = Vec::new();
            seen.get_into(b"k", &mut row).unwrap();
            seen.incr(b"k", "n", Value::Int(1)).unwrap();
            let after = seen.iter().unwrap().map(|e| e.values).collect::<Vec<_>>();
            (row, after)
        });
        reap(child);
        assert_eq!(row, [Value::Int(5), Value::Str(Vec::new())]);
        assert_eq!(after, [vec![Value::Int(6), Value::Str(Vec::new())]]);
    }

    #[test]
    fn an_insert_that_died_before_linking_its_row_leaves_no_row() {
        let t = std::sync::Arc::new(table());
        t.set(b"old", &[("n", Value::Int(1))]).unwrap();
        // What an insert has done when it dies after writing the key, before the chain has it.
        let child = die_holding(|| {
            let shared = t.shared().unwrap();
            let key = shared.key(b"ghost").unwrap();
            std::mem::forget(shared.lock_bucket(key.hash));
            let slot = shared.take_slot().unwrap();
            std::mem::forget(shared.lock_row(slot));
            key.store(shared.row(slot));
        });
        let seen = std::sync::Arc::clone(&t);
        let (keys, found, count) = within_seconds(move || {
            let keys: Vec<_> = seen.iter().unwrap().map(|e| e.key).collect();
            let found = seen.exists(b"ghost").unwrap();
            seen.set(b"ghost", &[("n", Value::Int(3))]).unwrap();
            let keys_after: Vec<_> = seen.iter().unwrap().map(|e| e.key).collect();
            (keys, found, (keys_after, seen.count().unwrap()))
        });
        reap(child);
        assert_eq!(keys, [b"old".to_vec()]);
        assert!(!found);
        // The ghost's slot stays counted (3 counted, 2 rows) until the table is full.
        assert_eq!(count, (vec![b"old".to_vec(), b"ghost".to_vec()], 3));
    }

    /// Keys of the table whose buckets all differ, so that each death below holds a bucket
    /// of its own.
    fn keys_in_distinct_buckets(t: &Table, n: usize) -> Vec<Vec<u8>> {
        let shared = t.shared().unwrap();
        let mut buckets = std::collections::HashSet::new();
        (0..)
            .map(|i| format!("key {i}").into_bytes())
            .filter(|k| buckets.insert(shared.key(k).unwrap().hash as usize & shared.bucket_mask))
            .take(n)
            .collect()
    }

    #[test]
    fn rows_lost_to_deaths_inside_a_bucket_lock_come_back_when_the_table_is_full() {
        let t = std::sync::Arc::new(Table::new(8, 0.2).unwrap());
        t.add_column("n", ColumnType::Int).unwrap();
        t.create().unwrap();
        let keys = keys_in_distinct_buckets(&t, 5);
        let [reserving, taking, inserting, marking, unlinking] =
            [0, 1, 2, 3, 4].map(|i| &keys[i][..]);
        t.set(marking, &[]).unwrap();
        t.set(unlinking, &[]).unwrap();
        let shared = || t.shared().unwrap();
        let locked = |k: &[u8]| shared().lock_bucket(shared().key(k).unwrap().hash);
        let children = [
            // An insert that had reserved its row in the count, then had taken a slot, then
            // had written its key into it.
            die_holding(|| {
                std::mem::forget(locked(reserving));
                shared().header(H_COUNT).fetch_add(1, Relaxed);
            }),
            die_holding(|| {
                std::mem::forget(locked(taking));
                shared().take_slot().unwrap();
            }),
            die_holding(|| {
                std::mem::forget(locked(inserting));
                let slot = shared().take_slot().unwrap();
                std::mem::forget(shared().lock_row(slot));
                shared().key(inserting).unwrap().store(shared().row(slot));
            }),
            // A delete that had marked its row dead, and one that had unlinked it too.
            die_holding(|| {
                let bucket = locked(marking);
                let (slot, _) = shared()
                    .find_locked(&bucket, &shared().key(marking).unwrap())
                    .unwrap();
                std::mem::forget(bucket);
                std::mem::forget(shared().lock_row(slot));
                shared().row(slot)[KEY].store(0, Relaxed);
            }),
            die_holding(|| {
                let mut bucket = locked(unlinking);
                let (slot, _) = shared()
                    .find_locked(&bucket, &shared().key(unlinking).unwrap())
                    .unwrap();
                shared().row(slot)[KEY].store(0, Relaxed);
                bucket.move_to(shared().row(slot)[NEXT].load(Relaxed) as u32);
                std::mem::forget(bucket);
            }),
        ];
        let seen = std::sync::Arc::clone(&t);
        let (inserted, refused, count, rows) = within_seconds(move || {
            let inserted = (0..8)
                .filter(|i| {
                    seen.set(format!("new {i}").as_bytes(), &[("n", Value::Int(*i))])
                        .is_ok()
                })
                .count();
            let refused = seen.set(b"one too many", &[]).unwrap_err();
            let rows = seen.iter().unwrap().map(|e| e.key).collect::<Vec<_>>();
            (inserted, refused, seen.count().unwrap(), rows.len())
        });
        children.into_iter().for_each(reap);
        assert_eq!((inserted, count, rows), (8, 8, 8));
        assert!(
            matches!(
                refused,
                TableError::Full {
                    rows: 8,
                    capacity: 8
                }
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn a_bucket_locked_by_a_dead_writer_is_released() {
        let t = std::sync::Arc::new(table());
        t.set(b"old", &[("n", Value::Int(1))]).unwrap();
        let hash = t.shared().unwrap().key(b"new").unwrap().hash;
        let child = die_holding(|| std::mem::forget(t.shared().unwrap().lock_bucket(hash)));
        let seen = std::sync::Arc::clone(&t);
        // An insert into that chain, and a delete from it, each of which takes its lock.
        let count = within_seconds(move || {
            seen.set(b"new", &[("n", Value::Int(2))]).unwrap();
            let found = seen.get_field(b"new", "n").unwrap();
            assert!(seen.del(b"new").unwrap());
            (found, seen.count().unwrap())
        });
        reap(child);
        assert_eq!(count, (Some(Value::Int(2)), 1));
        assert_eq!(t.get_field(b"old", "n").unwrap(), Some(Value::Int(1)));
    }
}
