//! The local bus between worker processes. Each worker listens on a Unix socket in the pool's
//! private directory; another worker that pushes to, closes or asks about one of its fds (or
//! broadcasts, publishes, lists connections or channels) sends it a request there. Requests
//! are answered on a thread of the worker's own, never by its PHP thread: two PHP threads that
//! asked each other at the same moment would otherwise wait for each other forever.
//!
//! A message is a 4-byte big-endian length, then its bytes; a request starts with its op.
//! Pushes and task results get no answer (they are sent in order on the link, and a push to a
//! connection that closed meanwhile is dropped, as for a closing local one); every other request
//! gets one. Pushes are written many at a time (`push_batches`), never after what is sent after
//! them. What goes to this worker's PHP (`sendMessage()`, task results not waited for)
//! travels on links of its own (`Lane::ForPhp`) and waits there for room in the event queue
//! and the inbound budget, holding the link back as a client's messages hold their socket: a
//! busy PHP thread holds up only that, never the questions, pushes and waited task results on
//! the other links.

mod links;
mod push_batches;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::engine::ClientInfo;
use crate::events::{Event, ReplyTo};
use crate::frame::LastFrame;
use crate::local;
use crate::made_in::MadeIn;
use crate::registry::{Control, Outgoing};
use crate::shared::Shared;
use crate::stats::StatsSnapshot;
use crate::workers::socket_path;
use links::{Links, Streams};
use push_batches::PushBatches;

const PUSH: u8 = 1;
const BROADCAST: u8 = 2;
const PUBLISH: u8 = 3;
const JOIN: u8 = 4;
const LEAVE: u8 = 5;
const DISCONNECT: u8 = 6;
const EXISTS: u8 = 7;
const ESTABLISHED: u8 = 8;
const CLIENT_INFO: u8 = 9;
const SOCKET_ID: u8 = 10;
const CONNECTIONS: u8 = 11;
const CHANNELS: u8 = 12;
const MEMBERS: u8 = 13;
const CHANNELS_OF: u8 = 14;
const STATS: u8 = 15;
/// The result of a task, from a task worker to the worker that sent it (see `tasks.rs`).
const FINISH: u8 = 16;
/// `sendMessage()`: a message from one worker (or task worker) for another's PHP.
const PIPE: u8 = 17;

/// What a link reads from its socket at once.
const LINK_READ_BUFFER: usize = 16 << 10;

/// The largest message a link reads into the buffer it keeps between messages.
const KEPT_REQUEST_BUFFER: usize = 1 << 20;

/// Messages for PHP a link holds while the event queue is full; past them, or past the inbound
/// budget (`Shared::hold_inbound`, shared with the clients' messages), the link waits too.
const FOR_PHP_BACKLOG: usize = 1024;

/// A message being written: its length is filled in by `finish`.
struct Writer(Vec<u8>);

impl Writer {
    fn new(op: u8) -> Self {
        Writer(vec![0, 0, 0, 0, op])
    }

    fn reply() -> Self {
        Writer(vec![0, 0, 0, 0])
    }

    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(self, v: &[u8]) -> Self {
        let mut w = self.u64(v.len() as u64);
        w.0.extend_from_slice(v);
        w
    }

    fn fds(self, fds: &[u64]) -> Self {
        fds.iter()
            .fold(self.u64(fds.len() as u64), |w, fd| w.u64(*fd))
    }

    fn item(self, item: &Outgoing) -> Self {
        match item {
            Outgoing::Frame(frame) => self.u8(0).bytes(frame.plain()),
            Outgoing::Control(Control::Ping(data)) => self.u8(1).bytes(data),
            Outgoing::Control(other) => unreachable!("PHP pushes frames and pings, not {other:?}"),
        }
    }

    /// The message with its length; one over 4 GiB is refused by `Peers::exchange`.
    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

/// A message being read; every read is checked (a short message reads as None).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn fds(&mut self) -> Option<Vec<u64>> {
        let n = self.u64()?;
        (0..n).map(|_| self.u64()).collect()
    }

    /// What PHP pushed; a frame with the bytes of `last`'s is shared with it.
    fn item(&mut self, last: &mut LastFrame) -> Option<Outgoing> {
        let kind = self.u8()?;
        let data = self.bytes()?;
        match kind {
            0 => last.share_plain(data).map(Outgoing::Frame),
            1 => Some(Outgoing::Control(Control::Ping(Bytes::copy_from_slice(
                data,
            )))),
            _ => None,
        }
    }
}

