//! Every method and every refusal, in one process.

use surge_table::{
    bucket_count, checked_string_size, checked_table_size, memory_size, row_bytes, Column,
    ColumnType, RowVersion, Table, TableError, Value, KEY_MAX, STRING_MAX,
};

fn users(size: usize) -> Table {
    let t = Table::new(size, 0.2).unwrap();
    t.add_column("id", ColumnType::Int).unwrap();
    t.add_column("score", ColumnType::Float).unwrap();
    t.add_column("name", ColumnType::Str(16)).unwrap();
    t.create().unwrap();
    t
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn err<T: std::fmt::Debug>(r: Result<T, TableError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_sizes_and_proportions_are_refused() {
    assert_eq!(
        err(Table::new(0, 0.2)),
        "table size must be between 1 and 2147483648 rows, got 0"
    );
    assert!(Table::new((1 << 31) + 1, 0.2).is_err());
    assert_eq!(
        err(checked_table_size(-5)),
        "table size must be between 1 and 2147483648 rows, got -5"
    );
    assert_eq!(checked_table_size(10), Ok(10));
    for cp in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let e = err(Table::new(10, cp));
        assert!(
            e.starts_with("conflict_proportion must be a number between 0 and 1, got"),
            "{e}"
        );
    }
    assert!(Table::new(10, 0.0).is_ok() && Table::new(10, 1.0).is_ok());
    assert_eq!(
        err(checked_string_size("name", -1)),
        "column 'name': a STRING column holds between 1 and 1048576 bytes, got a size of -1"
    );
    assert_eq!(checked_string_size("name", 255), Ok(255));
}

#[test]
fn column_definitions_are_checked() {
    let t = Table::new(8, 0.2).unwrap();
    t.add_column("a", ColumnType::Int).unwrap();
    assert_eq!(
        err(t.add_column("a", ColumnType::Float)),
        "column 'a' is already defined"
    );
    assert_eq!(
        err(t.add_column("", ColumnType::Int)),
        "a column name cannot be empty"
    );
    assert_eq!(
        err(t.add_column("s", ColumnType::Str(0))),
        "column 's': a STRING column holds between 1 and 1048576 bytes, got a size of 0"
    );
    assert!(t.add_column("s", ColumnType::Str(STRING_MAX + 1)).is_err());
    t.add_column("s", ColumnType::Str(STRING_MAX)).unwrap();
    assert!(!t.is_created());
    t.create().unwrap();
    assert!(t.is_created());
    assert_eq!(
        err(t.add_column("late", ColumnType::Int)),
        "cannot add column 'late': the table is already created, and columns can only be added before create()"
    );
    assert_eq!(
        err(t.create()),
        "the table is already created; create() can be called only once"
    );
    let names: Vec<_> = t
        .columns()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["a", "s"]);
}

#[test]
fn everything_before_create_is_refused() {
    let t = Table::new(8, 0.2).unwrap();
    t.add_column("n", ColumnType::Int).unwrap();
    let msg = "the table is not created yet; call create() before using it";
    assert_eq!(err(t.set(b"k", &[("n", Value::Int(1))])), msg);
    assert_eq!(err(t.get(b"k")), msg);
    assert_eq!(err(t.get_into(b"k", &mut Vec::new())), msg);
    assert_eq!(err(t.get_field(b"k", "n")), msg);
    assert_eq!(err(t.exists(b"k")), msg);
    assert_eq!(err(t.del(b"k")), msg);
    assert_eq!(err(t.incr(b"k", "n", Value::Int(1))), msg);
    assert_eq!(err(t.decr(b"k", "n", Value::Int(1))), msg);
    assert_eq!(err(t.count()), msg);
    assert_eq!(err(t.next_entry(0)), msg);
    assert!(t.iter().is_err());
    assert_eq!(err(t.stats()), msg);
    assert_eq!(err(t.memory_size()), msg);
    assert_eq!(err(t.columns()), msg);
    assert_eq!(err(t.column_index("n")), msg);
    assert_eq!(t.capacity(), 8);
}

