//! One sweep over all connections every `heartbeat_check_interval`: ping the idle ones, drop
//! the dead ones. One task for the whole server costs far less than a timer per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::shared::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    if config.check_interval().is_zero() {
        return;
    }
    let idle_time = config.idle_time();
    let idle_limit = idle_time.as_millis() as u64;
    let ping_every = config.ping_every().as_millis() as u64;
    let check = config.check_interval().max(Duration::from_millis(10));
    // A connection is pinged at the last sweep before the one that would drop it, if not
    // before: with `heartbeat_idle_time` under `ping_interval` + `heartbeat_check_interval`
    // (8 s against 4 + 5) one that was just short of `ping_interval` at a sweep was dropped at
    // the next without a ping; so was one at twice the check interval (10 against 5 + 5) when
    // a sweep came a moment late, hence the half. (Sweeps as far apart as the idle time leave
    // no such sweep.)
    let check_ms = check.as_millis() as u64;
    let ping_at = match idle_limit > check_ms {
        true => ping_every.min((idle_limit - check_ms) / 2),
        false => ping_every,
    };
    if idle_limit > 0 && check_ms >= idle_limit {
        log::warn!(target: "surge", "heartbeat_check_interval ({check:?}) is not shorter than heartbeat_idle_time ({idle_time:?}): an idle client may be dropped before any ping (make the interval a fraction of the idle time)");
    }
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dropped = Vec::new();
    loop {
        tick.tick().await;
        let now = shared.now_ms();
        shared.registry.for_each(|conn| {
            if conn.held() {
                // Its reader waits for PHP, which is behind: the client may have sent a pong
                // since that is not read yet. It counts as active when the wait ends.
                return;
            }
            let idle = now.saturating_sub(conn.last_active_ms());
            if idle_limit > 0 && idle >= idle_limit {
                dropped.push(conn.fd);
                conn.kill();
            } else if ping_every > 0 && idle >= ping_at {
                conn.ping_if_due(now, ping_at);
            }
        });
        if !dropped.is_empty() {
            // One line a sweep: a line a client was a steady stream with mobile clients.
            dropped.sort_unstable();
            log::info!(target: "surge", "heartbeat: dropped {} that sent nothing for {idle_time:?}: {}", connections(dropped.len()), fd_list(&dropped));
            dropped.clear();
        }
    }
}

fn connections(n: usize) -> String {
    match n {
        1 => "1 connection".into(),
        n => format!("{n} connections"),
    }
}

/// "fd 4, 9 and 12"; past ten, the first ten and how many more.
fn fd_list(fds: &[u64]) -> String {
    const SHOWN: usize = 10;
    let shown: Vec<String> = fds.iter().take(SHOWN).map(u64::to_string).collect();
    let label = if fds.len() == 1 { "fd" } else { "fds" };
    match fds.len() {
        n if n > SHOWN => format!("{label} {} and {} more", shown.join(", "), n - SHOWN),
        1 => format!("{label} {}", shown[0]),
        _ => {
            let (last, first) = shown.split_last().expect("two or more");
            format!("{label} {} and {last}", first.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fd_list;

    #[test]
    fn the_dropped_fds_are_listed_ten_at_most() {
        assert_eq!(fd_list(&[4]), "fd 4");
        assert_eq!(fd_list(&[4, 9, 12]), "fds 4, 9 and 12");
        let many: Vec<u64> = (1..=25).collect();
        assert_eq!(
            fd_list(&many),
            "fds 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 15 more"
        );
    }
}
