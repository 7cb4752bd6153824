//! `Surge\Table`: the PHP face of `surge-table`, a typed table in shared memory that processes
//! forked after `create()` share.
//!
//! The hot paths (`get`, `exists`, `set`, `incr`) avoid heap allocations that PHP does not make
//! itself: keys are borrowed from the PHP string (or written out on the stack for an int),
//! rows are read into a buffer kept in the object, and the column names are zend strings
//! made once at `create()` (interned where PHP allows), so a row array is built without
//! hashing or copying them. `get` keeps the arrays it built (see `RowCache`): reading an
//! unchanged row again costs the lookup of its version, not a new array.

use std::cell::{OnceCell, RefCell};

use ext_php_rs::boxed::ZBox;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::ffi;
use ext_php_rs::flags::ZvalTypeFlags;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ArrayKey, ZendHashTable, ZendStr, Zval};
use ext_php_rs::zend::ce;
use surge_table::{Column, ColumnType, Entry, RowVersion, Table as Shared, TableError, Value};

use crate::convert::{
    binary_zval, bytes_arg, float_to_int, numeric_string, type_name, Assoc, Int, Number,
};
use crate::exception::error;

#[php_class]
#[php(name = "Surge\\Table")]
#[php(implements(ce = ce::countable, stub = "\\Countable"))]
#[php(implements(ce = ce::iterator, stub = "\\Iterator"))]
pub struct Table {
    table: Shared,
    /// The row the iterator stands on.
    cursor: RefCell<Option<Entry>>,
    /// The values of the last row read by `get`, kept so that the next `get` reuses their
    /// buffers.
    row_buf: RefCell<Vec<Value>>,
    /// The column names as PHP array keys, in schema order; made by `create()`.
    names: OnceCell<Vec<Name>>,
    /// The arrays `get` returned, by slot; sized by `create()`.
    cache: RefCell<RowCache>,
}

/// The PHP memory the arrays kept by one table's `RowCache` may take, at most.
const CACHE_BUDGET: usize = 8 << 20;

/// Rows `get` has built as PHP arrays, each with the version of the row it was built from.
/// When the row still has that version (checked on every `get`, in the shared memory, so a
/// write from any process counts), `get` returns the same array again, as PHP returns
/// `$array[$k]`: one more reference to it. The array is never changed in place: a script
/// that changes its copy gets a copy of its own (copy-on-write), and a newer version of the
/// row gets a new array. Only the first `limit` slots are kept, so the arrays stay within
/// CACHE_BUDGET; a table that fits is kept whole (slots are handed out from 0 up).
///
/// Keeping an array costs (it outlives the script's copy, and freeing it later touches cold
/// memory), so a row that changed before its kept array was used is not kept again until
/// it is read twice at one version.
///
/// It also remembers which slot each int key, and each string key of up to 23 bytes, was in
/// when its kept array was reused (`ints`, `strings`), so that `get($key)` of an unchanged row
/// (`kept_row`) needs no key lookup: one load of the slot's version in shared memory says
/// whether the row is still the one kept. Every write to a slot moves its version on, a delete
/// and another key in it included, so a key that moved to another slot, or a slot taken by
/// another key, is a miss.
struct RowCache {
    rows: Vec<Slot>,
    limit: usize,
    ints: KeySlots<i64>,
    strings: KeySlots<ShortKey>,
}