#[test]
fn set_get_and_partial_updates() {
    let t = users(16);
    assert_eq!(t.get(b"u1").unwrap(), None);
    t.set(
        b"u1",
        &[
            ("id", Value::Int(7)),
            ("score", Value::Float(1.5)),
            ("name", s("ann")),
        ],
    )
    .unwrap();
    assert_eq!(
        t.get(b"u1").unwrap(),
        Some(vec![Value::Int(7), Value::Float(1.5), s("ann")])
    );
    // A partial update keeps the other columns.
    t.set(b"u1", &[("name", s("bob"))]).unwrap();
    assert_eq!(
        t.get(b"u1").unwrap(),
        Some(vec![Value::Int(7), Value::Float(1.5), s("bob")])
    );
    // A new row starts from zero and empty.
    t.set(b"u2", &[("score", Value::Int(3))]).unwrap();
    assert_eq!(
        t.get(b"u2").unwrap(),
        Some(vec![Value::Int(0), Value::Float(3.0), s("")])
    );
    // The same column twice: the last value wins.
    t.set(b"u2", &[("id", Value::Int(1)), ("id", Value::Int(2))])
        .unwrap();
    assert_eq!(t.get_field(b"u2", "id").unwrap(), Some(Value::Int(2)));
    // Empty set of a new key creates a default row.
    t.set(b"u3", &[]).unwrap();
    assert_eq!(
        t.get(b"u3").unwrap(),
        Some(vec![Value::Int(0), Value::Float(0.0), s("")])
    );
    // Shorter strings replace longer ones completely.
    t.set(b"u1", &[("name", s("abcdefghijklmnop"))]).unwrap();
    t.set(b"u1", &[("name", s("xy"))]).unwrap();
    assert_eq!(t.get_field(b"u1", "name").unwrap(), Some(s("xy")));
    assert_eq!(t.count().unwrap(), 3);
}

#[test]
fn keys_and_strings_are_binary_safe() {
    let t = users(16);
    let key = b"a\0b\xff";
    let name = Value::Str(vec![0, 255, 10, 0]);
    t.set(key, &[("name", name.clone())]).unwrap();
    assert_eq!(t.get_field(key, "name").unwrap(), Some(name));
    assert!(!t.exists(b"a").unwrap());
    assert!(!t.exists(b"a\0b").unwrap());
    assert!(!t.exists(b"a\0b\xff\0").unwrap());
    assert!(t.exists(key).unwrap());
    // Keys that differ only in length are different rows.
    let t = users(KEY_MAX);
    for len in 1..=KEY_MAX {
        t.set(&vec![b'k'; len], &[("id", Value::Int(len as i64))])
            .unwrap();
    }
    for len in 1..=KEY_MAX {
        assert_eq!(
            t.get_field(&vec![b'k'; len], "id").unwrap(),
            Some(Value::Int(len as i64))
        );
    }
}

#[test]
fn key_limits() {
    let t = users(4);
    let longest = vec![b'x'; KEY_MAX];
    t.set(&longest, &[("id", Value::Int(1))]).unwrap();
    assert!(t.exists(&longest).unwrap());
    let too_long = vec![b'x'; KEY_MAX + 1];
    let msg = "key is 64 bytes; a key holds at most 63";
    assert_eq!(err(t.set(&too_long, &[("id", Value::Int(1))])), msg);
    assert_eq!(err(t.get(&too_long)), msg);
    assert_eq!(err(t.exists(&too_long)), msg);
    assert_eq!(err(t.del(&too_long)), msg);
    assert_eq!(err(t.incr(&too_long, "id", Value::Int(1))), msg);
    assert_eq!(err(t.get(b"")), "a key cannot be empty");
    assert_eq!(err(t.set(b"", &[])), "a key cannot be empty");
}