/// The answer to one request, or None for a push (and for a request that makes no sense).
/// `last` is the link's last frame pushed (see [`LastFrame`]).
fn answer(shared: &Shared, port: u16, request: &[u8], last: &mut LastFrame) -> Option<Vec<u8>> {
    let mut r = Reader(request);
    let reply = Writer::reply();
    let reply = match r.u8()? {
        PUSH => {
            let fd = r.u64()?;
            let _ = local::push(shared, fd, r.item(last)?);
            return None;
        }
        BROADCAST => {
            let except = r.fds()?;
            reply.u64(local::broadcast(shared, &r.item(last)?, &except) as u64)
        }
        PUBLISH => {
            let channel = r.string()?;
            let except = r.fds()?;
            reply.u64(local::publish(shared, &channel, &r.item(last)?, &except) as u64)
        }
        JOIN => {
            let fd = r.u64()?;
            reply.u8(local::join(shared, fd, &r.string()?) as u8)
        }
        LEAVE => {
            let fd = r.u64()?;
            reply.u8(local::leave(shared, fd, &r.string()?) as u8)
        }
        DISCONNECT => {
            let fd = r.u64()?;
            let code = u16::try_from(r.u64()?).ok()?;
            reply.u8(local::disconnect(shared, fd, code, &r.string()?) as u8)
        }
        EXISTS => reply.u8(local::exists(shared, r.u64()?) as u8),
        ESTABLISHED => reply.u8(local::is_established(shared, r.u64()?) as u8),
        CLIENT_INFO => match local::client_info(shared, port, r.u64()?) {
            None => reply.u8(0),
            Some(info) => reply
                .u8(1)
                .bytes(info.remote.to_string().as_bytes())
                .u64(info.connect_time)
                .u64(info.last_time)
                .u8(info.established as u8),
        },
        SOCKET_ID => match local::socket_id(shared, r.u64()?) {
            None => reply.u8(0),
            Some(id) => reply.u8(1).bytes(id.as_bytes()),
        },
        CONNECTIONS => reply.fds(&shared.registry.open_fds()),
        CHANNELS => {
            let list = shared.channels.list();
            list.iter()
                .fold(reply.u64(list.len() as u64), |w, (name, n)| {
                    w.bytes(name.as_bytes()).u64(*n as u64)
                })
        }
        MEMBERS => reply.fds(&shared.channels.members(&r.string()?)),
        CHANNELS_OF => {
            let names = shared.channels.of(r.u64()?);
            names
                .iter()
                .fold(reply.u64(names.len() as u64), |w, n| w.bytes(n.as_bytes()))
        }
        STATS => stats_fields(&local::stats(shared))
            .into_iter()
            .fold(reply, Writer::u64),
        _ => return None,
    };
    Some(reply.finish())
}

/// A FINISH request: the task id, the process that sent the task, whether it waits for the
/// result, the result.
fn finished(request: &[u8]) -> Option<(u64, u64, bool, Vec<u8>)> {
    let mut r = Reader(request);
    r.u8()?;
    Some((r.u64()?, r.u64()?, r.u8()? == 1, r.bytes()?.to_vec()))
}

fn stats_fields(s: &StatsSnapshot) -> [u64; 10] {
    [
        s.connections,
        s.accepted,
        s.closed,
        s.rejected,
        s.messages_in,
        s.messages_out,
        s.bytes_in,
        s.bytes_out,
        s.http_requests,
        s.start_time,
    ]
}