/// Keys, with the version of the row each was last reused at and the array kept for it; one
/// entry per hash of the key, the last key wins. Empty (and never consulted) when no rows are
/// kept; made at the first key remembered. An entry is 32 bytes for int keys, 48 for strings,
/// and there are 1.5 to 3 times as many as kept rows (a power of two): at 10,000 rows the int
/// keys' take 512 KiB, which a CPU's L2 cache may hold.
///
/// An entry's array is not a reference of its own but the address of `rows`' (read without
/// a look at `rows`, which would cost one more cache miss per `get`). It stays valid while
/// the slot's version in shared memory is the entry's: `rows` replaces the array of a slot
/// only with one built from a later version of the slot, read from shared memory after the
/// entry was made, and a slot's version never comes back. `kept_row` checks the version
/// first.
struct KeySlots<K> {
    entries: Vec<KeySlot<K>>,
    /// Entries to make at the first key remembered: 0 when no rows are kept.
    len: usize,
    /// 64 minus log2(entries.len()): the hash is the top bits of a multiplication.
    shift: u32,
}

/// Null `row`: an empty entry.
#[derive(Clone, Copy)]
struct KeySlot<K> {
    key: K,
    seq: u64,
    /// Slots are below surge_table::MAX_ROWS, 2^31.
    slot: u32,
    row: *mut ffi::zend_array,
}

/// A key as a memo holds it.
trait MemoKey: Copy + PartialEq {
    const NONE: Self;
    /// A word that differs between keys; `KeySlots` spreads it over its entries.
    fn word(&self) -> u64;
}

impl MemoKey for i64 {
    const NONE: i64 = 0;
    fn word(&self) -> u64 {
        *self as u64
    }
}

/// A string key of at most 23 bytes (longer ones are not remembered), with its length.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
struct ShortKey {
    len: u8,
    bytes: [u8; 23],
}

impl ShortKey {
    fn new(key: &[u8]) -> Option<ShortKey> {
        let mut bytes = [0; 23];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(ShortKey {
            len: key.len() as u8,
            bytes,
        })
    }
}

impl MemoKey for ShortKey {
    const NONE: ShortKey = ShortKey {
        len: 0,
        bytes: [0; 23],
    };
    fn word(&self) -> u64 {
        // SAFETY: ShortKey is 24 plain bytes at 8-byte alignment, which read as three words.
        let words: [u64; 3] = unsafe { std::mem::transmute(*self) };
        // The table's own key hash: keys differing in one character land far apart.
        surge_table::hash_words(0, words.into_iter())
    }
}

/// The key of a `get` or `exists` call, as the memos know it.
enum Memo {
    Int(i64),
    Str(ShortKey),
}

impl Memo {
    fn of(key: &Zval) -> Option<Memo> {
        match key.long() {
            Some(n) => Some(Memo::Int(n)),
            None => ShortKey::new(key.zend_str()?.as_bytes()).map(Memo::Str),
        }
    }
}

impl<K> KeySlot<K> {
    fn version(&self) -> RowVersion {
        RowVersion {
            slot: self.slot as usize,
            seq: self.seq,
        }
    }

    /// The array as a new reference.
    ///
    /// # Safety
    /// `row` is a live array built by `Table::row` (refcounted, as every new array is).
    unsafe fn share_row(&self) -> Zval {
        let mut zv = Zval::new();
        // SAFETY: what ZVAL_COPY does for such an array: one more reference, type and address.
        unsafe {
            (*self.row).gc.refcount += 1;
            zv.u1.type_info = ZvalTypeFlags::ArrayEx.bits();
            zv.value.arr = self.row;
        }
        zv
    }
}

impl<K: MemoKey> KeySlots<K> {
    /// At least 1.5 entries a key: with Fibonacci hashing, consecutive int keys (1..n, fds)
    /// then rarely share an entry (none of 1..10,000 in 16,384 entries). A key that finds
    /// neither of its places takes the key lookup (see `remember`).
    fn new(keys: usize) -> KeySlots<K> {
        // At least 2: a shift of 64 would overflow.
        let len = if keys == 0 {
            0
        } else {
            (keys + keys / 2).next_power_of_two().max(2)
        };
        KeySlots {
            entries: Vec::new(),
            len,
            shift: 64 - len.trailing_zeros(),
        }
    }