#[test]
fn values_are_checked_and_nothing_is_half_written() {
    let t = Table::new(8, 0.2).unwrap();
    t.add_column("n", ColumnType::Int).unwrap();
    t.add_column("f", ColumnType::Float).unwrap();
    t.add_column("name", ColumnType::Str(255)).unwrap();
    t.create().unwrap();
    let long = Value::Str(vec![b'a'; 300]);
    assert_eq!(
        err(t.set(b"k", &[("name", long)])),
        "value for column 'name' is 300 bytes; the column holds at most 255"
    );
    t.set(b"k", &[("name", Value::Str(vec![b'a'; 255]))])
        .unwrap();
    assert_eq!(
        err(t.set(b"k", &[("nope", Value::Int(1))])),
        "unknown column 'nope'; the columns are: n, f, name"
    );
    let refusals = [
        (
            "n",
            s("12"),
            "column 'n' is INT; it cannot hold a string (only integers)",
        ),
        (
            "n",
            Value::Float(1.0),
            "column 'n' is INT; it cannot hold a float (only integers)",
        ),
        (
            "f",
            s("1.5"),
            "column 'f' is FLOAT; it cannot hold a string (only floats and integers)",
        ),
        (
            "name",
            Value::Int(5),
            "column 'name' is STRING; it cannot hold an integer (only strings)",
        ),
    ];
    for (column, value, message) in refusals {
        assert_eq!(err(t.set(b"k", &[(column, value)])), message);
    }
    // A valid value before a bad one is not written either, to a new or an existing row.
    assert!(t
        .set(b"new", &[("n", Value::Int(1)), ("n", s("x"))])
        .is_err());
    assert!(!t.exists(b"new").unwrap());
    assert!(t
        .set(b"k", &[("n", Value::Int(9)), ("bad", Value::Int(1))])
        .is_err());
    assert_eq!(t.get_field(b"k", "n").unwrap(), Some(Value::Int(0)));
    assert_eq!(t.count().unwrap(), 1);
    assert_eq!(
        err(t.get_field(b"k", "nope")),
        "unknown column 'nope'; the columns are: n, f, name"
    );
    assert_eq!(
        err(t.column_index("nope")),
        "unknown column 'nope'; the columns are: n, f, name"
    );
    assert_eq!(t.column_index("name"), Ok(2));
}

#[test]
fn a_table_without_columns_is_a_key_set() {
    let t = Table::new(2, 0.2).unwrap();
    t.create().unwrap();
    t.set(b"a", &[]).unwrap();
    assert_eq!(t.get(b"a").unwrap(), Some(vec![]));
    assert_eq!(
        err(t.set(b"a", &[("x", Value::Int(1))])),
        "unknown column 'x': the table has no columns"
    );
}

#[test]
fn get_field_exists_del_count() {
    let t = users(8);
    assert_eq!(t.get_field(b"k", "id").unwrap(), None);
    assert!(!t.exists(b"k").unwrap());
    assert!(!t.del(b"k").unwrap());
    t.set(b"k", &[("id", Value::Int(3))]).unwrap();
    assert!(t.exists(b"k").unwrap());
    assert_eq!(t.get_field(b"k", "score").unwrap(), Some(Value::Float(0.0)));
    assert_eq!(t.count().unwrap(), 1);
    assert!(t.del(b"k").unwrap());
    assert!(!t.del(b"k").unwrap());
    assert!(!t.exists(b"k").unwrap());
    assert_eq!(t.get(b"k").unwrap(), None);
    assert_eq!(t.count().unwrap(), 0);
}

#[test]
fn get_into_reuses_buffers_and_clears_on_miss() {
    let t = users(8);
    t.set(
        b"a",
        &[("id", Value::Int(1)), ("name", s("long name here"))],
    )
    .unwrap();
    t.set(b"b", &[("id", Value::Int(2)), ("name", s("b"))])
        .unwrap();
    let mut out = Vec::new();
    assert!(t.get_into(b"a", &mut out).unwrap());
    assert_eq!(out[2], s("long name here"));
    assert!(t.get_into(b"b", &mut out).unwrap());
    assert_eq!(out, vec![Value::Int(2), Value::Float(0.0), s("b")]);
    assert!(!t.get_into(b"zz", &mut out).unwrap());
    assert!(out.is_empty());
}

/// A reader that keeps rows by version is told when it may reuse what it kept: only while
/// nothing wrote the row, whether by set, incr, or a delete and a new row under the same key.
#[test]
fn get_versioned_says_when_a_kept_row_is_still_current() {
    let t = users(8);
    t.set(b"a", &[("id", Value::Int(1))]).unwrap();
    let mut out = Vec::new();
    let read = |out: &mut Vec<Value>, kept: Option<RowVersion>| {
        t.get_versioned(b"a", out, |v| Some(v) == kept).unwrap()
    };
    let (first, loaded) = read(&mut out, None).unwrap();
    assert!(loaded);
    assert_eq!(out[0], Value::Int(1));
    out.clear();
    assert_eq!(read(&mut out, Some(first)), Some((first, false)));
    assert!(out.is_empty(), "a kept row is not read again");

    let mut seen = vec![first];
    let writes: [&dyn Fn(); 3] = [
        &|| t.set(b"a", &[("id", Value::Int(2))]).unwrap(),
        &|| drop(t.incr(b"a", "id", Value::Int(1)).unwrap()),
        &|| {
            t.del(b"a").unwrap();
            t.set(b"a", &[("id", Value::Int(9))]).unwrap();
        },
    ];
    for write in writes {
        write();
        assert!(!t.is_current(*seen.last().unwrap()));
        let (now, loaded) = read(&mut out, seen.last().copied()).unwrap();
        assert!(loaded && !seen.contains(&now), "{now:?} after {seen:?}");
        assert!(t.is_current(now));
        seen.push(now);
    }
    assert_eq!(out[0], Value::Int(9));
    t.del(b"a").unwrap();
    assert!(!t.is_current(*seen.last().unwrap()));
    assert_eq!(read(&mut out, seen.last().copied()), None);
}

