//! `Surge\Table`: the PHP face of `surge-table`, a typed table in shared memory that processes
//! forked after `create()` share.

use std::cell::RefCell;

use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::ce;
use surge_table::{ColumnType, Entry, Table as Shared, TableError, Value};

use crate::convert::{binary_zval, bytes_arg, type_name, Assoc};
use crate::exception::error;

#[php_class]
#[php(name = "Surge\\Table")]
#[php(implements(ce = ce::countable, stub = "\\Countable"))]
#[php(implements(ce = ce::iterator, stub = "\\Iterator"))]
pub struct Table {
    table: Shared,
    /// The row the iterator stands on.
    cursor: RefCell<Option<Entry>>,
}

fn fail(e: TableError) -> ext_php_rs::exception::PhpException {
    error(e.to_string())
}

fn value_zval(value: &Value) -> Zval {
    let mut zv = Zval::new();
    match value {
        Value::Int(n) => zv.set_long(*n),
        Value::Float(f) => zv.set_double(*f),
        Value::Str(bytes) => return binary_zval(bytes),
    }
    zv
}

fn value_arg(zv: &Zval, column: &str) -> PhpResult<Value> {
    if let Some(n) = zv.long() {
        Ok(Value::Int(n))
    } else if let Some(f) = zv.double() {
        Ok(Value::Float(f))
    } else if let Some(s) = zv.zend_str() {
        Ok(Value::Str(s.as_bytes().to_vec()))
    } else if let Some(b) = zv.bool() {
        Ok(Value::Int(i64::from(b)))
    } else {
        Err(error(format!("value for column '{column}' must be an int, float or string, got {}", type_name(zv))))
    }
}

impl Table {
    fn row(&self, values: &[Value]) -> PhpResult<Zval> {
        let mut row = Assoc::new();
        for (column, value) in self.table.columns().map_err(fail)?.iter().zip(values) {
            row.set(&column.name, value_zval(value))?;
        }
        Ok(row.into_zval())
    }
}

fn falsy() -> Zval {
    let mut zv = Zval::new();
    zv.set_bool(false);
    zv
}

#[php_impl]
impl Table {
    pub const TYPE_INT: i64 = 1;
    pub const TYPE_FLOAT: i64 = 2;
    pub const TYPE_STRING: i64 = 3;

    /// A table of exactly `$size` rows (Swoole's may hold fewer); `$conflict_proportion` only
    /// sizes the hash index.
    pub fn __construct(size: i64, conflict_proportion: Option<f64>) -> PhpResult<Self> {
        let size = surge_table::checked_table_size(size).map_err(fail)?;
        let table = Shared::new(size, conflict_proportion.unwrap_or(0.2)).map_err(fail)?;
        Ok(Table { table, cursor: RefCell::new(None) })
    }

