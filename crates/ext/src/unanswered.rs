//! The HTTP requests (and handshakes) this process's PHP has not answered yet, by fd: what
//! `getClientInfo()`, `exist()` and `close()` of a request's fd reach. Swoole code logs
//! `getClientInfo($request->fd)['remote_ip']` and refuses a request with
//! `close($request->fd)`; the engine's registry knows WebSocket connections only.
//!
//! Kept on the PHP thread (only it makes and answers responses); an entry holds its response's
//! answer weakly and is taken out when the response goes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use surge_engine::http_stream::ChunkSender;
use surge_engine::Responder;

/// What is left to send of one response: its head until sent, then its body while streamed.
pub struct Answer {
    pub reply: RefCell<Option<Responder>>,
    pub stream: RefCell<Option<ChunkSender>>,
}

impl Answer {
    /// Owed to a client still there: `exist()` of a request whose client left is false, as
    /// for a WebSocket (a timer that streams to it stops on that).
    pub fn owed(&self) -> bool {
        match &*self.stream.borrow() {
            Some(stream) => stream.is_open(),
            None => self.reply.borrow().as_ref().is_some_and(|r| !r.is_closed()),
        }
    }
}

/// Who sent a request, for `getClientInfo()`.
#[derive(Clone, Copy)]
pub struct Client {
    pub remote: SocketAddr,
    pub server_port: u16,
    /// Unix seconds.
    pub connect_time: u64,
    /// Unix seconds the request was read at.
    pub last_time: u64,
    /// Swoole's `websocket_status` of the connection: 0 for a request, 1
    /// (`WEBSOCKET_STATUS_CONNECTION`) for a handshake.
    pub websocket_status: i64,
}

struct Entry {
    client: Client,
    answer: Weak<Answer>,
}

thread_local! {
    static UNANSWERED: RefCell<HashMap<u64, Entry>> = RefCell::new(HashMap::new());
}

/// Lists the request on `fd` until `forget` (a keep-alive connection's next request on the same
/// fd takes its place).
pub fn add(fd: u64, client: Client, answer: &Rc<Answer>) {
    let answer = Rc::downgrade(answer);
    UNANSWERED.with_borrow_mut(|all| all.insert(fd, Entry { client, answer }));
}

/// Takes the request on `fd` out, if `answer` is still the one listed there.
pub fn forget(fd: u64, answer: &Rc<Answer>) {
    UNANSWERED.with_borrow_mut(|all| {
        if all
            .get(&fd)
            .is_some_and(|e| e.answer.as_ptr() == Rc::as_ptr(answer))
        {
            all.remove(&fd);
        }
    });
}

/// The answer still owed on `fd`, with its client.
fn owed_on(fd: u64) -> Option<(Client, Rc<Answer>)> {
    UNANSWERED.with_borrow(|all| {
        let entry = all.get(&fd)?;
        let answer = entry.answer.upgrade().filter(|a| a.owed())?;
        Some((entry.client, answer))
    })
}

/// Who sent the request on `fd`, while its answer is owed.
pub fn client(fd: u64) -> Option<Client> {
    owed_on(fd).map(|(client, _)| client)
}

/// Closes the connection of the request on `fd` without (the rest of) an answer; false if no
/// answer is owed there.
pub fn close(fd: u64) -> bool {
    let Some((_, answer)) = owed_on(fd) else {
        return false;
    };
    if let Some(reply) = answer.reply.borrow_mut().take() {
        reply.close_connection();
    }
    // A body under way ends incomplete, as after a fatal error: the client sees it cut.
    if let Some(stream) = answer.stream.borrow_mut().take() {
        stream.cut_short();
    }
    true
}