    /// The two entries a key may have (see `remember`). Fibonacci hashing: consecutive keys
    /// (fds, ids) spread over the whole table; the second place comes from another multiplier.
    fn places(&self, key: &K) -> [usize; 2] {
        let word = key.word();
        [0x9e37_79b9_7f4a_7c15u64, 0xc2b2_ae3d_27d4_eb4f]
            .map(|m| (word.wrapping_mul(m) >> self.shift) as usize)
    }

    /// The key's entry, if the row has not changed since its array was last reused.
    fn current(&self, table: &Shared, key: &K) -> Option<&KeySlot<K>> {
        if self.entries.is_empty() {
            return None;
        }
        let [first, second] = self.places(key);
        let mut entry = &self.entries[first];
        if entry.key != *key {
            entry = &self.entries[second];
        }
        (entry.key == *key && !entry.row.is_null() && table.is_current(entry.version()))
            .then_some(entry)
    }

    /// `row` is the array `rows` keeps for the key's row at `version`.
    fn remember(&mut self, key: K, version: RowVersion, row: &Zval) {
        if self.entries.is_empty() {
            if self.len == 0 {
                return;
            }
            let empty = KeySlot {
                key: K::NONE,
                seq: 0,
                slot: 0,
                row: std::ptr::null_mut(),
            };
            self.entries = vec![empty; self.len];
        }
        // Every array Table::row builds is refcounted, not immutable; checked all the same.
        let (Some(row), Ok(slot)) = (
            row.array().filter(|a| !a.is_immutable()),
            u32::try_from(version.slot),
        ) else {
            return;
        };
        // Its first place unless another key holds it, else its second: of 10,000 random
        // string keys in 16,384 entries about 1 in 9 find neither free (1 in 4 with one place).
        let [first, second] = self.places(&key);
        let at = if self.entries[first].key == key || self.entries[first].row.is_null() {
            first
        } else {
            second
        };
        self.entries[at] = KeySlot {
            key,
            seq: version.seq,
            slot,
            row: std::ptr::from_ref(row).cast_mut(),
        };
    }
}

enum Slot {
    Empty,
    Kept {
        version: RowVersion,
        row: Zval,
        used: bool,
    },
    /// Not kept: the row changes between reads. The version it was last read at.
    Skipped(RowVersion),
}

