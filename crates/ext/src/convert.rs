//! Small conversions between zvals and the engine's plain Rust values.

use std::ffi::{c_char, c_int};

use ext_php_rs::boxed::ZBox;
use ext_php_rs::convert::{FromZval, IntoZval};
use ext_php_rs::exception::PhpResult;
use ext_php_rs::flags::DataType;
use ext_php_rs::types::{ZendHashTable, ZendStr, Zval};
use surge_engine::Value;

use crate::exception::error;

/// A binary-safe PHP string.
pub fn binary_zval(bytes: &[u8]) -> Zval {
    let mut zv = Zval::new();
    zv.set_zend_string(ZendStr::new(bytes, false));
    zv
}

unsafe extern "C" {
    // Exported by PHP (Zend/zend_operators.h): a float as `(string)` makes it (the `precision`
    // setting, `1.0E+20`, `INF`, `NAN`); ext-php-rs has no binding for it.
    fn zend_double_to_str(num: f64) -> *mut ZendStr;
}

/// The bytes of a string argument; ints and floats are converted as PHP would print them.
pub fn bytes_arg(zv: &Zval, what: &str) -> PhpResult<Vec<u8>> {
    if let Some(s) = zv.zend_str() {
        return Ok(s.as_bytes().to_vec());
    }
    if let Some(n) = zv.long() {
        return Ok(n.to_string().into_bytes());
    }
    if let Some(f) = zv.double() {
        // SAFETY: PHP makes a new string, which the box releases.
        let text = unsafe { ZBox::from_raw(zend_double_to_str(f)) };
        return Ok(text.as_bytes().to_vec());
    }
    Err(error(format!(
        "{what} must be a string, got {}",
        type_name(zv)
    )))
}

/// A string argument as PHP's coercive typing reads one (Swoole's methods take their strings
/// so): ints and floats as printed, true as "1", false and null as "" (null still converts for
/// PHP's own functions, with a deprecation: Symfony's getters give it), a Stringable object
/// by its __toString(). The text must be UTF-8.
pub fn text_arg(zv: &Zval, what: &str) -> PhpResult<String> {
    let bytes = if zv.is_null() || zv.is_false() {
        Vec::new()
    } else if zv.is_true() {
        b"1".to_vec()
    } else if let Some(object) = zv.object() {
        let text = object.try_call_method("__toString", vec![]).map_err(|_| {
            error(format!(
                "{what} must be a string, got an object without __toString()"
            ))
        })?;
        bytes_arg(&text, what)?
    } else {
        bytes_arg(zv, what)?
    };
    String::from_utf8(bytes).map_err(|_| error(format!("{what} must be UTF-8 text")))
}

/// An int argument as PHP's coercive typing reads one: an int, a float (its fraction cut off),
/// a numeric string ("201", " 42 ", "1e3"), a bool; null as 0.
pub fn int_arg(zv: &Zval, what: &str) -> PhpResult<i64> {
    if zv.is_null() {
        return Ok(0);
    }
    coerced_int(zv).ok_or_else(|| error(format!("{what} must be an int, got {}", type_name(zv))))
}

/// An int parameter (an fd, a port, milliseconds) read as PHP reads one of its own functions'
/// `int` parameters, and so Swoole's: `push($fd, ...)` with the string keys of a Table
/// (`'7'`), a query string's value or a float works as it does there. Null is no int: a
/// parameter that may be left out is an `Option<Int>`.
#[derive(Clone, Copy)]
pub struct Int(pub i64);

impl FromZval<'_> for Int {
    const TYPE: DataType = DataType::Long;

    fn from_zval(zv: &Zval) -> Option<Self> {
        coerced_int(zv).map(Int)
    }
}

/// What PHP's coercive typing makes of a value for an `int`: an int, a bool, a float (its
/// fraction cut off, as PHP does with a deprecation since 8.1), a numeric string; None for
/// anything else (and null).
fn coerced_int(zv: &Zval) -> Option<i64> {
    if let Some(n) = zv.long() {
        return Some(n);
    }
    if let Some(b) = zv.bool() {
        return Some(i64::from(b));
    }
    match (zv.double(), zv.str().and_then(numeric_string)) {
        (Some(f), _) | (_, Some(Number::Float(f))) => float_to_int(f),
        (_, Some(Number::Int(n))) => Some(n),
        _ => None,
    }
}

/// A number read from a string.
pub enum Number {
    Int(i64),
    Float(f64),
}

/// A numeric string as PHP reads one ("42", " 1.5", "1e3"): an int when it is one, else a
/// finite float; None for anything else ("12 apples", "inf").
pub fn numeric_string(text: &str) -> Option<Number> {
    // The white space PHP allows around a numeric string, and no other.
    let digits = text.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if let Ok(n) = digits.parse::<i64>() {
        return Some(Number::Int(n));
    }
    (digits.parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .map(Number::Float)
}

/// A float as an int, its fraction cut off as PHP does; None beyond a 64-bit int (or NaN).
pub fn float_to_int(f: f64) -> Option<i64> {
    (f.is_finite() && f.abs() < 9.2e18).then(|| f.trunc() as i64)
}

/// Whether PHP takes the value for true (a bool argument in coercive typing reads it so).
pub fn truthy(zv: &Zval) -> bool {
    if let Some(b) = zv.bool() {
        b
    } else if let Some(n) = zv.long() {
        n != 0
    } else if let Some(f) = zv.double() {
        f != 0.0
    } else if let Some(s) = zv.zend_str() {
        !matches!(s.as_bytes(), b"" | b"0")
    } else if let Some(a) = zv.array() {
        !a.is_empty()
    } else {
        zv.is_object()
    }
}

pub fn type_name(zv: &Zval) -> &'static str {
    if zv.is_null() {
        "null"
    } else if zv.is_bool() {
        "bool"
    } else if zv.is_long() {
        "int"
    } else if zv.is_double() {
        "float"
    } else if zv.is_string() {
        "string"
    } else if zv.is_array() {
        "array"
    } else if zv.is_object() {
        "object"
    } else {
        "resource"
    }
}

