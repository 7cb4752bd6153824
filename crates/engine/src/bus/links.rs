//! One lane of a process's links to the others on the bus (see [`super::Lane`]): a Unix
//! stream to each, made when first needed and made again once if it fails (its worker may have
//! been restarted), written and read by the PHP thread (and the push batches' writer, which
//! takes the same lock).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::unix_send;
use crate::workers::socket_path;

/// A peer that does not answer within this is taken as gone (it answers from memory only).
#[cfg(not(test))]
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);
#[cfg(test)]
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);
/// How long the rest of a message whose start is written waits for room (see `send_all`).
#[cfg(not(test))]
const COMMITTED_WAIT: Duration = Duration::from_secs(60);
#[cfg(test)]
const COMMITTED_WAIT: Duration = Duration::from_secs(3);

pub(super) type Streams = Vec<Option<UnixStream>>;

pub(super) struct Links {
    dir: PathBuf,
    /// A question asked on every new link before anything is sent (see `connect`).
    greeting: Vec<u8>,
    streams: Mutex<Streams>,
    /// Whether each peer's stream is made, read without the lock (see `Peers::push`).
    linked: Vec<AtomicBool>,
}

impl Links {
    /// Links to `processes` processes, whose sockets are in `dir`; `greeting` is a question
    /// (length first) any of them answers.
    pub(super) fn new(dir: &Path, processes: usize, greeting: Vec<u8>) -> Self {
        Links {
            dir: dir.to_owned(),
            greeting,
            streams: Mutex::new((0..processes).map(|_| None).collect()),
            linked: (0..processes).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock()
    }

    /// Whether the stream to `peer` is made (false for no such peer).
    pub(super) fn linked(&self, peer: usize) -> bool {
        self.linked.get(peer).is_some_and(|l| l.load(Relaxed))
    }

    fn set(&self, streams: &mut Streams, peer: usize, stream: Option<UnixStream>) {
        self.linked[peer].store(stream.is_some(), Relaxed);
        streams[peer] = stream;
    }

    /// Writes `message` on the link to `peer`; false if not sent. A link found closed before
    /// the message is written whole is made again once (its worker may have been restarted).
    /// A link without room (the peer's PHP is busy: its link waits once 1,024 messages for it
    /// are held) is kept as it is and the message not sent: on a new link it would overtake
    /// those waiting. One that fails after the message is written whole is not used again: the
    /// peer may be slow, not gone, and would carry the request out twice.
    pub(super) fn send_on(&self, streams: &mut Streams, peer: usize, message: &[u8]) -> bool {
        if peer >= streams.len() {
            return false;
        }
        for _attempt in 0..2 {
            if streams[peer].is_none() {
                match self.connect(peer) {
                    Some(link) => self.set(streams, peer, Some(link)),
                    None => return false,
                }
            }
            let link = streams[peer].as_ref().expect("made above");
            let Err((error, sent)) = send_all(link, message) else {
                return true;
            };
            log::debug!(target: "surge", "bus link to worker {peer}: {error} ({sent:?} sent)");
            let gone = matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::NotConnected
            );
            match (sent, gone) {
                // Busy: the link stays as it was, this message is not sent.
                (Sent::Nothing, false) => return false,
                // Its worker may have been restarted: a new link, once.
                (Sent::Nothing | Sent::Part, true) => self.set(streams, peer, None),
                (Sent::Part, false) => {
                    log::warn!(target: "surge", "bus: a message to worker {peer} was cut short: its link had no room for {COMMITTED_WAIT:?}");
                    self.set(streams, peer, None);
                    return false;
                }
            }
        }
        false
    }

    /// Reads `peer`'s answer to the message sent on its link. A link that fails then is not
    /// used again: the peer may be slow, not gone, and would carry the request out twice.
    pub(super) fn read_answer(&self, streams: &mut Streams, peer: usize) -> Option<Vec<u8>> {
        let link = streams[peer].as_mut()?;
        match read_message(link) {
            Ok(answer) => Some(answer),
            Err(error) => {
                log::debug!(target: "surge", "bus link to worker {peer}: {error} (no answer)");
                self.set(streams, peer, None);
                None
            }
        }
    }

    fn connect(&self, peer: usize) -> Option<UnixStream> {
        let path = socket_path(&self.dir, peer);
        let link = connect_within(&path, TIMEOUT)
            .map_err(|e| log::debug!(target: "surge", "bus: cannot reach worker {peer}: {e}"))
            .ok()?;
        link.set_read_timeout(Some(TIMEOUT)).ok()?;
        // Answered once the peer's bus thread has taken the link and reads it. Until then what
        // is written waits in the socket: the first push to a worker reached its client after
        // a push that worker made itself on a request that came on this one's HTTP response
        // (sent after the push), a window several times that of a link already read.
        let mut link = link;
        if let Err(e) = send_all(&link, &self.greeting).map_err(|(e, _)| e) {
            log::debug!(target: "surge", "bus: worker {peer} took no greeting: {e}");
            return None;
        }
        read_message(&mut link)
            .map_err(|e| log::debug!(target: "surge", "bus: worker {peer} did not answer: {e}"))
            .ok()?;
        Some(link)
    }
}