/// `is_current` is what lets a reader skip the key lookup: a key deleted and set again lands
/// in another slot while its old slot goes to another key, and the old version is stale.
#[test]
fn is_current_sees_a_slot_reused_by_another_key() {
    let t = users(2);
    t.set(b"a", &[("id", Value::Int(1))]).unwrap();
    t.set(b"b", &[("id", Value::Int(2))]).unwrap();
    let mut out = Vec::new();
    let (a, _) = t.get_versioned(b"a", &mut out, |_| false).unwrap().unwrap();
    let (b, _) = t.get_versioned(b"b", &mut out, |_| false).unwrap().unwrap();
    assert!(t.is_current(a) && t.is_current(b));
    t.del(b"a").unwrap();
    t.del(b"b").unwrap();
    // The free list hands out b's slot first, then a's: a moves, b takes a's old slot.
    t.set(b"a", &[("id", Value::Int(1))]).unwrap();
    t.set(b"b", &[("id", Value::Int(2))]).unwrap();
    let (a_now, _) = t.get_versioned(b"a", &mut out, |_| false).unwrap().unwrap();
    assert_eq!(a_now.slot, b.slot);
    assert!(!t.is_current(a) && !t.is_current(b));
    assert!(
        !t.is_current(RowVersion { slot: 2, seq: 0 }),
        "a slot beyond the table"
    );
}

#[test]
fn incr_and_decr() {
    let t = users(8);
    // A missing row is created at 0.
    assert_eq!(t.incr(b"c", "id", Value::Int(5)).unwrap(), Value::Int(5));
    assert_eq!(
        t.get(b"c").unwrap(),
        Some(vec![Value::Int(5), Value::Float(0.0), s("")])
    );
    assert_eq!(t.incr(b"c", "id", Value::Int(-2)).unwrap(), Value::Int(3));
    assert_eq!(t.decr(b"c", "id", Value::Int(10)).unwrap(), Value::Int(-7));
    assert_eq!(t.decr(b"d", "id", Value::Int(1)).unwrap(), Value::Int(-1));
    // FLOAT columns take integer and float steps.
    assert_eq!(
        t.incr(b"c", "score", Value::Float(0.5)).unwrap(),
        Value::Float(0.5)
    );
    assert_eq!(
        t.incr(b"c", "score", Value::Int(2)).unwrap(),
        Value::Float(2.5)
    );
    assert_eq!(
        t.decr(b"c", "score", Value::Float(1.0)).unwrap(),
        Value::Float(1.5)
    );
    assert_eq!(
        err(t.incr(b"c", "name", Value::Int(1))),
        "column 'name' is STRING; incr and decr work only on INT and FLOAT columns"
    );
    assert_eq!(
        err(t.incr(b"c", "id", Value::Float(1.0))),
        "column 'id' is INT; it cannot be changed by a float (the step must be an integer)"
    );
    assert_eq!(
        err(t.incr(b"c", "score", s("1"))),
        "column 'score' is FLOAT; it cannot be changed by a string (the step must be an integer or a float)"
    );
    assert!(t.incr(b"c", "nope", Value::Int(1)).is_err());
    // Overflow is refused and changes nothing.
    t.set(b"c", &[("id", Value::Int(i64::MAX))]).unwrap();
    assert_eq!(
        err(t.incr(b"c", "id", Value::Int(1))),
        "incr of column 'id' by 1 would overflow a 64-bit integer (the value is 9223372036854775807); nothing was changed"
    );
    assert_eq!(t.get_field(b"c", "id").unwrap(), Some(Value::Int(i64::MAX)));
    // Refused on a missing row: the row is not created.
    let before = t.count().unwrap();
    assert!(t.decr(b"new", "id", Value::Int(i64::MIN)).is_err());
    assert!(!t.exists(b"new").unwrap());
    assert_eq!(t.count().unwrap(), before);
    assert_eq!(t.stats().unwrap().rows, before);
}

