//! CPU time of a process, read from /proc (Linux only).

/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 on every architecture
/// it exports to user space (`getconf CLK_TCK`).
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU seconds used so far by `pid` (`self` for this process), all threads.
pub fn cpu_secs(pid: &str) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("{path}: field {}", i + 3))
    };
    Ok((tick(11)? + tick(12)?) / TICKS_PER_SEC)
}

/// Seconds the threads of `pid` have spent on a CPU, and runnable but waiting in a run queue for
/// one, summed over the threads alive now (`/proc/PID/task/*/schedstat`, in nanoseconds). On two
/// shared cores the wait says how much of the machine a process was denied while it had work.
pub fn sched_secs(pid: &str) -> Result<(f64, f64), String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let (mut on_cpu, mut waiting) = (0u64, 0u64);
    for task in tasks.flatten() {
        // A thread that ended since read_dir has no file left: it is simply not counted.
        let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut fields = line.split_whitespace().map(|f| f.parse::<u64>());
        match (fields.next(), fields.next()) {
            (Some(Ok(run)), Some(Ok(wait))) => {
                on_cpu += run;
                waiting += wait;
            }
            _ => return Err(format!("{dir}: unreadable schedstat '{}'", line.trim())),
        }
    }
    Ok((on_cpu as f64 / 1e9, waiting as f64 / 1e9))
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        assert!(super::cpu_secs("self").unwrap() >= 0.0);
        assert!(super::cpu_secs("0").is_err());
        let (on_cpu, waiting) = super::sched_secs("self").unwrap();
        assert!(on_cpu > 0.0 && waiting >= 0.0);
        assert!(super::sched_secs("0").is_err());
    }
}
