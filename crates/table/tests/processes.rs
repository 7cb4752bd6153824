//! Several processes on one table, as PHP workers forked with pcntl_fork would use it.
//! Children report failure through their exit code (and a line on stderr written with a raw
//! write(2), which takes no lock the fork may have copied in a locked state).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use surge_table::{ColumnType, Table, Value};

/// Forking from a multi-threaded test binary is only safe when no other test is busy
/// inside the same process, so these tests run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Runs `body` in a forked child; the child exits 0 when it returns Ok.
fn spawn(body: impl FnOnce() -> Outcome) -> libc::pid_t {
    // SAFETY: the child only runs `body` and then _exit()s, never returning into the test
    // harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match std::panic::catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                let line = format!("child failed: {msg}\n");
                // SAFETY: writes a buffer we own to stderr.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                2
            }
            Err(_) => 3,
        };
        // SAFETY: ends the child without running the parent's destructors or atexit hooks.
        unsafe { libc::_exit(code) }
    }
    pid
}

/// The exit code of `pid`; with `block` false, None while it still runs.
fn exit_code(pid: libc::pid_t, block: bool) -> Option<i32> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    assert!(r >= 0, "waitpid failed");
    if r == 0 {
        return None;
    }
    assert!(
        libc::WIFEXITED(status),
        "child {pid} did not exit normally (status {status})"
    );
    Some(libc::WEXITSTATUS(status))
}

fn wait_all(pids: &[libc::pid_t]) {
    for &pid in pids {
        assert_eq!(exit_code(pid, true), Some(0), "child {pid} failed");
    }
}

fn table(size: usize, cp: f64, columns: &[(&str, ColumnType)]) -> Table {
    let t = Table::new(size, cp).unwrap();
    for (name, ty) in columns {
        t.add_column(name, *ty).unwrap();
    }
    t.create().unwrap();
    t
}

