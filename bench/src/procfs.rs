//! CPU time and memory of a server, read from /proc (Linux only). A server is its process and
//! that process's children: Surge with `worker_num` > 1 serves from worker processes forked by
//! the one started.

/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 on every architecture
/// it exports to user space (`getconf CLK_TCK`).
const TICKS_PER_SEC: f64 = 100.0;

/// `pid` and its children (as /proc names; `self` stays `self`).
fn family(pid: &str) -> Vec<String> {
    let parent = match pid {
        "self" => std::process::id().to_string(),
        other => other.to_owned(),
    };
    let mut all = vec![pid.to_owned()];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name: state, then the parent's pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1));
        if ppid == Some(parent.as_str()) {
            all.push(name);
        }
    }
    all
}

/// User plus system CPU seconds used so far by `pid` (`self` for this process) and its
/// children, all threads.
pub fn cpu_secs(pid: &str) -> Result<f64, String> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// The user-space and the kernel's CPU seconds of [`cpu_secs`], apart.
pub fn cpu_split(pid: &str) -> Result<(f64, f64), String> {
    let (mut user, mut system) = process_cpu_secs(pid)?;
    for child in family(pid).iter().skip(1) {
        // A child that ended since it was listed is simply not counted.
        let (u, s) = process_cpu_secs(child).unwrap_or((0.0, 0.0));
        user += u;
        system += s;
    }
    Ok((user, system))
}

fn process_cpu_secs(pid: &str) -> Result<(f64, f64), String> {
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
    Ok((tick(11)? / TICKS_PER_SEC, tick(12)? / TICKS_PER_SEC))
}

/// Seconds the threads of `pid` and its children have spent on a CPU, and runnable but waiting
/// in a run queue for one, summed over the threads alive now (`/proc/PID/task/*/schedstat`, in
/// nanoseconds). On two shared cores the wait says how much of the machine a server was denied
/// while it had work.
pub fn sched_secs(pid: &str) -> Result<(f64, f64), String> {
    let (mut on_cpu, mut waiting) = process_sched_secs(pid)?;
    for child in family(pid).iter().skip(1) {
        let (run, wait) = process_sched_secs(child).unwrap_or((0.0, 0.0));
        on_cpu += run;
        waiting += wait;
    }
    Ok((on_cpu, waiting))
}

fn process_sched_secs(pid: &str) -> Result<(f64, f64), String> {
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

/// VmRSS of `pid` and its children in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let own = process_rss_kib(&pid.to_string())?;
    let children = family(&pid.to_string())
        .iter()
        .skip(1)
        .filter_map(|c| process_rss_kib(c))
        .sum::<u64>();
    Some(own + children)
}

fn process_rss_kib(pid: &str) -> Option<u64> {
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

    #[test]
    fn counts_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let family = super::family("self");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(family[0], "self");
        assert!(family.contains(&child.id().to_string()), "{family:?}");
    }
}