/// One message (its length first) read from `link`.
fn read_message(link: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    link.read_exact(&mut len)?;
    let mut message = vec![0; u32::from_be_bytes(len) as usize];
    link.read_exact(&mut message)?;
    Ok(message)
}

/// `UnixStream::connect`, giving up after `wait`: a worker that takes no link (out of file
/// descriptors, its accept loop waiting) lets its listen backlog fill, and a blocking connect
/// would then hold the asking PHP thread for ever. On a Unix socket a full backlog is EAGAIN
/// (there is no connect in progress to wait on), so the connect is tried again until then.
pub(super) fn connect_within(path: &Path, wait: Duration) -> std::io::Result<UnixStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let address = SockAddr::unix(path)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match socket.connect(&address) {
            Ok(()) => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    socket.set_nonblocking(false)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(socket)))
}

/// How much of a message a failed send had written.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Sent {
    Nothing,
    Part,
}

/// Writes all of `message`. Before its first byte it waits up to [`TIMEOUT`] for room: a peer
/// whose PHP is busy reads its link only as PHP takes events, and the message is then not sent
/// and the link left whole, so that the next one keeps its place behind those sent before. A
/// message up to one of the kernel's buffers (32 KiB) goes in one piece or not at all; once
/// part of a larger one is written, the rest has up to [`COMMITTED_WAIT`] in all.
fn send_all(link: &UnixStream, message: &[u8]) -> Result<(), (std::io::Error, Sent)> {
    use std::os::fd::AsRawFd;
    let fd = link.as_raw_fd();
    let mut rest = message;
    let mut deadline = std::time::Instant::now() + TIMEOUT;
    while !rest.is_empty() {
        let sent = match rest.len() == message.len() {
            true => Sent::Nothing,
            false => Sent::Part,
        };
        match unix_send::send_now(fd, rest) {
            Ok(0) => return Err((std::io::ErrorKind::WriteZero.into(), sent)),
            Ok(n) => {
                if rest.len() == message.len() {
                    deadline = std::time::Instant::now() + COMMITTED_WAIT;
                }
                rest = &rest[n..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !unix_send::wait_for_room(fd, deadline) {
                    return Err((std::io::ErrorKind::TimedOut.into(), sent));
                }
            }
            Err(e) => return Err((e, sent)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    const GREETING: &[u8] = b"\0\0\0\x02hi";

    /// As a peer's bus thread takes a link: the greeting answered, the link handed back
    /// unread after that.
    fn take_link(peer: &UnixListener) -> std::thread::JoinHandle<UnixStream> {
        let peer = peer.try_clone().unwrap();
        std::thread::spawn(move || {
            let (mut link, _) = peer.accept().unwrap();
            assert_eq!(read_message(&mut link).unwrap(), &GREETING[4..]);
            std::io::Write::write_all(&mut link, b"\0\0\0\x01\0").unwrap();
            link
        })
    }

    /// Links from worker 0 of 2, and worker 1's listening socket (the directory is kept
    /// while the test runs).
    fn links_to_a_peer() -> (tempfile::TempDir, UnixListener, Links) {
        let dir = tempfile::tempdir().unwrap();
        let peer = UnixListener::bind(socket_path(dir.path(), 1)).unwrap();
        let links = Links::new(dir.path(), 2, GREETING.to_vec());
        (dir, peer, links)
    }

    #[test]
    fn a_new_link_is_used_once_the_peer_answered_its_greeting() {
        let (_dir, peer, links) = links_to_a_peer();
        let mut streams = links.lock();
        // Taken but never answered: not linked (after TIMEOUT), nothing sent.
        let silent = std::thread::spawn({
            let peer = peer.try_clone().unwrap();
            move || peer.accept().unwrap().0
        });
        assert!(!links.send_on(&mut streams, 1, b"lost"));
        assert!(!links.linked(1));
        let mut silent = silent.join().unwrap();
        let mut got = Vec::new();
        silent.read_to_end(&mut got).unwrap();
        assert_eq!(got, GREETING, "only the greeting was sent");

        let taken = take_link(&peer);
        assert!(links.send_on(&mut streams, 1, b"next"));
        let mut link = taken.join().unwrap();
        let mut next = [0u8; 4];
        link.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"next");
    }

    #[test]
    fn a_message_cut_short_drops_its_link_and_the_next_goes_on_a_new_one() {
        // A peer that takes links but reads nothing after the greeting until told to.
        let (_dir, peer, links) = links_to_a_peer();
        let mut streams = links.lock();
        let large = vec![7u8; 8 << 20];
        let taken = take_link(&peer);
        let started = std::time::Instant::now();
        assert!(!links.send_on(&mut streams, 1, &large), "not sent whole");
        assert!(started.elapsed() >= COMMITTED_WAIT);
        assert!(
            !links.linked(1),
            "the link it was cut short on is not used again"
        );

        // The peer sees part of it, then the end of that link: never a whole message.
        let mut first = taken.join().unwrap();
        let mut got = Vec::new();
        first.read_to_end(&mut got).unwrap();
        assert!(!got.is_empty() && got.len() < large.len(), "{}", got.len());

        let taken = take_link(&peer);
        assert!(links.send_on(&mut streams, 1, b"next"), "on a new link");
        assert!(links.linked(1));
        let mut second = taken.join().unwrap();
        let mut next = [0u8; 4];
        second.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"next");
    }
}