#[test]
fn a_full_table_refuses_new_keys_only() {
    let t = users(4);
    for i in 0..4 {
        t.set(format!("k{i}").as_bytes(), &[("id", Value::Int(i))])
            .unwrap();
    }
    assert_eq!(
        err(t.set(b"k4", &[("id", Value::Int(4))])),
        "table is full: 4 rows of capacity 4"
    );
    assert_eq!(
        err(t.incr(b"k4", "id", Value::Int(1))),
        "table is full: 4 rows of capacity 4"
    );
    assert!(!t.exists(b"k4").unwrap());
    // Existing rows can still be changed.
    t.set(b"k0", &[("name", s("still"))]).unwrap();
    assert_eq!(t.incr(b"k1", "id", Value::Int(1)).unwrap(), Value::Int(2));
    assert_eq!(t.stats().unwrap().full_refusals, 2);
    // A deleted row makes room, and the freed slot is reused.
    assert!(t.del(b"k2").unwrap());
    t.set(b"k4", &[("id", Value::Int(4))]).unwrap();
    assert_eq!(t.count().unwrap(), 4);
    assert_eq!(t.stats().unwrap().slots_touched, 4);
    assert!(t.set(b"k5", &[]).is_err());
}

#[test]
fn capacity_is_the_size_for_many_sizes() {
    let sizes = (1..=200).chain([255, 256, 257, 1000, 1023, 1024, 1025, 4095, 5000]);
    for size in sizes {
        for cp in [0.0, 0.2, 1.0] {
            let t = Table::new(size, cp).unwrap();
            t.add_column("v", ColumnType::Int).unwrap();
            t.create().unwrap();
            assert_eq!(t.capacity(), size);
            for i in 0..size {
                let key = format!("key-{i}");
                t.set(key.as_bytes(), &[("v", Value::Int(i as i64))])
                    .unwrap();
            }
            assert_eq!(t.count().unwrap(), size);
            let full = t.set(b"one-more", &[]).unwrap_err();
            assert_eq!(
                full,
                TableError::Full {
                    rows: size,
                    capacity: size
                }
            );
            for i in (0..size).step_by(7) {
                let key = format!("key-{i}");
                assert_eq!(
                    t.get_field(key.as_bytes(), "v").unwrap(),
                    Some(Value::Int(i as i64))
                );
            }
            let stats = t.stats().unwrap();
            assert_eq!(stats.used_buckets + stats.collisions, size);
        }
    }
}

#[test]
fn memory_formula() {
    let cols = vec![
        Column {
            name: "id".into(),
            ty: ColumnType::Int,
        },
        Column {
            name: "score".into(),
            ty: ColumnType::Float,
        },
        Column {
            name: "name".into(),
            ty: ColumnType::Str(255),
        },
    ];
    assert_eq!(row_bytes(&cols), 80 + 8 + 8 + 8 + 256);
    assert_eq!(row_bytes(&[]), 80);
    assert_eq!(ColumnType::Str(1).bytes(), 16);
    assert_eq!(ColumnType::Str(8).bytes(), 16);
    assert_eq!(ColumnType::Str(9).bytes(), 24);
    assert_eq!(bucket_count(1024, 0.2), Ok(2048));
    assert_eq!(bucket_count(1000, 0.0), Ok(1024));
    assert_eq!(bucket_count(1024, 0.0), Ok(1024));
    assert_eq!(bucket_count(1, 0.0), Ok(2)); // never fewer than 2
    assert_eq!(
        memory_size(1024, 0.2, &cols),
        Ok(64 + 12 * 2048 + 1024 * 360)
    );
    assert!(memory_size(0, 0.2, &cols).is_err());
    for (size, cp, schema) in [
        (1024, 0.2, cols.clone()),
        (1, 0.0, vec![]),
        (777, 1.0, cols[2..].to_vec()),
        (100_000, 0.5, cols.clone()),
    ] {
        let t = Table::new(size, cp).unwrap();
        for c in &schema {
            t.add_column(&c.name, c.ty).unwrap();
        }
        t.create().unwrap();
        let expected = memory_size(size, cp, &schema).unwrap();
        assert_eq!(t.memory_size().unwrap(), expected);
        let stats = t.stats().unwrap();
        assert_eq!(stats.memory_size, expected);
        assert_eq!(stats.row_bytes, row_bytes(&schema));
        assert_eq!(stats.buckets, bucket_count(size, cp).unwrap());
    }
}

