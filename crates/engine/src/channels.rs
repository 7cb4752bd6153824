//! Named channels: which connections get a `publish`. Each member's connection is held here,
//! so publishing needs no registry lookups; a closing connection leaves all its channels.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::registry::{Conn, FdMap, Outgoing};

#[derive(Default)]
struct Inner {
    members: HashMap<Arc<str>, FdMap<Arc<Conn>>>,
    of_fd: FdMap<HashSet<Arc<str>>>,
}

#[derive(Default)]
pub struct Channels {
    inner: Mutex<Inner>,
}

impl Channels {
    /// Adds the connection to `name`; false if it was already a member, or is not open. The
    /// check is made under the lock that `leave_all` takes, so a connection whose task has
    /// ended (see `Conn::end`) is never added after it left every channel.
    pub fn join(&self, conn: &Arc<Conn>, name: &str) -> bool {
        let mut inner = self.inner.lock();
        if !conn.is_open() {
            return false;
        }
        let key: Arc<str> = match inner.members.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        };
        let added = inner
            .members
            .entry(key.clone())
            .or_default()
            .insert(conn.fd, conn.clone())
            .is_none();
        inner.of_fd.entry(conn.fd).or_default().insert(key);
        added
    }

    /// Removes `fd` from `name`; false if it was not a member. Empty channels disappear.
    pub fn leave(&self, fd: u64, name: &str) -> bool {
        let mut inner = self.inner.lock();
        let Some(members) = inner.members.get_mut(name) else {
            return false;
        };
        if members.remove(&fd).is_none() {
            return false;
        }
        if members.is_empty() {
            inner.members.remove(name);
        }
        if let Some(names) = inner.of_fd.get_mut(&fd) {
            names.remove(name);
            if names.is_empty() {
                inner.of_fd.remove(&fd);
            }
        }
        true
    }

    /// Removes `fd` from every channel (when it closes).
    /// Returns the channels it was in, sorted.
    pub fn leave_all(&self, fd: u64) -> Vec<String> {
        let mut inner = self.inner.lock();
        let Some(names) = inner.of_fd.remove(&fd) else {
            return Vec::new();
        };
        let mut left = Vec::with_capacity(names.len());
        for name in names {
            if let Some(members) = inner.members.get_mut(&name) {
                members.remove(&fd);
                if members.is_empty() {
                    inner.members.remove(&name);
                }
            }
            left.push(name.to_string());
        }
        left.sort();
        left
    }

    /// Queues one message for the members of `name` but `except`; how many took it. The members
    /// are taken under the lock and pushed to outside it, so that the pushes to a large channel
    /// (and the wake-ups they cause) do not hold up joins, leaves and closes on the I/O threads.
    /// `item` is made only if there is someone to push to.
    pub fn push(
        &self,
        name: &str,
        except: &[u64],
        limit: usize,
        item: impl FnOnce() -> Outgoing,
    ) -> usize {
        let recipients: Vec<Arc<Conn>> = match self.inner.lock().members.get(name) {
            Some(members) => members
                .values()
                .filter(|c| !except.contains(&c.fd))
                .cloned()
                .collect(),
            None => return 0,
        };
        if recipients.is_empty() {
            return 0;
        }
        let item = item();
        recipients
            .iter()
            .filter(|c| c.push(item.clone(), limit).is_ok())
            .count()
    }

    pub fn members(&self, name: &str) -> Vec<u64> {
        let mut fds: Vec<u64> = self
            .inner
            .lock()
            .members
            .get(name)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        fds.sort_unstable();
        fds
    }

    /// Channel names with their member counts, sorted by name.
    pub fn list(&self) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = self
            .inner
            .lock()
            .members
            .iter()
            .map(|(k, m)| (k.to_string(), m.len()))
            .collect();
        all.sort();
        all
    }

    pub fn of(&self, fd: u64) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .lock()
            .of_fd
            .get(&fd)
            .map(|s| s.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::registry::Control;

    fn conn(fd: u64) -> Arc<Conn> {
        Arc::new(Conn::new(fd, "127.0.0.1:1".parse().unwrap(), 0, 0))
    }

    #[test]
    fn a_connection_whose_task_ended_is_not_added() {
        let ch = Channels::default();
        let a = conn(1);
        a.end();
        assert!(!ch.join(&a, "news"));
        assert_eq!(ch.list(), vec![]);
        assert_eq!(ch.of(1), Vec::<String>::new());
    }

    #[test]
    fn join_leave_and_lists() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        assert!(ch.join(&a, "news"));
        assert!(!ch.join(&a, "news"));
        ch.join(&b, "news");
        ch.join(&a, "sport");
        assert_eq!(ch.members("news"), vec![1, 2]);
        assert_eq!(ch.list(), vec![("news".into(), 2), ("sport".into(), 1)]);
        assert_eq!(ch.of(1), vec!["news".to_string(), "sport".to_string()]);
        let text = || Outgoing::Control(Control::Ping(Bytes::from_static(b"hi")));
        assert_eq!(ch.push("news", &[1], 1 << 20, text), 1);
        assert!(a.nothing_queued() && !b.nothing_queued());
        assert_eq!(ch.push("sport", &[1], 1 << 20, text), 0);
        assert_eq!(ch.push("nobody", &[], 1 << 20, || unreachable!()), 0);
        assert!(ch.leave(2, "news"));
        assert!(!ch.leave(2, "news"));
        ch.leave_all(1);
        assert!(ch.list().is_empty());
        assert!(ch.of(1).is_empty());
    }
}