/// How deep arrays may nest in a setting: the deepest setting (`pusher`: apps, an app, its
/// options) needs 3; the limit stops a PHP array that contains itself from recursing forever.
const SETTING_DEPTH: usize = 16;

/// A setting's value, for the engine's typed config; None if its arrays nest deeper than
/// `SETTING_DEPTH` (a recursive array never ends).
pub fn setting_value(zv: &Zval) -> Option<Value> {
    nested_setting_value(zv, SETTING_DEPTH)
}

/// A setting as set() was given it, back as PHP had it (for `$server->setting`).
pub fn setting_zval(value: &Value) -> PhpResult<Zval> {
    let mut zv = Zval::new();
    match value {
        Value::Null => {}
        Value::Bool(b) => zv.set_bool(*b),
        Value::Int(n) => zv.set_long(*n),
        Value::Float(f) => zv.set_double(*f),
        Value::Str(s) => zv.set_string(s, false)?,
        Value::List(items) => {
            let mut list = ZendHashTable::new();
            for item in items {
                list.push(setting_zval(item)?)?;
            }
            zv.set_hashtable(list);
        }
        Value::Map(entries) => {
            let mut map = Assoc::new();
            for (key, item) in entries {
                map.set(key, setting_zval(item)?)?;
            }
            return Ok(map.into_zval());
        }
    }
    Ok(zv)
}

fn nested_setting_value(zv: &Zval, depth: usize) -> Option<Value> {
    Some(if let Some(n) = zv.long() {
        Value::Int(n)
    } else if let Some(f) = zv.double() {
        Value::Float(f)
    } else if let Some(b) = zv.bool() {
        Value::Bool(b)
    } else if let Some(s) = zv.string() {
        Value::Str(s)
    } else if let Some(arr) = zv.array() {
        let depth = depth.checked_sub(1)?;
        if arr.has_numerical_keys() {
            Value::List(
                arr.values()
                    .map(|v| nested_setting_value(v, depth))
                    .collect::<Option<_>>()?,
            )
        } else {
            Value::Map(
                arr.iter()
                    .map(|(k, v)| Some((k.to_string(), nested_setting_value(v, depth)?)))
                    .collect::<Option<_>>()?,
            )
        }
    } else if zv.is_null() {
        Value::Null
    } else {
        // An object or a resource: no setting takes one.
        return None;
    })
}

/// Builds an associative PHP array in insertion order.
pub struct Assoc(ZBox<ZendHashTable>);

impl Assoc {
    pub fn new() -> Self {
        Assoc(ZendHashTable::new())
    }

    pub fn set(&mut self, key: &str, value: impl IntoZval) -> PhpResult<()> {
        self.0.insert(key, value)?;
        Ok(())
    }

    pub fn into_zval(self) -> Zval {
        let mut zv = Zval::new();
        zv.set_hashtable(self.0);
        zv
    }
}

unsafe extern "C" {
    // PHP's JSON decoder (ext/json/php_json.h), part of every PHP 8 build.
    fn php_json_decode_ex(
        return_value: *mut Zval,
        s: *const c_char,
        len: usize,
        options: i64,
        depth: i64,
    ) -> c_int;
}

/// `PHP_JSON_OBJECT_AS_ARRAY` and `PHP_JSON_PARSER_DEFAULT_DEPTH`, as `json_decode($json, true)`.
const OBJECT_AS_ARRAY: i64 = 1;
const DEFAULT_DEPTH: i64 = 512;

/// JSON text as PHP's `json_decode($json, true)` gives it (objects as arrays); null if invalid.
pub fn json_zval(json: &str) -> Zval {
    // PHP's scanner finds the end of the text at a NUL byte (every PHP string has one after its
    // length): without it, it reads on past the text and, unless it meets a 0, fails.
    let mut text = Vec::with_capacity(json.len() + 1);
    text.extend_from_slice(json.as_bytes());
    text.push(0);
    let mut value = Zval::new();
    // SAFETY: `value` is a live zval for the result; `text` is `json` plus the NUL PHP reads.
    let ok = unsafe {
        php_json_decode_ex(
            &mut value,
            text.as_ptr().cast(),
            json.len(),
            OBJECT_AS_ARRAY,
            DEFAULT_DEPTH,
        )
    } == 0;
    if ok {
        value
    } else {
        Zval::new()
    }
}

/// `key => value` pairs (later duplicates win) as a PHP array.
pub fn pairs_zval<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> PhpResult<Zval> {
    let mut arr = Assoc::new();
    for (k, v) in pairs {
        arr.set(k.as_ref(), v.as_ref())?;
    }
    Ok(arr.into_zval())
}
