//! What PHP asks of this process's own connections: the engine calls these for its fds, and the
//! bus (`bus.rs`) calls them when another worker asks about fds that live here.

use crate::engine::ClientInfo;
use crate::registry::{Outgoing, PushError};
use crate::shared::Shared;
use crate::stats::StatsSnapshot;

pub(crate) fn push(shared: &Shared, fd: u64, item: Outgoing) -> Result<(), PushError> {
    let conn = shared.registry.get(fd).ok_or(PushError::Closed)?;
    conn.push(item, shared.config.socket_buffer_size)
}

pub(crate) fn broadcast(shared: &Shared, item: &Outgoing, except: &[u64]) -> usize {
    let limit = shared.config.socket_buffer_size;
    let mut queued = 0;
    shared.registry.for_each(|conn| {
        if !except.contains(&conn.fd)
            && !conn.speaks_pusher()
            && conn.push(item.clone(), limit).is_ok()
        {
            queued += 1;
        }
    });
    queued
}

pub(crate) fn publish(shared: &Shared, channel: &str, item: &Outgoing, except: &[u64]) -> usize {
    let limit = shared.config.socket_buffer_size;
    shared
        .channels
        .push(channel, except, limit, || item.clone())
}

pub(crate) fn join(shared: &Shared, fd: u64, channel: &str) -> bool {
    shared
        .registry
        .get(fd)
        .is_some_and(|conn| shared.channels.join(&conn, channel))
}

pub(crate) fn leave(shared: &Shared, fd: u64, channel: &str) -> bool {
    shared.channels.leave(fd, channel)
}

pub(crate) fn disconnect(shared: &Shared, fd: u64, code: u16, reason: &str) -> bool {
    shared
        .registry
        .get(fd)
        .is_some_and(|c| c.close(code, reason))
}

pub(crate) fn exists(shared: &Shared, fd: u64) -> bool {
    shared.registry.get(fd).is_some()
}

pub(crate) fn is_established(shared: &Shared, fd: u64) -> bool {
    shared.registry.get(fd).is_some_and(|c| c.is_open())
}

pub(crate) fn client_info(shared: &Shared, port: u16, fd: u64) -> Option<ClientInfo> {
    let conn = shared.registry.get(fd)?;
    Some(ClientInfo {
        remote: conn.remote,
        server_port: port,
        connect_time: conn.connect_time,
        last_time: shared.to_unix_secs(conn.last_active_ms()),
        established: conn.is_open(),
    })
}

pub(crate) fn socket_id(shared: &Shared, fd: u64) -> Option<String> {
    shared.registry.get(fd).map(|_| shared.socket_id(fd))
}

pub(crate) fn stats(shared: &Shared) -> StatsSnapshot {
    shared.stats.snapshot(
        shared.registry.len() as u64,
        crate::stats::server_start(shared.start_unix_ms / 1000),
    )
}
