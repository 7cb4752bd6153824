//! Members of one presence channel, keyed by `user_id`: a user with several connections (two
//! browser tabs) is one member, added with their first connection and removed with their last.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

struct User {
    info: Value,
    connections: usize,
}

#[derive(Default)]
pub struct Presence {
    /// Sorted, so `ids` and `hash` come out in a stable order.
    users: BTreeMap<String, User>,
    by_fd: HashMap<u64, String>,
}

impl Presence {
    /// Adds a connection of `user_id`; true if it is the user's first (a new member).
    pub fn join(&mut self, fd: u64, user_id: &str, info: Value) -> bool {
        if self.by_fd.contains_key(&fd) {
            return false;
        }
        self.by_fd.insert(fd, user_id.to_owned());
        match self.users.get_mut(user_id) {
            Some(user) => {
                user.connections += 1;
                false
            }
            None => {
                self.users.insert(
                    user_id.to_owned(),
                    User {
                        info,
                        connections: 1,
                    },
                );
                true
            }
        }
    }

    /// Removes a connection; the user's id if that was their last one (a member left).
    pub fn leave(&mut self, fd: u64) -> Option<String> {
        let user_id = self.by_fd.remove(&fd)?;
        let user = self.users.get_mut(&user_id)?;
        user.connections -= 1;
        if user.connections == 0 {
            self.users.remove(&user_id);
            Some(user_id)
        } else {
            None
        }
    }

    pub fn user_of(&self, fd: u64) -> Option<&str> {
        self.by_fd.get(&fd).map(String::as_str)
    }

    /// Whether `user_id` is a member (with some connection).
    pub fn has_user(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    pub fn count(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fd.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// `{"presence":{"count":..,"ids":[..],"hash":{id: user_info}}}` for subscription_succeeded.
    pub fn snapshot(&self) -> String {
        let hash: serde_json::Map<String, Value> = self
            .users
            .iter()
            .map(|(id, u)| (id.clone(), u.info.clone()))
            .collect();
        serde_json::json!({"presence": {"count": self.count(), "ids": self.ids().collect::<Vec<_>>(), "hash": hash}}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_one_member_across_connections() {
        let mut p = Presence::default();
        assert!(p.join(1, "7", serde_json::json!({"name": "Ann"})));
        assert!(!p.join(2, "7", serde_json::json!({"name": "Ann"})));
        assert!(
            !p.join(2, "7", Value::Null),
            "the same connection twice is no new member"
        );
        assert!(p.join(3, "8", Value::Null));
        assert_eq!(p.count(), 2);
        assert_eq!(
            p.snapshot(),
            r#"{"presence":{"count":2,"hash":{"7":{"name":"Ann"},"8":null},"ids":["7","8"]}}"#
        );
        assert_eq!(p.leave(1), None);
        assert_eq!(p.leave(2), Some("7".into()));
        assert_eq!(p.leave(2), None);
        assert_eq!(p.leave(3), Some("8".into()));
        assert!(p.is_empty());
    }
}