impl RowCache {
    /// For rows of `columns`: PHP's cost of such an array is about 64 bytes, 40 a column (a
    /// bucket and its hash slots, at least 8 of them), and each string at its longest.
    fn new(columns: &[Column], capacity: usize) -> RowCache {
        let strings: usize = columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Str(max) => 32 + max,
                _ => 0,
            })
            .sum();
        let row = 64 + 40 * columns.len().next_power_of_two().max(8) + strings;
        let limit = capacity.min(CACHE_BUDGET / row);
        RowCache {
            rows: Vec::new(),
            limit,
            ints: KeySlots::new(limit),
            strings: KeySlots::new(limit),
        }
    }

    /// The array built from this version of the row, if it is kept.
    fn get(&self, version: RowVersion) -> Option<&Zval> {
        match self.rows.get(version.slot) {
            Some(Slot::Kept {
                version: kept, row, ..
            }) if *kept == version => Some(row),
            _ => None,
        }
    }

    /// The kept array of the key's row, as a new reference, if the row has not changed since
    /// the array was last reused; no key lookup (see `KeySlots`).
    fn kept_row(&self, table: &Shared, key: &Memo) -> Option<Zval> {
        match key {
            Memo::Int(n) => self.share(self.ints.current(table, n)?),
            Memo::Str(s) => self.share(self.strings.current(table, s)?),
        }
    }

    fn share<K>(&self, entry: &KeySlot<K>) -> Option<Zval> {
        debug_assert!(
            self.get(entry.version())
                .and_then(Zval::array)
                .is_some_and(|kept| std::ptr::eq(kept, entry.row)),
            "KeySlots outlived the array it points to"
        );
        // SAFETY: `rows` still keeps the array (see KeySlots).
        Some(unsafe { entry.share_row() })
    }

    /// Whether the key's row is one this process reused and that has not changed since.
    fn knows(&self, table: &Shared, key: &Memo) -> bool {
        match key {
            Memo::Int(n) => self.ints.current(table, n).is_some(),
            Memo::Str(s) => self.strings.current(table, s).is_some(),
        }
    }

    /// The kept array of this version of the row, as a new reference; see `get`. The key is
    /// remembered with it, for `kept_row`.
    fn reuse(&mut self, version: RowVersion, key: Option<Memo>) -> Option<Zval> {
        match self.rows.get_mut(version.slot) {
            Some(Slot::Kept {
                version: kept,
                row,
                used,
            }) if *kept == version => {
                *used = true;
                match key {
                    Some(Memo::Int(n)) => self.ints.remember(n, version, row),
                    Some(Memo::Str(s)) => self.strings.remember(s, version, row),
                    None => {}
                }
                Some(row.shallow_clone())
            }
            _ => None,
        }
    }

    /// `row` was just built from this version of the row; keeps it unless the row changes
    /// faster than it is read (see the type).
    fn offer(&mut self, version: RowVersion, row: &Zval) {
        if version.slot >= self.limit {
            return;
        }
        if self.rows.len() <= version.slot {
            self.rows.resize_with(version.slot + 1, || Slot::Empty);
        }
        let slot = &mut self.rows[version.slot];
        let keep = match slot {
            Slot::Empty | Slot::Kept { used: true, .. } => true,
            Slot::Kept { used: false, .. } => false,
            Slot::Skipped(last) => *last == version,
        };
        *slot = if keep {
            Slot::Kept {
                version,
                row: row.shallow_clone(),
                used: false,
            }
        } else {
            Slot::Skipped(version)
        };
    }
}

/// A column name as a key of PHP arrays: an interned string, or an int for a name such as
/// "7", which PHP arrays always hold as the int 7.
enum Name {
    Str(ZBox<ZendStr>),
    Index(i64),
}

impl Name {
    fn new(name: &str) -> Name {
        match decimal_key(name) {
            Some(n) => Name::Index(n),
            None => Name::Str(ZendStr::new_interned(name, false)),
        }
    }

    fn find<'a>(&self, array: &'a ZendHashTable) -> Option<&'a Zval> {
        match self {
            Name::Str(s) => array.get(ArrayKey::ZendString(s)),
            Name::Index(n) => array.get_index(*n),
        }
    }
}

