//! Columns, values, limits and the memory formula. Everything here is plain data: no shared
//! memory is touched, so the formula can be computed (and tested) without creating a table.

use crate::error::TableError;

/// The longest key, in bytes. A key and its length byte fill one 64-byte block of the row.
pub const KEY_MAX: usize = 63;
/// The largest STRING column, in bytes.
pub const STRING_MAX: usize = 1 << 20;
/// The most rows a table can have. Row numbers are kept in 32 bits (with 0 meaning "none").
pub const MAX_ROWS: usize = 1 << 31;
/// Bytes at the start of the mapping: counters, free list, hash seed.
pub const HEADER_BYTES: usize = 64;
/// Bytes of every row before its columns: seqlock word, chain link, key block.
pub const ROW_HEADER_BYTES: usize = 8 + 8 + KEY_BYTES;
/// Bytes of one bucket of the hash index: its chain word and the pid of its lock's holder.
pub const BUCKET_BYTES: usize = 8 + 4;

pub(crate) const KEY_BYTES: usize = KEY_MAX + 1;

/// The type of a column, fixed when the column is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A signed 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// A binary-safe string of at most this many bytes.
    Str(usize),
}

impl ColumnType {
    /// The name used in messages: INT, FLOAT or STRING.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "INT",
            ColumnType::Float => "FLOAT",
            ColumnType::Str(_) => "STRING",
        }
    }

    /// Bytes the column takes in every row: 8 for INT and FLOAT; for STRING(n) an 8-byte
    /// length plus n rounded up to a multiple of 8.
    pub fn bytes(self) -> usize {
        match self {
            ColumnType::Int | ColumnType::Float => 8,
            ColumnType::Str(max) => 8 + max.div_ceil(8) * 8,
        }
    }
}

/// One column of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// A value read from or written to a column. Strings are bytes, not necessarily UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
}

impl Value {
    /// "an integer", "a float" or "a string", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Str(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Str(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v.into_bytes())
    }
}

/// Bytes of one row for these columns: `ROW_HEADER_BYTES` (80) plus each column's
/// [`ColumnType::bytes`].
pub fn row_bytes(columns: &[Column]) -> usize {
    ROW_HEADER_BYTES + columns.iter().map(|c| c.ty.bytes()).sum::<usize>()
}

/// Number of buckets in the hash index: the smallest power of two that is at least
/// `size * (1 + conflict_proportion)`. A larger proportion means more buckets, so shorter
/// collision chains, for 12 bytes a bucket. It never changes the number of rows.
pub fn bucket_count(size: usize, conflict_proportion: f64) -> Result<usize, TableError> {
    check_size(size)?;
    check_conflict_proportion(conflict_proportion)?;
    let wanted = (size as f64 * (1.0 + conflict_proportion)).ceil() as usize;
    // At least 2: the 4-byte owner words then fill whole 8-byte words.
    Ok(wanted.max(2).next_power_of_two())
}

/// The bytes a table maps:
/// `HEADER_BYTES + BUCKET_BYTES * bucket_count(size, cp) + size * row_bytes(columns)`.
/// The capacity is exactly `size` rows. The kernel rounds the mapping up to whole pages,
/// and only pages that were touched take memory.
pub fn memory_size(
    size: usize,
    conflict_proportion: f64,
    columns: &[Column],
) -> Result<usize, TableError> {
    let buckets = bucket_count(size, conflict_proportion)?;
    let index = buckets
        .checked_mul(BUCKET_BYTES)
        .ok_or(TableError::TooLarge { what: "the index" })?;
    let rows = size
        .checked_mul(row_bytes(columns))
        .ok_or(TableError::TooLarge { what: "the rows" })?;
    HEADER_BYTES
        .checked_add(index)
        .and_then(|n| n.checked_add(rows))
        .ok_or(TableError::TooLarge {
            what: "the mapping",
        })
}

pub(crate) fn check_size(size: usize) -> Result<(), TableError> {
    if size == 0 || size > MAX_ROWS {
        return Err(TableError::TableSize { got: size as i128 });
    }
    Ok(())
}

pub(crate) fn check_conflict_proportion(cp: f64) -> Result<(), TableError> {
    if !(0.0..=1.0).contains(&cp) {
        return Err(TableError::ConflictProportion { got: cp });
    }
    Ok(())
}

/// For callers holding a signed size (PHP ints): the row count as usize, or the error that
/// names the bad value, negative ones included.
pub fn checked_table_size(size: i64) -> Result<usize, TableError> {
    let n = usize::try_from(size).map_err(|_| TableError::TableSize { got: size as i128 })?;
    check_size(n)?;
    Ok(n)
}

/// For callers holding a signed size (PHP ints): a STRING column's size as usize, or the
/// error that names the column and the bad value.
pub fn checked_string_size(column: &str, size: i64) -> Result<usize, TableError> {
    match usize::try_from(size) {
        Ok(n) if (1..=STRING_MAX).contains(&n) => Ok(n),
        _ => Err(TableError::StringSize {
            column: column.to_string(),
            got: size as i128,
        }),
    }
}