    /// Adds a column before create(): TYPE_INT (64-bit), TYPE_FLOAT, or TYPE_STRING of at most
    /// `$size` bytes.
    pub fn column(&self, name: String, r#type: i64, size: Option<i64>) -> PhpResult<bool> {
        let ty = match r#type {
            Self::TYPE_INT => ColumnType::Int,
            Self::TYPE_FLOAT => ColumnType::Float,
            Self::TYPE_STRING => {
                ColumnType::Str(surge_table::checked_string_size(&name, size.unwrap_or(0)).map_err(fail)?)
            }
            other => {
                return Err(error(format!(
                    "column '{name}': unknown type {other}; use Surge\\Table::TYPE_INT, TYPE_FLOAT or TYPE_STRING"
                )))
            }
        };
        self.table.add_column(&name, ty).map_err(fail)?;
        Ok(true)
    }

    /// Maps the shared memory; processes forked afterwards share the rows.
    pub fn create(&self) -> PhpResult<bool> {
        self.table.create().map_err(fail)?;
        Ok(true)
    }

    /// Writes the given columns of the row `$key` (a new row gets 0, 0.0, "" for the others).
    pub fn set(&self, key: &Zval, row: &ZendHashTable) -> PhpResult<bool> {
        let key = bytes_arg(key, "table key")?;
        let values = row
            .iter()
            .map(|(k, v)| {
                let name = k.to_string();
                let value = value_arg(v, &name)?;
                Ok((name, value))
            })
            .collect::<PhpResult<Vec<(String, Value)>>>()?;
        let values: Vec<(&str, Value)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.table.set(&key, &values).map_err(fail)?;
        Ok(true)
    }

    /// The row as an array, or one column's value with `$field`; false if there is no such row.
    pub fn get(&self, key: &Zval, field: Option<String>) -> PhpResult<Zval> {
        let key = bytes_arg(key, "table key")?;
        match field {
            Some(field) => Ok(self.table.get_field(&key, &field).map_err(fail)?.map_or_else(falsy, |v| value_zval(&v))),
            None => match self.table.get(&key).map_err(fail)? {
                Some(values) => self.row(&values),
                None => Ok(falsy()),
            },
        }
    }

    /// True if the row exists.
    pub fn exists(&self, key: &Zval) -> PhpResult<bool> {
        self.table.exists(&bytes_arg(key, "table key")?).map_err(fail)
    }

    /// Deletes the row; false if it did not exist.
    pub fn del(&self, key: &Zval) -> PhpResult<bool> {
        self.table.del(&bytes_arg(key, "table key")?).map_err(fail)
    }

    /// Atomically adds `$by` (default 1) to an INT or FLOAT column and returns the new value; a
    /// missing row is created at 0 first.
    pub fn incr(&self, key: &Zval, column: String, by: Option<&Zval>) -> PhpResult<Zval> {
        self.step(key, &column, by, false)
    }

    /// Atomically subtracts `$by` (default 1); see incr().
    pub fn decr(&self, key: &Zval, column: String, by: Option<&Zval>) -> PhpResult<Zval> {
        self.step(key, &column, by, true)
    }

    /// Rows in the table.
    pub fn count(&self) -> PhpResult<i64> {
        Ok(self.table.count().map_err(fail)? as i64)
    }

    /// The number of rows the table holds (exactly the size given).
    pub fn get_size(&self) -> i64 {
        self.table.capacity() as i64
    }

    /// Bytes of shared memory the table maps (see the README's formula).
    pub fn get_memory_size(&self) -> PhpResult<i64> {
        Ok(self.table.memory_size().map_err(fail)? as i64)
    }

    /// rows, capacity, memory_size, row_bytes, buckets, used_buckets, collisions,
    /// longest_chain, slots_touched, full_refusals.
    pub fn stats(&self) -> PhpResult<Zval> {
        let s = self.table.stats().map_err(fail)?;
        let mut a = Assoc::new();
        for (k, v) in [
            ("rows", s.rows as u64),
            ("capacity", s.capacity as u64),
            ("memory_size", s.memory_size as u64),
            ("row_bytes", s.row_bytes as u64),
            ("buckets", s.buckets as u64),
            ("used_buckets", s.used_buckets as u64),
            ("collisions", s.collisions as u64),
            ("longest_chain", s.longest_chain as u64),
            ("slots_touched", s.slots_touched as u64),
            ("full_refusals", s.full_refusals),
        ] {
            a.set(k, v as i64)?;
        }
        Ok(a.into_zval())
    }

    /// Iterator: the current row as an array.
    pub fn current(&self) -> PhpResult<Zval> {
        match &*self.cursor.borrow() {
            Some(entry) => self.row(&entry.values),
            None => Ok(falsy()),
        }
    }

    /// Iterator: the current row's key.
    pub fn key(&self) -> Zval {
        self.cursor.borrow().as_ref().map_or_else(Zval::new, |e| binary_zval(&e.key))
    }

    pub fn next(&self) -> PhpResult<()> {
        let from = self.cursor.borrow().as_ref().map(|e| e.slot + 1);
        if let Some(from) = from {
            *self.cursor.borrow_mut() = self.table.next_entry(from).map_err(fail)?;
        }
        Ok(())
    }

    pub fn rewind(&self) -> PhpResult<()> {
        *self.cursor.borrow_mut() = self.table.next_entry(0).map_err(fail)?;
        Ok(())
    }

    pub fn valid(&self) -> bool {
        self.cursor.borrow().is_some()
    }
}

impl Table {
    fn step(&self, key: &Zval, column: &str, by: Option<&Zval>, down: bool) -> PhpResult<Zval> {
        let key = bytes_arg(key, "table key")?;
        let by = match by {
            None => Value::Int(1),
            Some(zv) => match value_arg(zv, column)? {
                Value::Str(_) => return Err(error(format!("incr/decr of '{column}' takes an int or float step"))),
                number => number,
            },
        };
        let result = if down { self.table.decr(&key, column, by) } else { self.table.incr(&key, column, by) };
        Ok(value_zval(&result.map_err(fail)?))
    }
}