/// The int a string stands for as an array key in PHP: "0", "7", "-12", not "07", "-0", "+1",
/// " 1" or anything beyond i64.
fn decimal_key(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = match digits.as_bytes() {
        [b'0'] => s == "0",
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if canonical {
        s.parse().ok()
    } else {
        None
    }
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

/// A value for `column`, converted to the column's type as Swoole's table (and PHP's
/// coercive typing) converts it: a numeric string or a float (its fraction cut off) into an
/// INT column, a numeric string into a FLOAT one, an int, float or bool into a STRING one
/// as PHP prints it, null as the column's zero. A string that is no number is refused for a
/// number column. `column` is None for a name the schema does not have (the crate then
/// refuses the name) and for incr()'s step.
fn value_arg(zv: &Zval, name: &str, column: Option<&Column>) -> PhpResult<Value> {
    let ty = column.map(|c| c.ty);
    let value = if let Some(n) = zv.long() {
        Value::Int(n)
    } else if let Some(f) = zv.double() {
        Value::Float(f)
    } else if let Some(s) = zv.zend_str() {
        match ty {
            Some(ColumnType::Str(_)) => return Ok(Value::Str(s.as_bytes().to_vec())),
            _ => match s.as_str().ok().and_then(numeric_string) {
                Some(Number::Int(n)) => Value::Int(n),
                Some(Number::Float(f)) => Value::Float(f),
                None => {
                    return Err(error(format!(
                        "value for column '{name}' must be a number, got the string '{}'",
                        String::from_utf8_lossy(&s.as_bytes()[..s.len().min(40)])
                    )))
                }
            },
        }
    } else if let Some(b) = zv.bool() {
        match ty {
            Some(ColumnType::Str(_)) => {
                return Ok(Value::Str(if b { b"1".to_vec() } else { Vec::new() }))
            }
            _ => Value::Int(i64::from(b)),
        }
    } else if zv.is_null() && ty.is_some() {
        Value::Int(0)
    } else {
        return Err(error(format!(
            "value for column '{name}' must be an int, float or string, got {}",
            type_name(zv)
        )));
    };
    Ok(match (ty, value) {
        (Some(ColumnType::Str(_)), Value::Int(0)) if zv.is_null() => Value::Str(Vec::new()),
        (Some(ColumnType::Str(_)), _) => Value::Str(bytes_arg(zv, "table value")?),
        (Some(ColumnType::Int), Value::Float(f)) => {
            Value::Int(float_to_int(f).ok_or_else(|| {
                error(format!(
                    "column '{name}' is INT; it cannot hold {f} (beyond a 64-bit integer)"
                ))
            })?)
        }
        (_, value) => value,
    })
}

/// The bytes of a key: borrowed from a PHP string, or an int written out in decimal as PHP
/// prints it (so `5` and `"5"` are the same key), without allocating.
enum Key<'a> {
    Borrowed(&'a [u8]),
    Digits { text: Words, len: usize },
    Owned(Vec<u8>),
}

/// Bytes at 8-byte alignment. A plain byte array would sit at offset 1 of the enum, and each
/// word copied into it would be loaded across two of `int_key`'s stores (a stall, in perf).
#[repr(C, align(8))]
struct Words([u8; 24]);

impl Key<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Key::Borrowed(b) => b,
            Key::Digits { text, len } => &text.0[..*len],
            Key::Owned(v) => v,
        }
    }
}

// Inlined, so that the key is not copied through memory on its way out.
#[inline(always)]
fn key_arg(zv: &Zval) -> PhpResult<Key<'_>> {
    match plain_key(zv) {
        Some(key) => Ok(key),
        None => Ok(Key::Owned(bytes_arg(zv, "table key")?)),
    }
}

/// The key of a string or an int; None for the other types, which key_arg converts or refuses.
#[inline(always)]
fn plain_key(zv: &Zval) -> Option<Key<'_>> {
    if let Some(s) = zv.zend_str() {
        return Some(Key::Borrowed(s.as_bytes()));
    }
    zv.long().map(int_key)
}

/// `n` in decimal. The characters are gathered in registers, 8 to a word, and stored whole:
/// the table reads the key back at once in 4- and 8-byte loads, which a CPU cannot serve from
/// a row of 1-byte stores still in flight (it stalls until they reach the cache).
fn int_key(n: i64) -> Key<'static> {
    // Little-endian words: the text's first character is the lowest byte of words[0]. Each
    // character goes in front, last digit first, moving the others up one byte. 24 bytes hold
    // every i64, i64::MIN's sign included.
    let mut words = [0u64; 3];
    let mut len = 0;
    let mut put_in_front = |c: u8| {
        words[2] = words[2] << 8 | words[1] >> 56;
        words[1] = words[1] << 8 | words[0] >> 56;
        words[0] = words[0] << 8 | u64::from(c);
        len += 1;
    };
    let mut rest = n.unsigned_abs();
    loop {
        put_in_front(b'0' + (rest % 10) as u8);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        put_in_front(b'-');
    }
    let mut text = [0u8; 24];
    for (chunk, word) in text.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Key::Digits {
        text: Words(text),
        len,
    }
}

