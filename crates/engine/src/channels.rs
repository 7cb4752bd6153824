//! Named channels: which connections get a `publish`. Each member's connection is held here,
//! so publishing needs no registry lookups; a connection leaves all its channels as it ends,
//! and is no longer listed once it is closing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    /// Memberships ended so far, by `leave` or `leave_all`: what they freed may be handed back
    /// to the system (see `memory.rs`).
    left: AtomicU64,
}

impl Channels {
    /// Adds the connection to `name`; false if it was already a member, or is not open. The
    /// check is made under the lock that `leave_all` takes, so a connection whose task has
    /// ended (see `Conn::end`) is never added after it left every channel.
    pub fn join(&self, conn: &Arc<Conn>, name: &str) -> bool {
        self.join_counted(conn, name, |_| ())
    }

    /// As `join`, and when the connection is added, `then` is called with the channel's member
    /// count, under the lock: what it sends out (a Pusher webhook's `channel_occupied`) keeps
    /// the order of the joins and leaves.
    pub fn join_counted(&self, conn: &Arc<Conn>, name: &str, then: impl FnOnce(usize)) -> bool {
        let mut inner = self.inner.lock();
        if !conn.is_open() {
            return false;
        }
        let key: Arc<str> = match inner.members.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        };
        let members = inner.members.entry(key.clone()).or_default();
        let added = members.insert(conn.fd, conn.clone()).is_none();
        if added {
            then(members.len());
        }
        inner.of_fd.entry(conn.fd).or_default().insert(key);
        added
    }

    /// Removes `fd` from `name`; false if it was not a member. Empty channels disappear.
    pub fn leave(&self, fd: u64, name: &str) -> bool {
        self.leave_counted(fd, name, |_| ())
    }

    /// As `leave`, and when `fd` was a member, `then` is called with the members left, under
    /// the lock (see `join_counted`).
    pub fn leave_counted(&self, fd: u64, name: &str, then: impl FnOnce(usize)) -> bool {
        let mut inner = self.inner.lock();
        let Some(members) = inner.members.get_mut(name) else {
            return false;
        };
        if members.remove(&fd).is_none() {
            return false;
        }
        then(members.len());
        shrink_if_sparse(members);
        if members.is_empty() {
            inner.members.remove(name);
            shrink_if_sparse(&mut inner.members);
        }
        self.left.fetch_add(1, Relaxed);
        if let Some(names) = inner.of_fd.get_mut(&fd) {
            names.remove(name);
            shrink_if_sparse(names);
            if names.is_empty() {
                inner.of_fd.remove(&fd);
                shrink_if_sparse(&mut inner.of_fd);
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
        shrink_if_sparse(&mut inner.of_fd);
        let mut left = Vec::with_capacity(names.len());
        for name in names {
            if let Some(members) = inner.members.get_mut(&name) {
                members.remove(&fd);
                shrink_if_sparse(members);
                if members.is_empty() {
                    inner.members.remove(&name);
                }
            }
            left.push(name.to_string());
        }
        shrink_if_sparse(&mut inner.members);
        // Counted once the tables are emptied: a trim before that found little to give back.
        self.left.fetch_add(left.len() as u64, Relaxed);
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

    /// Memberships ended so far.
    pub(crate) fn left(&self) -> u64 {
        self.left.load(Relaxed)
    }

    // The three below leave out connections that are closing: a publish() no longer reaches
    // them, and `disconnect()` or the client's close frame had them listed until their close
    // handshake ended (up to 2 s), while `connections` and `isEstablished()` said they were gone.

    /// The open members of `name`, sorted.
    pub fn members(&self, name: &str) -> Vec<u64> {
        let mut fds: Vec<u64> = self
            .inner
            .lock()
            .members
            .get(name)
            .map(|m| m.values().filter(|c| c.is_open()).map(|c| c.fd).collect())
            .unwrap_or_default();
        fds.sort_unstable();
        fds
    }

    /// Channel names with their open member counts, sorted by name.
    pub fn list(&self) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = self
            .inner
            .lock()
            .members
            .iter()
            .map(|(k, m)| (k.to_string(), m.values().filter(|c| c.is_open()).count()))
            .filter(|(_, open)| *open > 0)
            .collect();
        all.sort();
        all
    }

    /// The channels `fd` is in, sorted; none while it closes.
    pub fn of(&self, fd: u64) -> Vec<String> {
        let inner = self.inner.lock();
        let Some(names) = inner.of_fd.get(&fd) else {
            return Vec::new();
        };
        let open = names
            .iter()
            .find_map(|name| inner.members.get(name)?.get(&fd))
            .is_some_and(|conn| conn.is_open());
        if !open {
            return Vec::new();
        }
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }
}

/// Gives a table's memory back once it is down to a quarter of its room (at twice what it
/// holds, so that shrinking costs O(1) a removal over time): a table never shrinks on its own,
/// and one connection that joined millions of channels, or a crowd gone, left the server holding
/// hundreds of MB for good.
fn shrink_if_sparse(table: &mut impl Shrink) {
    let (len, room) = table.len_and_room();
    if room > 64 && len < room / 4 {
        table.shrink_to(len * 2);
    }
}

/// What [`shrink_if_sparse`] needs of a `HashMap` or `HashSet`.
trait Shrink {
    fn len_and_room(&self) -> (usize, usize);
    fn shrink_to(&mut self, min: usize);
}

impl<K: Eq + Hash, V, S: BuildHasher> Shrink for HashMap<K, V, S> {
    fn len_and_room(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_to(&mut self, min: usize) {
        HashMap::shrink_to(self, min);
    }
}

impl<K: Eq + Hash, S: BuildHasher> Shrink for HashSet<K, S> {
    fn len_and_room(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_to(&mut self, min: usize) {
        HashSet::shrink_to(self, min);
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
    fn a_closing_connection_is_no_longer_listed() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        ch.join(&a, "room");
        ch.join(&b, "room");
        ch.join(&a, "alone");
        assert!(a.close(1000, "kicked"));
        assert_eq!(ch.members("room"), vec![2]);
        assert_eq!(ch.list(), vec![("room".into(), 1)]);
        assert_eq!(ch.of(1), Vec::<String>::new());
        assert_eq!(ch.of(2), vec!["room".to_string()]);
        // Still a member until its task ends: its close event names the channels it was in.
        assert_eq!(
            ch.leave_all(1),
            vec!["alone".to_string(), "room".to_string()]
        );
    }

    #[test]
    fn tables_give_their_room_back_once_channels_are_left() {
        let ch = Channels::default();
        let (a, b) = (conn(1), conn(2));
        for i in 0..10_000 {
            ch.join(&a, &format!("room-{i}"));
        }
        ch.join(&b, "room-1");
        ch.leave_all(1);
        for i in 0..5_000 {
            ch.join(&b, &format!("room-{i}"));
        }
        for i in 0..5_000 {
            ch.leave(2, &format!("room-{i}"));
        }
        let inner = ch.inner.lock();
        assert!(
            inner.members.capacity() <= 64,
            "{}",
            inner.members.capacity()
        );
        assert!(inner.of_fd.capacity() <= 64, "{}", inner.of_fd.capacity());
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
