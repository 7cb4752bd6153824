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
    }
}