impl Table {
    /// For `table_fast`: `get($key)` of a row this process has read before and that has not
    /// changed since, without looking the key up (an int, or a string of up to 23 bytes);
    /// None in every other case.
    pub(crate) fn kept_row(&self, key: &Zval) -> Option<Zval> {
        self.cache
            .try_borrow()
            .ok()?
            .kept_row(&self.table, &Memo::of(key)?)
    }

    /// For `table_fast`: `exists($key)` of a string or int key, None if it would fail (the
    /// generated handler then says why). A key this process found with `get` whose row has
    /// not changed since needs no key lookup.
    pub(crate) fn exists_now(&self, key: &Zval) -> Option<bool> {
        let cache = self.cache.try_borrow().ok()?;
        if Memo::of(key).is_some_and(|memo| cache.knows(&self.table, &memo)) {
            return Some(true);
        }
        self.table.exists(plain_key(key)?.bytes()).ok()
    }

    fn names(&self) -> PhpResult<&[Name]> {
        self.names
            .get()
            .map(Vec::as_slice)
            .ok_or_else(|| fail(TableError::NotCreated))
    }

    /// A row as a PHP array keyed by column name.
    fn row(&self, values: &[Value]) -> PhpResult<Zval> {
        let names = self.names()?;
        // SAFETY: a new array gets distinct keys (column names are unique), so adding without
        // looking first is right; the array takes its own reference to a key that is not
        // interned (with opcache, a name may not be). Each value is moved into the array, which
        // owns it from then on, hence the forget.
        let row = unsafe {
            let ht = ffi::_zend_new_array(names.len() as u32);
            for (name, value) in names.iter().zip(values) {
                let mut zv = value_zval(value);
                match name {
                    Name::Str(s) => ffi::zend_hash_add_new(ht, s.as_ptr().cast_mut(), &raw mut zv),
                    Name::Index(n) => ffi::zend_hash_index_update(ht, *n as u64, &raw mut zv),
                };
                std::mem::forget(zv);
            }
            ZBox::from_raw(ht)
        };
        let mut zv = Zval::new();
        zv.set_hashtable(row);
        Ok(zv)
    }