/// Forks `n` children running `body(i)`, held at a gate until all of them exist, so they
/// really run at the same time instead of one after the other in their first time slice.
fn spawn_together(n: i64, body: impl Fn(i64) -> Outcome) -> Vec<libc::pid_t> {
    let gate = table(1, 0.0, &[]);
    let pids = (0..n)
        .map(|i| {
            spawn(|| {
                while !gate.exists(b"open")? {
                    std::thread::yield_now();
                }
                body(i)
            })
        })
        .collect();
    gate.set(b"open", &[]).unwrap();
    pids
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

#[test]
fn concurrent_incr_from_many_processes_loses_nothing() {
    let _serial = serial();
    const CHILDREN: i64 = 4;
    const EACH: i64 = 20_000;
    let t = table(16, 0.2, &[("n", ColumnType::Int), ("f", ColumnType::Float)]);
    t.set(b"before-fork", &[("n", Value::Int(42))]).unwrap();
    let pids = spawn_together(CHILDREN, |c| {
        // Rows written before the fork are visible in the child.
        let seen = t.get_field(b"before-fork", "n")?;
        check(seen == Some(Value::Int(42)), || {
            format!("pre-fork row: {seen:?}")
        })?;
        for _ in 0..EACH {
            t.incr(b"counter", "n", Value::Int(1))?;
            t.incr(b"counter", "f", Value::Float(0.5))?;
        }
        Ok(t.set(format!("child-{c}").as_bytes(), &[("n", Value::Int(c))])?)
    });
    wait_all(&pids);
    assert_eq!(
        t.get(b"counter").unwrap(),
        Some(vec![
            Value::Int(CHILDREN * EACH),
            Value::Float((CHILDREN * EACH) as f64 * 0.5)
        ])
    );
    // Rows the children wrote are visible in the parent.
    for c in 0..CHILDREN {
        let key = format!("child-{c}");
        assert_eq!(
            t.get_field(key.as_bytes(), "n").unwrap(),
            Some(Value::Int(c))
        );
    }
    assert_eq!(t.count().unwrap(), 2 + CHILDREN as usize);
}

/// A row written as (a, a as float, a % 200 copies of one letter picked by a).
fn pattern(a: i64) -> [(&'static str, Value); 3] {
    let letter = b'a' + (a % 26) as u8;
    [
        ("a", Value::Int(a)),
        ("f", Value::Float(a as f64)),
        ("s", Value::Str(vec![letter; (a % 200) as usize])),
    ]
}

fn consistent(values: &[Value]) -> Outcome {
    let [Value::Int(a), Value::Float(f), Value::Str(s)] = values else {
        return Err(format!("bad shape: {values:?}").into());
    };
    let letter = b'a' + (a % 26) as u8;
    check(
        *f == *a as f64 && s.len() == (a % 200) as usize && s.iter().all(|&b| b == letter),
        || format!("torn row: a={a} f={f} s={:?}", String::from_utf8_lossy(s)),
    )
}

#[test]
fn readers_never_see_a_torn_row() {
    let _serial = serial();
    let t = table(
        64,
        0.2,
        &[
            ("a", ColumnType::Int),
            ("f", ColumnType::Float),
            ("s", ColumnType::Str(200)),
        ],
    );
    // Two writers race on the same row (and delete and re-insert it now and then, which
    // moves it between slots), plus churn on neighbouring keys.
    let mut writers = spawn_together(2, |w| {
        let start = Instant::now();
        let mut i = 0i64;
        while start.elapsed() < Duration::from_millis(400) {
            t.set(b"row", &pattern(w * 1_000_000_000 + i))?;
            if i % 50 == 0 {
                t.del(b"row")?;
            }
            let other = format!("w{w}-{}", i % 20);
            t.set(other.as_bytes(), &pattern(i))?;
            if i % 3 == 0 {
                t.del(other.as_bytes())?;
            }
            i += 1;
        }
        Ok(())
    });
    let (mut reads, mut versions, mut scans) = (0u64, HashSet::new(), 0u64);
    let mut out = Vec::new();
    while !writers.is_empty() {
        for _ in 0..200 {
            if t.get_into(b"row", &mut out).unwrap() {
                consistent(&out).unwrap();
                if let Value::Int(a) = out[0] {
                    versions.insert(a);
                }
                reads += 1;
            }
        }
        // Iteration too: every row it yields is whole.
        for entry in t.iter().unwrap() {
            consistent(&entry.values).unwrap();
        }
        scans += 1;
        writers.retain(|&pid| match exit_code(pid, false) {
            None => true,
            Some(code) => {
                assert_eq!(code, 0, "writer {pid} failed");
                false
            }
        });
    }
    // How often reads and writes truly overlap depends on free cores: on a busy machine the
    // three processes may share one core and take turns. So this only checks that reads
    // were interleaved with writes; breaking the seqlock check fails the test all the same.
    assert!(reads > 1000, "only {reads} reads");
    assert!(versions.len() > 1, "the reader never saw the row change");
    assert!(scans > 10);
}

/// A small xorshift generator, so each child takes its own deterministic path.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn inserts_and_deletes_from_many_processes_keep_the_table_whole() {
    let _serial = serial();
    const CHILDREN: i64 = 4;
    const PRIVATE: i64 = 40;
    const SHARED: u64 = 4;
    const ROUNDS: i64 = 20_000;
    // Few shared keys, so that processes often insert, delete and create-by-incr the same
    // key at once. 4 shared + 4 * 40 private keys fit in 256 rows; with 256 buckets many
    // chains hold several rows, so processes also change the same chains.
    let t = table(
        256,
        0.0,
        &[
            ("owner", ColumnType::Int),
            ("val", ColumnType::Int),
            ("hits", ColumnType::Int),
        ],
    );
    let pids = spawn_together(CHILDREN, |c| {
        let mut rng = Rng(0x9e37_79b9 + c as u64 * 7919);
        for round in 0..ROUNDS {
            // Shared keys: anyone may set, delete or count them at any time; a row read
            // back must still be one writer's whole write.
            let key = format!("shared-{}", rng.below(SHARED));
            let key = key.as_bytes();
            match rng.below(4) {
                0 => {
                    let val = c * 1_000_000 + round;
                    t.set(key, &[("owner", Value::Int(c)), ("val", Value::Int(val))])?;
                }
                1 => {
                    t.del(key)?;
                }
                2 => {
                    t.incr(key, "hits", Value::Int(1))?;
                }
                _ => {
                    if let Some(row) = t.get(key)? {
                        let whole = matches!((&row[0], &row[1]),
                            (Value::Int(owner), Value::Int(val)) if *val == 0 || val / 1_000_000 == *owner);
                        check(whole, || format!("mixed row: {row:?}"))?;
                    }
                }
            }
            // Private keys: only this child touches them, so every answer is exact.
            let j = round % PRIVATE;
            let key = format!("c{c}-{j}");
            if round / PRIVATE % 2 == 0 {
                t.set(
                    key.as_bytes(),
                    &[("owner", Value::Int(c)), ("val", Value::Int(j))],
                )?;
                let got = t.get_field(key.as_bytes(), "val")?;
                check(got == Some(Value::Int(j)), || {
                    format!("{key} reads {got:?}")
                })?;
            } else if j % 2 == 1 {
                check(t.del(key.as_bytes())?, || format!("{key} was missing"))?;
                check(!t.exists(key.as_bytes())?, || format!("{key} survived"))?;
            }
        }
        Ok(())
    });
    wait_all(&pids);
    let mut keys = HashSet::new();
    let mut rows = 0;
    for entry in t.iter().unwrap() {
        assert!(
            keys.insert(entry.key.clone()),
            "key seen twice: {:?}",
            entry.key
        );
        assert_eq!(t.get(&entry.key).unwrap(), Some(entry.values));
        rows += 1;
    }
    // Private keys are all set in even blocks of 40 rounds; odd blocks delete the odd ones.
    let last_block_deletes = (ROUNDS - 1) / PRIVATE % 2 == 1;
    for c in 0..CHILDREN {
        for j in 0..PRIVATE {
            let key = format!("c{c}-{j}");
            let expected = (!last_block_deletes || j % 2 == 0).then_some(Value::Int(j));
            assert_eq!(
                t.get_field(key.as_bytes(), "val").unwrap(),
                expected,
                "{key}"
            );
        }
    }
    assert_eq!(t.count().unwrap(), rows);
    let stats = t.stats().unwrap();
    assert_eq!(stats.rows, rows);
    assert_eq!(
        stats.used_buckets + stats.collisions,
        rows,
        "chains do not hold every row once"
    );
    assert!(stats.collisions > 0, "no chain was shared: {stats:?}");
}

#[test]
fn racing_creations_of_one_key_make_one_row() {
    let _serial = serial();
    const CHILDREN: i64 = 4;
    const KEYS: usize = 20_000;
    let t = table(KEYS, 0.2, &[("hits", ColumnType::Int)]);
    // Every child walks the same fresh keys in the same order, so children often reach a
    // missing key together and both try to create it.
    let pids = spawn_together(CHILDREN, |_| {
        for k in 0..KEYS {
            t.incr(format!("fresh-{k}").as_bytes(), "hits", Value::Int(1))?;
        }
        Ok(())
    });
    wait_all(&pids);
    assert_eq!(t.count().unwrap(), KEYS);
    for k in 0..KEYS {
        let key = format!("fresh-{k}");
        assert_eq!(
            t.get_field(key.as_bytes(), "hits").unwrap(),
            Some(Value::Int(CHILDREN)),
            "{key}"
        );
    }
}

#[test]
fn lookups_stay_exact_while_rows_ahead_in_the_chain_move() {
    let _serial = serial();
    // A key that never changes, behind other keys of its chain that are deleted over and
    // over, their slots taken at once by keys of other chains. A lookup standing on such a
    // slot when it moves is led into the wrong chain; it must notice and never say the
    // stable key is missing.
    let t = table(16, 0.0, &[("v", ColumnType::Int)]);
    t.set(b"stable", &[]).unwrap();
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for i in 0.. {
        let key = format!("cand-{i}");
        t.set(key.as_bytes(), &[]).unwrap();
        let shares = t.stats().unwrap().collisions == 1;
        t.del(key.as_bytes()).unwrap();
        match shares {
            true if same.len() < 3 => same.push(key),
            false if other.len() < 3 => other.push(key),
            _ => {}
        }
        if same.len() == 3 && other.len() == 3 {
            break;
        }
    }
    // Inserts go to the head of a chain, so these stand in front of "stable".
    for key in &same {
        t.set(key.as_bytes(), &[]).unwrap();
    }
    let churn = spawn_together(1, |_| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            for (s, o) in same.iter().zip(&other) {
                // The freed slot is the top of the free list, so the other chain's key
                // takes it right away.
                t.del(s.as_bytes())?;
                t.set(o.as_bytes(), &[])?;
                t.del(o.as_bytes())?;
                t.set(s.as_bytes(), &[])?;
            }
        }
        Ok(())
    });
    let mut lookups = 0u64;
    while exit_code(churn[0], false).is_none() {
        for _ in 0..1000 {
            assert!(t.exists(b"stable").unwrap(), "the stable key went missing");
            lookups += 1;
        }
    }
    assert!(lookups > 1000);
}
