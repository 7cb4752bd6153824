//! The one error type of the crate. Every message says what was refused and, where there is
//! a limit, how much was asked and how much is allowed, so the PHP layer can pass it on as
//! the text of a `Surge\Exception` unchanged.

use std::fmt;

use crate::schema::{ColumnType, KEY_MAX, MAX_ROWS, STRING_MAX};

/// Why a table operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum TableError {
    /// The table was used (set, get, count, ...) before `create()`.
    NotCreated,
    /// `create()` was called a second time.
    AlreadyCreated,
    /// A column was added after `create()`.
    ColumnAfterCreate { column: String },
    /// The table size (number of rows) is zero, negative or too large.
    TableSize { got: i128 },
    /// `conflict_proportion` is NaN or outside 0..=1.
    ConflictProportion { got: f64 },
    /// A column name is the empty string.
    EmptyColumnName,
    /// Two columns with the same name.
    DuplicateColumn { column: String },
    /// A STRING column with a size of zero, a negative size or a size above `STRING_MAX`.
    StringSize { column: String, got: i128 },
    /// Header, bucket index and rows together do not fit in the address space.
    TooLarge { what: &'static str },
    /// The operating system refused the shared mapping.
    Map { bytes: usize, reason: String },
    /// A key of zero bytes.
    EmptyKey,
    /// A key longer than `KEY_MAX` bytes.
    KeyTooLong { len: usize },
    /// A column name that is not in the schema.
    UnknownColumn { column: String, known: Vec<String> },
    /// A value whose type the column does not take (see `Table::set` for the conversions).
    WrongType {
        column: String,
        column_type: ColumnType,
        got: &'static str,
    },
    /// A string longer than its column.
    StringTooLong {
        column: String,
        len: usize,
        max: usize,
    },
    /// incr/decr on a STRING column.
    NotNumeric { column: String },
    /// incr/decr whose step has the wrong type (a float step on an INT column, a string).
    WrongStep {
        column: String,
        column_type: ColumnType,
        got: &'static str,
    },
    /// incr/decr of an INT column past i64's range.
    Overflow {
        column: String,
        current: i64,
        op: &'static str,
        by: i64,
    },
    /// No free row is left for a new key.
    Full { rows: usize, capacity: usize },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TableError::*;
        match self {
            NotCreated => write!(f, "the table is not created yet; call create() before using it"),
            AlreadyCreated => write!(f, "the table is already created; create() can be called only once"),
            ColumnAfterCreate { column } => write!(
                f,
                "cannot add column '{column}': the table is already created, and columns can only be added before create()"
            ),
            TableSize { got } => write!(f, "table size must be between 1 and {MAX_ROWS} rows, got {got}"),
            ConflictProportion { got } => {
                write!(f, "conflict_proportion must be a number between 0 and 1, got {got}")
            }
            EmptyColumnName => write!(f, "a column name cannot be empty"),
            DuplicateColumn { column } => write!(f, "column '{column}' is already defined"),
            StringSize { column, got } => write!(
                f,
                "column '{column}': a STRING column holds between 1 and {STRING_MAX} bytes, got a size of {got}"
            ),
            TooLarge { what } => {
                write!(f, "the table is too large: the size of {what} overflows the address space")
            }
            Map { bytes, reason } => write!(f, "cannot map {bytes} bytes of shared memory: {reason}"),
            EmptyKey => write!(f, "a key cannot be empty"),
            KeyTooLong { len } => write!(f, "key is {len} bytes; a key holds at most {KEY_MAX}"),
            UnknownColumn { column, known } => {
                if known.is_empty() {
                    write!(f, "unknown column '{column}': the table has no columns")
                } else {
                    write!(f, "unknown column '{column}'; the columns are: {}", known.join(", "))
                }
            }
            WrongType { column, column_type, got } => write!(
                f,
                "column '{column}' is {}; it cannot hold {got}{}",
                column_type.name(),
                match column_type {
                    ColumnType::Int => " (only integers)",
                    ColumnType::Float => " (only floats and integers)",
                    ColumnType::Str(_) => " (only strings)",
                }
            ),
            StringTooLong { column, len, max } => {
                write!(f, "value for column '{column}' is {len} bytes; the column holds at most {max}")
            }
            NotNumeric { column } => write!(
                f,
                "column '{column}' is STRING; incr and decr work only on INT and FLOAT columns"
            ),
            WrongStep { column, column_type, got } => write!(
                f,
                "column '{column}' is {}; it cannot be changed by {got}{}",
                column_type.name(),
                match column_type {
                    ColumnType::Int => " (the step must be an integer)",
                    _ => " (the step must be an integer or a float)",
                }
            ),
            Overflow { column, current, op, by } => write!(
                f,
                "{op} of column '{column}' by {by} would overflow a 64-bit integer (the value is {current}); nothing was changed"
            ),
            Full { rows, capacity } => write!(f, "table is full: {rows} rows of capacity {capacity}"),
        }
    }
}

impl std::error::Error for TableError {}