    /// The (column name, value) pairs of a row given to set(). Looks each column up in the
    /// array (by its interned, pre-hashed name); only when the array has other keys does it
    /// walk the array, to name the first unknown one.
    fn row_values<'t>(&'t self, row: &ZendHashTable) -> PhpResult<Vec<(&'t str, Value)>> {
        let columns = self.table.columns().map_err(fail)?;
        let mut values = Vec::with_capacity(row.len());
        for (name, column) in self.names()?.iter().zip(columns) {
            if let Some(zv) = name.find(row) {
                values.push((
                    column.name.as_str(),
                    value_arg(zv, &column.name, Some(column))?,
                ));
            }
        }
        if values.len() == row.len() {
            return Ok(values);
        }
        for (key, _) in row.iter() {
            let name = key.to_string();
            if !columns.iter().any(|c| c.name == name) {
                // The crate's refusal, which lists the columns (whatever the value).
                return Err(fail(
                    self.table
                        .column_index(&name)
                        .err()
                        .unwrap_or(TableError::NotCreated),
                ));
            }
        }
        // Not reached: a key that is a column's name is found by that name.
        Ok(values)
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
    #[php(defaults(conflict_proportion = 0.2))]
    pub fn __construct(size: Int, conflict_proportion: f64) -> PhpResult<Self> {
        let size = surge_table::checked_table_size(size.0).map_err(fail)?;
        let table = Shared::new(size, conflict_proportion).map_err(fail)?;
        Ok(Table {
            table,
            cursor: RefCell::new(None),
            row_buf: RefCell::new(Vec::new()),
            names: OnceCell::new(),
            cache: RefCell::new(RowCache::new(&[], 0)),
        })
    }

    /// Adds a column before create(): TYPE_INT (64-bit), TYPE_FLOAT, or TYPE_STRING of at most
    /// `$size` bytes.
    #[php(defaults(size = 0))]
    pub fn column(&self, name: String, r#type: i64, size: i64) -> PhpResult<bool> {
        let ty = match r#type {
            Self::TYPE_INT => ColumnType::Int,
            Self::TYPE_FLOAT => ColumnType::Float,
            Self::TYPE_STRING => {
                ColumnType::Str(surge_table::checked_string_size(&name, size).map_err(fail)?)
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
        let columns = self.table.columns().map_err(fail)?;
        let _ = self
            .names
            .set(columns.iter().map(|c| Name::new(&c.name)).collect());
        *self.cache.borrow_mut() = RowCache::new(columns, self.table.capacity());
        crate::table_fast::install();
        Ok(true)
    }

    /// Writes the given columns of the row `$key` (a new row gets 0, 0.0, "" for the others).
    pub fn set(&self, key: &Zval, row: &ZendHashTable) -> PhpResult<bool> {
        let key = key_arg(key)?;
        let values = self.row_values(row)?;
        self.table.set(key.bytes(), &values).map_err(fail)?;
        Ok(true)
    }

    /// The row as an array, or one column's value with `$field`; false if there is no such row.
    pub fn get(&self, key: &Zval, field: Option<&str>) -> PhpResult<Zval> {
        let memo = Memo::of(key);
        let key = key_arg(key)?;
        if let Some(field) = field {
            return Ok(self
                .table
                .get_field(key.bytes(), field)
                .map_err(fail)?
                .map_or_else(falsy, |v| value_zval(&v)));
        }
        let mut values = self.row_buf.borrow_mut();
        let mut cache = self.cache.borrow_mut();
        let found = self
            .table
            .get_versioned(key.bytes(), &mut values, |v| cache.get(v).is_some())
            .map_err(fail)?;
        match found {
            None => Ok(falsy()),
            Some((version, true)) => {
                let row = self.row(&values)?;
                cache.offer(version, &row);
                Ok(row)
            }
            // The row has not changed since the kept array was built from it.
            Some((version, false)) => Ok(cache
                .reuse(version, memo)
                .expect("get_versioned asked the cache")),
        }
    }

    /// True if the row exists.
    pub fn exists(&self, key: &Zval) -> PhpResult<bool> {
        self.table.exists(key_arg(key)?.bytes()).map_err(fail)
    }

    /// Deletes the row; false if it did not exist.
    pub fn del(&self, key: &Zval) -> PhpResult<bool> {
        self.table.del(key_arg(key)?.bytes()).map_err(fail)
    }

    /// Swoole's alias of exists().
    pub fn exist(&self, key: &Zval) -> PhpResult<bool> {
        self.exists(key)
    }

    /// Swoole's alias of del().
    pub fn delete(&self, key: &Zval) -> PhpResult<bool> {
        self.del(key)
    }

    /// Atomically adds `$by` (default 1) to an INT or FLOAT column and returns the new value; a
    /// missing row is created at 0 first.
    pub fn incr(&self, key: &Zval, column: &str, by: Option<&Zval>) -> PhpResult<Zval> {
        self.step(key, column, by, false)
    }

    /// Atomically subtracts `$by` (default 1); see incr().
    pub fn decr(&self, key: &Zval, column: &str, by: Option<&Zval>) -> PhpResult<Zval> {
        self.step(key, column, by, true)
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
        self.cursor
            .borrow()
            .as_ref()
            .map_or_else(Zval::new, |e| binary_zval(&e.key))
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
        let key = key_arg(key)?;
        let by = match by {
            None => Value::Int(1),
            Some(zv) => value_arg(zv, column, None)?,
        };
        let result = if down {
            self.table.decr(key.bytes(), column, by)
        } else {
            self.table.incr(key.bytes(), column, by)
        };
        Ok(value_zval(&result.map_err(fail)?))
    }
}