#[test]
fn a_table_too_large_to_map_is_refused() {
    // About 450 PB: more than any x86-64 or arm64 address space (57 bits at most), so the
    // mapping fails even where memory is overcommitted.
    let t = Table::new(1 << 31, 1.0).unwrap();
    for i in 0..200 {
        t.add_column(&format!("blob{i}"), ColumnType::Str(STRING_MAX))
            .unwrap();
    }
    let e = err(t.create());
    assert!(
        e.starts_with("cannot map ") && e.contains("bytes of shared memory"),
        "{e}"
    );
    assert!(!t.is_created());
    assert_eq!(err(t.count()), TableError::NotCreated.to_string());
    // A size whose byte count does not even fit in a usize.
    let huge: Vec<Column> = (0..9000)
        .map(|i| Column {
            name: format!("c{i}"),
            ty: ColumnType::Str(STRING_MAX),
        })
        .collect();
    assert_eq!(
        err(memory_size(1 << 31, 0.0, &huge)),
        "the table is too large: the size of the rows overflows the address space"
    );
}

#[test]
fn iteration_sees_every_live_row_once() {
    let t = users(64);
    for i in 0..50 {
        t.set(format!("k{i}").as_bytes(), &[("id", Value::Int(i))])
            .unwrap();
    }
    for i in (0..50).step_by(3) {
        t.del(format!("k{i}").as_bytes()).unwrap();
    }
    let mut seen: Vec<i64> = t
        .iter()
        .unwrap()
        .map(|e| {
            let Value::Int(id) = e.values[0] else {
                panic!("id is not an int")
            };
            assert_eq!(e.key, format!("k{id}").into_bytes());
            id
        })
        .collect();
    seen.sort();
    let expected: Vec<i64> = (0..50).filter(|i| i % 3 != 0).collect();
    assert_eq!(seen, expected);
    assert_eq!(t.next_entry(10_000).unwrap(), None);
}

#[test]
fn deleting_while_iterating() {
    let t = users(128);
    for i in 0..100 {
        t.set(format!("k{i}").as_bytes(), &[("id", Value::Int(i))])
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut slot = 0;
    while let Some(entry) = t.next_entry(slot).unwrap() {
        let Value::Int(id) = entry.values[0] else {
            panic!("id is not an int")
        };
        seen.push(id);
        // Delete the row just seen, and one ahead of the cursor; insert a new row too.
        t.del(&entry.key).unwrap();
        t.del(format!("k{}", id + 2).as_bytes()).unwrap();
        t.set(
            format!("new{id}").as_bytes(),
            &[("id", Value::Int(1000 + id))],
        )
        .unwrap();
        slot = entry.slot + 1;
    }
    let originals: Vec<i64> = seen.iter().copied().filter(|&i| i < 1000).collect();
    // Rows were inserted in slot order; every row deleted ahead of the cursor was skipped.
    let mut expected = Vec::new();
    let mut deleted = std::collections::HashSet::new();
    for i in 0..100 {
        if !deleted.contains(&i) {
            expected.push(i);
            deleted.insert(i + 2);
        }
    }
    assert_eq!(originals, expected);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was seen twice");
}

#[test]
fn stats_describe_the_table() {
    let t = users(1000);
    for i in 0..600 {
        t.set(format!("user:{i}").as_bytes(), &[]).unwrap();
    }
    let st = t.stats().unwrap();
    assert_eq!(st.rows, 600);
    assert_eq!(st.capacity, 1000);
    assert_eq!(st.buckets, 2048);
    assert_eq!(st.row_bytes, 80 + 8 + 8 + 8 + 16);
    assert_eq!(st.used_buckets + st.collisions, 600);
    assert_eq!(st.slots_touched, 600);
    assert_eq!(st.full_refusals, 0);
    // A decent hash spreads similar keys: few collisions, short chains.
    assert!(st.longest_chain <= 6, "{st:?}");
    assert!(st.collisions < 150, "{st:?}");
}

#[test]
fn tables_are_independent_and_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Table>();
    let a = users(8);
    let b = users(8);
    a.set(b"k", &[("id", Value::Int(1))]).unwrap();
    assert!(!b.exists(b"k").unwrap());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    a.incr(b"k", "id", Value::Int(1)).unwrap();
                }
            });
        }
    });
    assert_eq!(a.get_field(b"k", "id").unwrap(), Some(Value::Int(2001)));
}