/// This worker's end of the bus: a thread answering the others' requests. Dropping it stops
/// the thread.
pub(crate) struct BusServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BusServer {
    pub(crate) fn start(
        dir: &Path,
        id: usize,
        shared: Arc<Shared>,
        port: u16,
    ) -> Result<Self, String> {
        let path = socket_path(dir, id);
        // A worker restarted in a dead one's place finds its socket file.
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                // sockaddr_un holds 108 bytes with the final NUL.
                let hint = match path.as_os_str().len() >= 108 {
                    true => " (the bus's directory is under TMPDIR: set it to a shorter path)",
                    false => "",
                };
                format!("cannot listen on {}: {e}{hint}", path.display())
            })?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("surge-bus".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime starts");
                runtime.block_on(async move {
                    let listener = UnixListener::from_std(listener).expect("a Unix listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept(listener, shared, port) => {}
                    }
                });
            })
            .map_err(|e| format!("cannot start the bus thread: {e}"))?;
        Ok(BusServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BusServer {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

async fn accept(listener: UnixListener, shared: Arc<Shared>, port: u16) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: the bus must outlast it.
                log::warn!(target: "surge", "bus: cannot accept a link: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (rx, mut tx) = stream.into_split();
            // Pushes come in batches (see `push_batches`): read as many as a buffer holds.
            let mut rx = tokio::io::BufReader::with_capacity(LINK_READ_BUFFER, rx);
            let for_php = ForPhp::new(&shared);
            let mut kept = Vec::new();
            let mut last = LastFrame::default();
            loop {
                let Ok(len) = rx.read_u32().await else { return };
                // A large push or broadcast is read into a buffer of its own, freed once it is
                // handled: kept, it would hold its size for as long as the link stays idle.
                let mut large = Vec::new();
                let request = match len as usize {
                    len if len > KEPT_REQUEST_BUFFER => &mut large,
                    _ => &mut kept,
                };
                request.resize(len as usize, 0);
                if rx.read_exact(request).await.is_err() {
                    return;
                }
                if request.first() == Some(&PIPE) {
                    let mut r = Reader(&request[1..]);
                    match (r.u64(), r.bytes()) {
                        // Queued for PHP like any event, in order.
                        (Some(from), Some(data)) => {
                            let event = Event::PipeMessage {
                                worker: from as usize,
                                data: data.to_vec(),
                                held: shared.hold_inbound(data.len()).await,
                            };
                            if for_php.send_in_turn(event).await.is_err() {
                                return;
                            }
                        }
                        _ => {
                            log::warn!(target: "surge", "bus: a message that cannot be read was dropped")
                        }
                    }
                    continue;
                }
                if request.first() == Some(&FINISH) {
                    match finished(request) {
                        Some((task_id, pid, ..)) if pid != u64::from(std::process::id()) => {
                            log::info!(target: "surge", "the result of task {task_id} was dropped: the process that sent it has been replaced");
                        }
                        // The PHP thread waits for it in taskwait(), unless the wait is over.
                        Some((task_id, _, true, data)) => {
                            shared.task_results.deliver(task_id, data);
                        }
                        // Queued for PHP in order, waiting for it only past the results'
                        // overdraft (`ForPhp::send_now`).
                        Some((task_id, _, false, data)) => {
                            let held = shared.hold_inbound_or_overdraft(data.len()).await;
                            let event = Event::Finish {
                                task_id,
                                data,
                                held,
                            };
                            if for_php.send_now(event).is_err() {
                                return;
                            }
                        }
                        None => {
                            log::warn!(target: "surge", "bus: a task result that cannot be read was dropped")
                        }
                    }
                    continue;
                }
                let reply = answer(&shared, port, request, &mut last);
                if rx.buffer().is_empty() {
                    // The burst of pushes is read: keep no frame for the next.
                    last.forget();
                }
                if let Some(reply) = reply {
                    if tx.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// A link's queue of messages for PHP: a task hands them on to the event queue in order,
/// waiting for room there as a client's message does, until the link (the sender) is gone.
struct ForPhp {
    queue: mpsc::UnboundedSender<(Event, Option<OwnedSemaphorePermit>)>,
    /// [`FOR_PHP_BACKLOG`] places, one taken by each message queued in turn until it reaches
    /// the event queue.
    backlog: Arc<Semaphore>,
}

struct Gone;

impl ForPhp {
    fn new(shared: &Shared) -> Self {
        let (queue, mut queued) = mpsc::unbounded_channel::<(Event, Option<_>)>();
        let events = shared.events.clone();
        tokio::spawn(async move {
            while let Some((event, _place)) = queued.recv().await {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        ForPhp {
            queue,
            backlog: Arc::new(Semaphore::new(FOR_PHP_BACKLOG)),
        }
    }

    /// Waits for a place in the backlog: a busy PHP holds the link back.
    async fn send_in_turn(&self, event: Event) -> Result<(), Gone> {
        let place = self
            .backlog
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Gone)?;
        self.queue.send((event, Some(place))).map_err(|_| Gone)
    }

    /// Queues at once. For task results: a worker whose PHP waits in task() for room in the
    /// task queue would otherwise hold back the task workers' results, so that they take no
    /// more tasks and the queue never gets room (task() failed after 5 s in bursts). What
    /// waits here is no more than the results of the tasks that worker sent, within the
    /// inbound budget and the results' overdraft (`Shared::hold_inbound_or_overdraft`).
    fn send_now(&self, event: Event) -> Result<(), Gone> {
        self.queue.send((event, None)).map_err(|_| Gone)
    }
}

/// Whether `message` is too long for its length's 4 bytes (a push of over 4 GiB).
fn too_long(message: &[u8]) -> bool {
    message.len() - 4 > u32::MAX as usize
}

/// Which of a peer's links a message takes.
#[derive(Clone, Copy)]
enum Lane {
    /// Questions, pushes and waited task results: answered or carried out by the peer's bus
    /// thread at once.
    Now,
    /// Messages for the peer's PHP, which wait for it when it is busy.
    ForPhp,
}

/// This worker's links to the others, used by its PHP thread: two to each, one a lane.
pub(crate) struct Peers {
    me: usize,
    /// Workers: the processes with connections, which the others ask about them.
    count: usize,
    now: Arc<Links>,
    for_php: Links,
    pushes: PushBatches,
    /// The other workers' fds in the last `connections()` of this batch of callbacks,
    /// ascending: `exists()` and `is_established()` answer true for them without asking, so
    /// that the articles' `foreach ($server->connections as $fd) if
    /// ($server->isEstablished($fd)) ...` makes no round trip per fd (with 3 workers x 5k
    /// clients such a loop took 4.8x the CPU of the loop without the check). Forgotten in
    /// `batch_done`.
    listed: Mutex<Vec<u64>>,
    /// The process these links are for: a child forked by a callback (`pcntl_fork()`) has
    /// copies of them and of the batches not written yet, but must not write on the parent's
    /// links (its writes would double or cut into the parent's), nor wait for a lock the
    /// batches' thread, which it does not have, held at the fork. To it the other workers
    /// cannot be reached.
    made_in: MadeIn,
}

impl Peers {
    /// `processes`: workers and task workers, which any of them may send a message.
    pub(crate) fn new(dir: &Path, me: usize, count: usize, processes: usize) -> Self {
        // Any process answers whether it has fd 0 (none has).
        let greeting = Writer::new(EXISTS).u64(0).finish();
        let now = Arc::new(Links::new(dir, processes, greeting.clone()));
        Peers {
            me,
            count,
            pushes: PushBatches::start(now.clone(), processes),
            now,
            for_php: Links::new(dir, processes, greeting),
            listed: Mutex::new(Vec::new()),
            made_in: MadeIn::here(),
        }
    }

    /// This is a child forked from the process the links are for (see `Peers::made_in`).
    fn forked(&self) -> bool {
        self.made_in.forked()
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn me(&self) -> usize {
        self.me
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).filter(move |&w| w != self.me)
    }

    /// The links of `Lane::Now`, locked, with every push batch written first (see
    /// `push_batches`).
    fn now_links(&self) -> MutexGuard<'_, Streams> {
        let mut streams = self.now.lock();
        self.pushes.write(&self.now, &mut streams);
        streams
    }

    /// Sends `message` to worker `peer` and, if `reply`, reads its answer. None if the worker
    /// cannot be reached (or, for a message without answer, Some of nothing once sent).
    fn exchange(&self, peer: usize, message: &[u8], reply: bool) -> Option<Vec<u8>> {
        self.exchange_on(Lane::Now, peer, message, reply)
    }

    fn exchange_on(&self, lane: Lane, peer: usize, message: &[u8], reply: bool) -> Option<Vec<u8>> {
        if too_long(message) || self.forked() {
            return None;
        }
        let (links, mut streams) = match lane {
            Lane::Now => (&*self.now, self.now_links()),
            Lane::ForPhp => {
                drop(self.now_links());
                (&self.for_php, self.for_php.lock())
            }
        };
        if !links.send_on(&mut streams, peer, message) {
            return None;
        }
        match reply {
            true => links.read_answer(&mut streams, peer),
            false => Some(Vec::new()),
        }
    }

    fn ask(&self, peer: usize, message: Writer) -> Option<Vec<u8>> {
        self.exchange(peer, &message.finish(), true)
    }

    /// Asks every other worker and folds their answers (an unreachable one counts as empty)
    /// into what `here` gives, this worker's own share. Every question is sent before `here`
    /// runs and any answer is read, so that the workers carry it out side by side: one after
    /// another, a broadcast to 51k clients over three workers held the caller's PHP for the
    /// sum of their times (70-250 ms).
    fn ask_all<T>(
        &self,
        message: Writer,
        here: impl FnOnce() -> T,
        mut fold: impl FnMut(T, Reader) -> T,
    ) -> T {
        let message = message.finish();
        if too_long(&message) || self.forked() {
            return here();
        }
        let mut streams = self.now_links();
        let asked: Vec<usize> = (self.others())
            .filter(|&peer| self.now.send_on(&mut streams, peer, &message))
            .collect();
        let init = here();
        (asked.into_iter())
            .filter_map(|peer| self.now.read_answer(&mut streams, peer))
            .fold(init, |acc, answer| fold(acc, Reader(&answer)))
    }

    fn ask_bool(&self, peer: usize, message: Writer) -> bool {
        self.ask(peer, message)
            .is_some_and(|a| Reader(&a).u8() == Some(1))
    }

    /// Writes the pushes made so far (see `push_batches`): before what goes out by another
    /// way than the bus (a task, a Redis publish, an HTTP response), which must not overtake
    /// them either.
    pub(crate) fn write_pushes(&self) {
        if !self.forked() && self.pushes.held() {
            drop(self.now_links());
        }
    }

    /// A batch of callbacks is over: writes the pushes it made and forgets the connections it
    /// listed.
    pub(crate) fn batch_done(&self) {
        self.write_pushes();
        let mut listed = self.listed.lock();
        if !listed.is_empty() {
            *listed = Vec::new();
        }
    }

    /// Whether `fd` was in the last `connections()` of this batch of callbacks.
    fn listed(&self, fd: u64) -> bool {
        self.listed.lock().binary_search(&fd).is_ok()
    }

    /// Hands a push to the worker that owns `fd`: true once in its batch (see `push_batches`),
    /// or, when that worker has no link yet (or lost it), once a link is made and the push
    /// written on it: false if it cannot be reached.
    pub(crate) fn push(&self, peer: usize, fd: u64, item: &Outgoing) -> bool {
        let message = Writer::new(PUSH).u64(fd).item(item).finish();
        if too_long(&message) || peer >= self.count || self.forked() {
            return false;
        }
        if !self.now.linked(peer) {
            return self.exchange(peer, &message, false).is_some();
        }
        if self.pushes.add(peer, &message) {
            drop(self.now_links());
        }
        true
    }

    /// Hands the result of task `task_id` to the worker that sent it; true once handed over.
    pub(crate) fn finish(&self, reply_to: ReplyTo, task_id: u64, data: &[u8]) -> bool {
        if reply_to.worker >= self.count {
            return false;
        }
        let message = Writer::new(FINISH)
            .u64(task_id)
            .u64(reply_to.pid.into())
            .u8(reply_to.waited as u8)
            .bytes(data)
            .finish();
        // A waited result goes to taskwait() at once, past any message waiting for PHP.
        let lane = if reply_to.waited {
            Lane::Now
        } else {
            Lane::ForPhp
        };
        self.exchange_on(lane, reply_to.worker, &message, false)
            .is_some()
    }

    /// Hands `data` to worker (or task worker) `peer`'s PHP as [`Event::PipeMessage`] from
    /// this one; true once handed over.
    pub(crate) fn pipe(&self, peer: usize, data: &[u8]) -> bool {
        let message = Writer::new(PIPE).u64(self.me as u64).bytes(data).finish();
        self.exchange_on(Lane::ForPhp, peer, &message, false)
            .is_some()
    }

    /// How many got it: the others' and `here`'s (this worker's broadcast, run meanwhile).
    pub(crate) fn broadcast(
        &self,
        item: &Outgoing,
        except: &[u64],
        here: impl FnOnce() -> usize,
    ) -> usize {
        let message = Writer::new(BROADCAST).fds(except).item(item);
        self.ask_all(message, here, |n, mut r| n + r.u64().unwrap_or(0) as usize)
    }

    /// As [`Peers::broadcast`], to the members of `channel`.
    pub(crate) fn publish(
        &self,
        channel: &str,
        item: &Outgoing,
        except: &[u64],
        here: impl FnOnce() -> usize,
    ) -> usize {
        let message = Writer::new(PUBLISH)
            .bytes(channel.as_bytes())
            .fds(except)
            .item(item);
        self.ask_all(message, here, |n, mut r| n + r.u64().unwrap_or(0) as usize)
    }

    pub(crate) fn join(&self, peer: usize, fd: u64, channel: &str) -> bool {
        self.ask_bool(peer, Writer::new(JOIN).u64(fd).bytes(channel.as_bytes()))
    }

    pub(crate) fn leave(&self, peer: usize, fd: u64, channel: &str) -> bool {
        self.ask_bool(peer, Writer::new(LEAVE).u64(fd).bytes(channel.as_bytes()))
    }

    pub(crate) fn disconnect(&self, peer: usize, fd: u64, code: u16, reason: &str) -> bool {
        let message = Writer::new(DISCONNECT)
            .u64(fd)
            .u64(u64::from(code))
            .bytes(reason.as_bytes());
        let mut listed = self.listed.lock();
        if let Ok(at) = listed.binary_search(&fd) {
            listed.remove(at);
        }
        drop(listed);
        self.ask_bool(peer, message)
    }

    pub(crate) fn exists(&self, peer: usize, fd: u64) -> bool {
        self.listed(fd) || self.ask_bool(peer, Writer::new(EXISTS).u64(fd))
    }

    pub(crate) fn is_established(&self, peer: usize, fd: u64) -> bool {
        self.listed(fd) || self.ask_bool(peer, Writer::new(ESTABLISHED).u64(fd))
    }

    pub(crate) fn client_info(&self, peer: usize, port: u16, fd: u64) -> Option<ClientInfo> {
        let answer = self.ask(peer, Writer::new(CLIENT_INFO).u64(fd))?;
        let mut r = Reader(&answer);
        if r.u8()? != 1 {
            return None;
        }
        let remote: SocketAddr = r.string()?.parse().ok()?;
        Some(ClientInfo {
            remote,
            server_port: port,
            connect_time: r.u64()?,
            last_time: r.u64()?,
            established: r.u8()? == 1,
        })
    }

    pub(crate) fn socket_id(&self, peer: usize, fd: u64) -> Option<String> {
        let answer = self.ask(peer, Writer::new(SOCKET_ID).u64(fd))?;
        let mut r = Reader(&answer);
        (r.u8()? == 1).then(|| r.string()).flatten()
    }

    /// The others' established connections added to `fds` (and listed: see `Peers::listed`).
    pub(crate) fn connections(&self, fds: Vec<u64>) -> Vec<u64> {
        let mut listed = self.ask_all(Writer::new(CONNECTIONS), Vec::new, |mut all, mut r| {
            all.extend(r.fds().unwrap_or_default());
            all
        });
        listed.sort_unstable();
        let all = [&fds[..], &listed].concat();
        *self.listed.lock() = listed;
        all
    }

    pub(crate) fn members(&self, channel: &str, fds: Vec<u64>) -> Vec<u64> {
        let message = Writer::new(MEMBERS).bytes(channel.as_bytes());
        self.ask_all(
            message,
            || fds,
            |mut all, mut r| {
                all.extend(r.fds().unwrap_or_default());
                all
            },
        )
    }

    /// The others' channels and member counts added to `counts`.
    pub(crate) fn channels(&self, counts: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
        self.ask_all(
            Writer::new(CHANNELS),
            || counts,
            |mut all, mut r| {
                let n = r.u64().unwrap_or(0);
                for _ in 0..n {
                    let (Some(name), Some(count)) = (r.string(), r.u64()) else {
                        break;
                    };
                    *all.entry(name).or_default() += count as usize;
                }
                all
            },
        )
    }

    pub(crate) fn channels_of(&self, peer: usize, fd: u64) -> Vec<String> {
        let Some(answer) = self.ask(peer, Writer::new(CHANNELS_OF).u64(fd)) else {
            return Vec::new();
        };
        let mut r = Reader(&answer);
        let n = r.u64().unwrap_or(0);
        (0..n).map_while(|_| r.string()).collect()
    }

    /// The others' counters added to `own` (the earliest start time kept).
    pub(crate) fn stats(&self, own: StatsSnapshot) -> StatsSnapshot {
        self.ask_all(
            Writer::new(STATS),
            || own,
            |mut s, mut r| {
                let mut f = [0u64; 10];
                if f.iter_mut().all(|v| r.u64().map(|n| *v = n).is_some()) {
                    s.connections += f[0];
                    s.accepted += f[1];
                    s.closed += f[2];
                    s.rejected += f[3];
                    s.messages_in += f[4];
                    s.messages_out += f[5];
                    s.bytes_in += f[6];
                    s.bytes_out += f[7];
                    s.http_requests += f[8];
                    s.start_time = s.start_time.min(f[9]);
                }
                s
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::links::{connect_within, TIMEOUT};
    use super::push_batches::WRITTEN_WITHIN;
    use super::*;
    use crate::config::Config;
    use crate::frame;
    use crate::registry::Conn;
    use crate::shared::INBOUND_BUDGET;
    use crate::workers::FdSource;

    /// Worker 1 of 2 with two connections (fds 2 and 4, one in a channel), answering on a bus
    /// in `dir`; Peers as worker 0.
    fn worker_one(
        dir: &Path,
    ) -> (
        Arc<Shared>,
        BusServer,
        Peers,
        tokio::sync::mpsc::Receiver<Event>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let shared = Arc::new(Shared::new(Config::default(), tx, FdSource::single()));
        for fd in [2, 4] {
            let conn = Arc::new(Conn::new(fd, "127.0.0.1:5000".parse().unwrap(), 7, 0));
            shared.registry.insert(conn.clone());
            if fd == 4 {
                shared.channels.join(&conn, "room");
            }
        }
        let bus = BusServer::start(dir, 1, shared.clone(), 9501).unwrap();
        (shared, bus, Peers::new(dir, 0, 2, 2), rx)
    }

    /// The next event for PHP: messages from the bus reach the queue a moment after the link
    /// takes them.
    fn next_event(events: &mut tokio::sync::mpsc::Receiver<Event>) -> Event {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match events.try_recv() {
                Ok(event) => return event,
                Err(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("no event within 5 s: {e}"),
            }
        }
    }

    #[test]
    fn another_worker_reaches_these_connections_and_a_gone_one_answers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, bus, peers, mut events) = worker_one(dir.path());
        assert!(peers.exists(1, 2) && peers.is_established(1, 4));
        assert!(!peers.exists(1, 6));
        assert_eq!(peers.connections(vec![1, 3]), vec![1, 3, 2, 4]);
        // The batch of callbacks that listed them is over: what follows is asked.
        peers.batch_done();
        let info = peers.client_info(1, 9501, 4).unwrap();
        assert_eq!(
            (info.remote.port(), info.connect_time, info.established),
            (5000, 7, true)
        );
        assert_eq!(peers.members("room", vec![]), vec![4]);
        assert_eq!(peers.channels_of(1, 4), vec!["room".to_string()]);
        let counts = peers.channels([("room".to_string(), 1)].into());
        assert_eq!(counts.get("room"), Some(&2));
        assert!(peers.join(1, 2, "room") && !peers.join(1, 2, "room"));
        assert_eq!(peers.stats(Default::default()).connections, 2);

        let text = Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, b"hello"));
        assert!(peers.push(1, 2, &text));
        assert_eq!(peers.publish("room", &text, &[4], || 10), 11);
        // The other workers do their share while this one does its own (`here`): the question
        // is out before it runs.
        let four = shared.registry.get(4).unwrap();
        let _ = four.drain();
        let asked_first = || {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while four.nothing_queued() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
            usize::from(!four.nothing_queued()) * 10
        };
        let ping = Outgoing::Control(Control::Ping(Bytes::new()));
        assert_eq!(peers.broadcast(&ping, &[], asked_first), 12);
        // A push gets no answer: the next request's answer shows it was handled first.
        assert!(peers.disconnect(1, 2, 4000, "bye"));
        assert!(!peers.is_established(1, 2));
        assert!(shared.registry.get(4).unwrap().is_open());

        // A task worker's result becomes an event for PHP.
        let pid = std::process::id();
        let reply_to = |worker, waited| ReplyTo {
            worker,
            pid,
            waited,
            callback: false,
        };
        assert!(peers.finish(reply_to(1, false), 9, b"done"));
        match next_event(&mut events) {
            Event::Finish { task_id, data, .. } => {
                assert_eq!((task_id, &data[..]), (9, &b"done"[..]))
            }
            other => panic!("a Finish event, not {other:?}"),
        }
        // One that the worker's PHP thread waits for goes to it, not to the queue.
        shared.task_results.expect(10);
        assert!(peers.finish(reply_to(1, true), 10, b"waited"));
        assert_eq!(
            shared
                .task_results
                .wait(&[10], Duration::from_secs(5), || false),
            [Some(b"waited".to_vec())]
        );
        assert!(!peers.finish(reply_to(2, false), 9, b"no such worker"));
        // A result for a process that has been replaced since it sent the task is dropped.
        let earlier = ReplyTo {
            pid: pid + 1,
            ..reply_to(1, false)
        };
        assert!(peers.finish(earlier, 11, b"stale"));

        // sendMessage(): for worker 1's PHP, saying where it comes from. Messages for PHP keep
        // their order on the link: this one coming next shows that neither result above was
        // queued for PHP.
        assert!(peers.pipe(1, b"hello"));
        match next_event(&mut events) {
            Event::PipeMessage { worker, data, .. } => {
                assert_eq!((worker, &data[..]), (peers.me(), &b"hello"[..]))
            }
            other => panic!("a PipeMessage event, not {other:?}"),
        }
        assert!(!peers.pipe(2, b"no such worker"));

        drop(bus);
        assert!(!peers.exists(1, 4), "a worker that is gone answers nothing");
        assert!(!peers.push(1, 4, &text));
        assert_eq!(peers.connections(vec![]), Vec::<u64>::new());
    }

    #[test]
    fn fds_listed_in_this_batch_of_callbacks_are_established_without_asking() {
        let dir = tempfile::tempdir().unwrap();
        let (_shared, bus, peers, _events) = worker_one(dir.path());
        assert_eq!(peers.connections(vec![1]), vec![1, 2, 4]);
        // Worker 1 answers nothing from now on: what is answered comes from the list.
        drop(bus);
        assert!(peers.is_established(1, 4) && peers.exists(1, 2));
        assert!(!peers.exists(1, 6), "not listed: asked");
        assert!(!peers.disconnect(1, 4, 1000, "bye"));
        assert!(
            !peers.is_established(1, 4),
            "disconnected by this worker: asked"
        );
        peers.batch_done();
        assert!(!peers.exists(1, 2), "the list goes with its batch");
    }

    #[test]
    fn pushes_of_one_message_to_another_workers_clients_share_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, _events) = worker_one(dir.path());
        let text = |bytes: &[u8]| Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, bytes));
        assert!(!peers.exists(1, 6), "the link is made");
        // Held, the batches' thread cannot write the first push alone 1 ms after it (a burst
        // over for the bus, which then forgets its frame): all three go in one write.
        let writing = peers.now.lock();
        // As the loop pushes: a frame of its own made for each push.
        assert!(peers.push(1, 2, &text(b"all")) && peers.push(1, 4, &text(b"all")));
        assert!(peers.push(1, 4, &text(b"other")));
        drop(writing);
        // A question's answer comes after the pushes before it were handled.
        assert!(peers.exists(1, 2));
        let (two, four) = (
            shared.registry.get(2).unwrap().drain().items,
            shared.registry.get(4).unwrap().drain().items,
        );
        let frame = |item: &Outgoing| item.frame().unwrap() as *const frame::Encoded;
        assert_eq!(frame(&two[0]), frame(&four[0]), "one frame for both");
        assert_ne!(frame(&four[0]), frame(&four[1]));
        assert_eq!(&four[1].frame().unwrap().plain()[2..], b"other");
        // That burst is read (the question after it too): the bus keeps no frame for the next,
        // which may not come for a long time.
        assert!(peers.push(1, 2, &text(b"other")));
        assert!(peers.exists(1, 2));
        let again = shared.registry.get(2).unwrap().drain().items;
        assert_ne!(
            frame(&four[1]),
            frame(&again[0]),
            "made anew after the burst"
        );
    }

    #[test]
    fn a_child_forked_by_a_callback_writes_nothing_on_the_parents_links() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, _events) = worker_one(dir.path());
        assert!(peers.exists(1, 2), "the link is made");
        // The lock as the batches' thread holds it while it writes: held at the fork.
        let writing = peers.now.lock();
        let text = Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, b"x"));
        for _ in 0..3 {
            assert!(peers.push(1, 2, &text));
        }
        // SAFETY: the child only calls the bus and ends with _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // The child's callback ends (an exit()): its batch is done. Nothing it does may
            // write the parent's batch again or wait for the lock.
            peers.batch_done();
            let reached = peers.push(1, 2, &text) || peers.exists(1, 2);
            unsafe { libc::_exit(i32::from(reached)) };
        }
        let mut status = 0;
        let until = std::time::Instant::now() + 10 * TIMEOUT;
        while unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } != child {
            if std::time::Instant::now() > until {
                unsafe { libc::kill(child, libc::SIGKILL) };
                panic!("the forked child hangs");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        drop(writing);
        // A question's answer comes after the pushes before it were handled.
        assert!(peers.exists(1, 2));
        assert_eq!(shared.registry.get(2).unwrap().drain().items.len(), 3);
    }

    #[test]
    fn pushes_are_written_before_anything_sent_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, _events) = worker_one(dir.path());
        assert!(peers.exists(1, 2), "the link is made");
        let frame = |i: usize| frame::Encoded::new(frame::OP_TEXT, format!("push {i}").as_bytes());
        for i in 0..1000 {
            assert!(peers.push(1, 2, &Outgoing::Frame(frame(i))));
        }
        assert!(peers.disconnect(1, 2, 4000, "after them"));
        let items = shared.registry.get(2).unwrap().drain().items;
        assert_eq!(items.len(), 1001);
        for (i, item) in items.iter().take(1000).enumerate() {
            let Outgoing::Frame(got) = item else {
                panic!("push {i} is {item:?}")
            };
            assert_eq!(got.plain(), frame(i).plain());
        }
        assert!(matches!(
            items[1000],
            Outgoing::Control(Control::Close(4000, _))
        ));
    }

    #[test]
    fn a_push_goes_out_while_the_php_thread_is_busy_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, _events) = worker_one(dir.path());
        assert!(peers.exists(1, 2), "the link is made");
        let text = Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, b"hello"));
        assert!(peers.push(1, 2, &text));
        // Nothing else is sent, and nothing writes the pushes but the batches' own thread.
        let two = shared.registry.get(2).unwrap();
        let until = std::time::Instant::now() + 20 * WRITTEN_WITHIN;
        while two.nothing_queued() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!two.nothing_queued(), "the push is still held");
    }

    /// Worker 1's PHP thread is busy: its event queue is full.
    fn fill_event_queue(shared: &Shared) {
        while shared.events.try_send(Event::Wake).is_ok() {}
    }

    /// Clients' messages waiting for a busy PHP hold the whole inbound budget.
    fn hold_whole_budget(shared: &Shared) -> OwnedSemaphorePermit {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(shared.hold_inbound(INBOUND_BUDGET))
    }

    #[test]
    fn a_full_event_queue_holds_up_messages_for_php_not_the_questions_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, mut events) = worker_one(dir.path());
        fill_event_queue(&shared);
        assert!(peers.pipe(1, b"first") && peers.pipe(1, b"second"));
        assert!(peers.exists(1, 2), "answered while the messages wait");
        // Waiting, they hold their bytes of the inbound budget, as clients' messages do.
        assert_eq!(shared.inbound_available(), INBOUND_BUDGET - 11);
        // Once PHP takes its events, the messages follow, in order.
        let mut piped = Vec::new();
        while piped.len() < 2 {
            if let Event::PipeMessage { data, .. } = next_event(&mut events) {
                piped.push(data);
            }
        }
        assert_eq!(piped, [b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(shared.inbound_available(), INBOUND_BUDGET);
    }

    #[test]
    fn messages_waiting_for_a_busy_php_hold_up_no_question_and_no_waited_result() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, _events) = worker_one(dir.path());
        // Worker 1's PHP is busy.
        let held = hold_whole_budget(&shared);
        assert!(peers.pipe(1, b"waits for PHP"));
        let reply_to = |waited| ReplyTo {
            worker: 1,
            pid: std::process::id(),
            waited,
            callback: false,
        };
        assert!(peers.finish(reply_to(false), 9, b"does not wait for PHP"));
        assert!(peers.exists(1, 2), "answered, not timed out");
        shared.task_results.expect(10);
        assert!(peers.finish(reply_to(true), 10, b"waited"));
        assert_eq!(
            shared.task_results.wait(&[10], 3 * TIMEOUT, || false),
            [Some(b"waited".to_vec())]
        );
        drop(held);
    }

    #[test]
    fn messages_for_a_busy_php_keep_their_order_and_say_when_there_is_no_room() {
        // Worker 1's PHP is busy for longer than a sender waits: once its link is full, a
        // message is refused (false), not sent on a new link to overtake those waiting.
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, mut events) = worker_one(dir.path());
        fill_event_queue(&shared);
        let held = hold_whole_budget(&shared);
        let message = |i: u32| [i.to_be_bytes().as_slice(), &[b'p'; 8 << 10]].concat();
        let (mut handed_over, mut refused) = (Vec::new(), 0);
        for i in 0..200 {
            match peers.pipe(1, &message(i)) {
                true => handed_over.push(message(i)),
                false => refused += 1,
            }
            if refused == 3 {
                break;
            }
        }
        assert_eq!(refused, 3, "the link never filled");
        drop(held);
        let mut piped = Vec::new();
        while piped.len() < handed_over.len() {
            if let Event::PipeMessage { data, .. } = next_event(&mut events) {
                piped.push(data);
            }
        }
        assert!(
            piped == handed_over,
            "every message handed over came, in order, and no other"
        );
        assert!(peers.pipe(1, b"after"), "room again");
        loop {
            if let Event::PipeMessage { data, .. } = next_event(&mut events) {
                assert_eq!(data, b"after", "a refused message came");
                break;
            }
        }
    }

    #[test]
    fn task_results_for_a_busy_php_never_hold_up_the_task_worker() {
        // Worker 1's PHP waits in task() for room in the task queue: its event queue is full
        // and clients' messages hold the whole inbound budget. The task workers must still hand
        // over their results (more than the link's backlog, and more bytes than its socket
        // holds), or they take no more tasks and the queue never gets room.
        let dir = tempfile::tempdir().unwrap();
        let (shared, _bus, peers, mut events) = worker_one(dir.path());
        fill_event_queue(&shared);
        let held = hold_whole_budget(&shared);
        let reply_to = ReplyTo {
            worker: 1,
            pid: std::process::id(),
            waited: false,
            callback: false,
        };
        let result = vec![b'r'; 16 << 10];
        let count = FOR_PHP_BACKLOG as u64 + 200;
        for task_id in 0..count {
            assert!(peers.finish(reply_to, task_id, &result), "result {task_id}");
        }
        // Once PHP takes its events, every result follows, in order.
        drop(held);
        let mut next = 0;
        while next < count {
            if let Event::Finish { task_id, data, .. } = next_event(&mut events) {
                assert_eq!((task_id, data.len()), (next, result.len()));
                next += 1;
            }
        }
    }

    #[test]
    fn a_worker_whose_backlog_is_full_is_given_up_on_not_waited_for() {
        // A worker that takes no link: its listen backlog fills.
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path(), 1);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut queued = Vec::new();
        while let Ok(link) = connect_within(&path, Duration::ZERO) {
            queued.push(link);
            assert!(queued.len() < 100_000, "the backlog never filled");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let dir_path = dir.path().to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(Peers::new(&dir_path, 0, 2, 2).exists(1, 2));
        });
        let answer = rx.recv_timeout(10 * TIMEOUT);
        assert_eq!(answer, Ok(false), "an answer (no), not a wait for ever");
    }

    #[test]
    fn a_request_written_whole_is_not_sent_again_when_its_answer_is_late() {
        // A worker whose bus links are stuck: it takes requests and answers none in time. Sent
        // again on a new link, each would be carried out twice.
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(socket_path(dir.path(), 1)).unwrap();
        let stuck = std::thread::spawn(move || {
            let mut links = Vec::new();
            listener.set_nonblocking(true).unwrap();
            let until = std::time::Instant::now() + 3 * TIMEOUT;
            while std::time::Instant::now() < until {
                if let Ok((link, _)) = listener.accept() {
                    links.push(link);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            links.len()
        });
        let peers = Peers::new(dir.path(), 0, 2, 2);
        assert!(!peers.exists(1, 2), "no answer in time");
        assert_eq!(stuck.join().unwrap(), 1, "one link, the request sent once");
    }

    #[test]
    fn frames_cross_as_they_were_encoded_and_garbage_is_refused() {
        for payload in [&b""[..], &[7u8; 125], &[7u8; 126], &[7u8; 70_000]] {
            let sent = Outgoing::Frame(frame::Encoded::new(frame::OP_BINARY, payload));
            let message = Writer::new(PUSH).u64(9).item(&sent).finish();
            let mut r = Reader(&message[4..]);
            assert_eq!((r.u8(), r.u64()), (Some(PUSH), Some(9)));
            let Some(Outgoing::Frame(got)) = r.item(&mut LastFrame::default()) else {
                panic!("a frame")
            };
            assert_eq!(got.plain(), sent.frame().unwrap().plain());
        }
        for bad in [
            &[0x81u8, 5, b'a'][..],
            &[0x01, 1, b'a'],
            &[0x88, 0],
            &[0x81],
        ] {
            assert!(
                frame::Encoded::from_plain(Bytes::copy_from_slice(bad)).is_none(),
                "{bad:?}"
            );
        }
        assert!(Reader(&[0, 0, 0, 0, 0, 0, 0, 9, 1]).bytes().is_none());
    }
}
