//! The handle the PHP layer holds: starts the Tokio runtime and the listener, hands events to
//! the PHP thread, and takes pushes, closes and timers from it without ever blocking on I/O.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};

use crate::bus::{BusServer, Peers};
use crate::config::Config;
use crate::events::{Event, ReplyTo};
use crate::frame::{self, LastFrame};
use crate::inline_dispatch::{self, Serving};
use crate::listener::accept_loop;
use crate::listener_not_inherited::Listening;
use crate::made_in::MadeIn;
use crate::redis_bridge::RedisBridge;
use crate::registry::{Control, Outgoing, PushError};
use crate::shared::Shared;
use crate::stats::StatsSnapshot;
use crate::stop_watchdog::StopWatchdog;
use crate::tasks::{self, TaskPlace, TaskSender};
use crate::timers::Timers;
use crate::workers::{self, FdSource, Worker};
use crate::{heartbeat, local, logging, memory, signal_arrival, tls};
use tokio_rustls::TlsAcceptor;

/// Which PHP callbacks are registered (see [`Engine::set_handler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handler {
    Open,
    Message,
    Close,
    Request,
    /// Swoole's `handshake`: PHP answers WebSocket handshakes (see [`crate::Event::Handshake`]).
    Handshake,
    Redis,
    PusherSubscribe,
    PusherUnsubscribe,
    PusherClientEvent,
}

/// A message to push, encoded once when it is made (the caller's bytes are copied straight
/// into the frame).
#[derive(Debug, Clone)]
pub struct Payload(Outgoing);

impl Payload {
    pub fn text(text: &str) -> Self {
        Payload(Outgoing::Frame(frame::Encoded::new(
            frame::OP_TEXT,
            text.as_bytes(),
        )))
    }

    pub fn binary(data: &[u8]) -> Self {
        Payload(Outgoing::Frame(frame::Encoded::new(frame::OP_BINARY, data)))
    }

    pub fn ping(data: &[u8]) -> Self {
        Payload(Outgoing::Control(Control::Ping(Bytes::copy_from_slice(
            data,
        ))))
    }

    fn into_outgoing(self) -> Outgoing {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub remote: SocketAddr,
    pub server_port: u16,
    /// Unix seconds.
    pub connect_time: u64,
    /// Unix seconds of the last frame received.
    pub last_time: u64,
    pub established: bool,
}

pub struct Engine {
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
    /// The accept loop of a worker's socket, until [`Engine::accept_connections`].
    accepting: Mutex<Option<Accepting>>,
    events: Mutex<mpsc::Receiver<Event>>,
    timers: Timers,
    local_addr: SocketAddr,
    redis: Option<Arc<RedisBridge>>,
    /// With worker processes: the links to the other workers, and this one's end of the bus.
    peers: Option<Peers>,
    bus: Option<BusServer>,
    /// A worker's end of the task queue, with task workers.
    task_sender: Option<TaskSender>,
    /// In a task worker: PHP finished the task it was given (see `tasks::take_tasks`).
    task_done: Arc<Notify>,
    /// In a task worker: its place in the shared note of running tasks (see `tasks.rs`).
    task_place: Option<Arc<TaskPlace>>,
    /// The frame of the last push to this process's connections, for the next push of the
    /// same message; forgotten at the end of each batch of callbacks.
    last_pushed: Mutex<LastFrame>,
    /// Dropped last, after the runtime is gone.
    _signal_mask: PhpThreadSignals,
    _stop_watchdog: StopWatchdog,
    /// The process that started it (see `Drop`).
    made_in: MadeIn,
}

impl Engine {
    /// Whether the certificate files of `config` (if any) can be served now: what the master
    /// asks before it stops a worker for a reload, or forks one, so that a certificate being
    /// replaced (the key written after the certificate) takes no worker down.
    pub fn check_tls(config: &Config) -> Result<(), String> {
        Self::tls_acceptor(config).map(drop)
    }

    fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, String> {
        match (&config.ssl_cert_file, &config.ssl_key_file) {
            (Some(cert), Some(key)) => tls::acceptor(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// Validates the settings, starts the runtime and binds the listener. Errors are messages
    /// for the user (bad settings, address in use, ...). `handlers` are the callbacks registered
    /// so far: known before the first connection is accepted (else a request that came at once
    /// would be answered as if there were no `request` callback). A `worker` of a [`Pool`]
    /// (`worker_num` > 1) accepts from its socket of the pool instead of binding one.
    ///
    /// [`Pool`]: crate::workers::Pool
    pub fn start(
        config: Config,
        host: &str,
        port: u16,
        handlers: &[Handler],
        worker: Option<Worker>,
    ) -> Result<Engine, String> {
        config.validate().map_err(|e| e.to_string())?;
        // Read before binding, so that a server that cannot serve its certificate says so
        // without having listened; a task worker accepts no connection and does not depend on
        // the files (which a renewal may be replacing while it restarts).
        let is_task_worker = worker.as_ref().is_some_and(|w| w.id >= w.count);
        let tls = match is_task_worker {
            false => Self::tls_acceptor(&config)?,
            true => None,
        };
        logging::init(
            config.log_level,
            match &worker {
                None => logging::Role::Alone,
                Some(w) if is_task_worker => logging::Role::TaskWorker(w.id),
                Some(w) => logging::Role::Worker(w.id),
            },
        );
        let config = match is_task_worker {
            false => config.within_open_files(),
            true => config,
        };
        let (listener, task_sender, task_queue) = match &worker {
            Some(worker) => worker.sockets()?,
            None => (
                Some(workers::bind_listening(
                    workers::resolve(host, port)?,
                    false,
                )?),
                None,
                None,
            ),
        };
        // Before the runtime, so that every I/O thread starts with the mask it then undoes.
        let threads = config.network_threads();
        let signal_mask = PhpThreadSignals::block(threads)?;
        let mut builder = match threads {
            0 => tokio::runtime::Builder::new_current_thread(),
            threads => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads);
                builder
            }
        };
        let runtime = builder
            .thread_name("surge-io")
            .on_thread_start(unblock_engine_signals)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the I/O threads: {e}"))?;
        let local_addr = match (&listener, &worker) {
            (Some(listener), _) => listener.local_addr().map_err(|e| e.to_string())?,
            (None, Some(worker)) => worker.addr,
            (None, None) => unreachable!("only a pool's task worker has no listener"),
        };
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let (tx, rx) = mpsc::channel(config.event_queue_size);
        let fds = match &worker {
            Some(w) if listener.is_some() => FdSource::worker(w),
            _ => FdSource::single(),
        };
        let shared = Arc::new(Shared::new(config, tx, fds));
        let (peers, bus) = match &worker {
            Some(w) => (
                Some(Peers::new(&w.bus_dir, w.id, w.count, w.processes)),
                // A task worker is sent only messages for its PHP (sendMessage): the others
                // ask the workers about connections.
                Some(BusServer::start(
                    &w.bus_dir,
                    w.id,
                    shared.clone(),
                    local_addr.port(),
                )?),
            ),
            None => (None, None),
        };
        for &handler in handlers {
            handler_flag(&shared, handler).store(true, Relaxed);
        }
        let redis = match shared.config.redis.clone() {
            Some(url) => {
                let _guard = runtime.enter();
                let c = &shared.config;
                let bridge = RedisBridge::start(&url, &c.redis_prefix, c.redis_forward, &shared)?;
                if shared.pusher.enabled() && c.redis_forward {
                    // Pusher clients subscribe themselves: every broadcast may have one.
                    bridge.subscribe("*");
                }
                Some(bridge)
            }
            None => None,
        };
        let accepting = listener.map(|listener| Accepting {
            // Now: it keeps the socket out of what PHP forks, workerStart included.
            not_inherited: Listening::new(listener.as_raw_fd()),
            listener,
            scheme,
            tls,
        });
        let task_done = Arc::new(Notify::new());
        let task_place = task_queue.map(|(queue, place)| {
            tell_of_a_lost_task(&place, peers.as_ref());
            let taking = tasks::take_tasks(queue, place.clone(), shared.clone(), task_done.clone());
            runtime.spawn(taking);
            place
        });
        runtime.spawn(heartbeat::run(shared.clone()));
        runtime.spawn(memory::run(shared.clone()));
        runtime.spawn(crate::pusher::sweep(shared.clone()));
        runtime.spawn(crate::pusher::post_webhooks(shared.clone()));
        // PHP's own signal handling (zend_signal) would kill the process on these signals even
        // with Tokio's handler chained after it: give them back their default action first.
        default_signal_actions();
        signal_arrival::reset();
        signal_arrival::time_signals().map_err(|e| format!("cannot watch signals: {e}"))?;
        runtime
            .block_on(async { watch_signals(shared.clone(), worker.is_some()) })
            .map_err(|e| format!("cannot watch signals: {e}"))?;
        reinstall_signal_handler();
        let stop_watchdog = StopWatchdog::start(shared.config.shutdown_timeout, worker.is_none())?;
        let alone = worker.is_none();
        let engine = Engine {
            shared,
            runtime: Some(runtime),
            accepting: Mutex::new(accepting),
            events: Mutex::new(rx),
            timers: Default::default(),
            local_addr,
            redis,
            peers,
            bus,
            task_sender,
            task_done,
            task_place,
            last_pushed: Mutex::default(),
            _signal_mask: signal_mask,
            _stop_watchdog: stop_watchdog,
            made_in: MadeIn::here(),
        };
        if alone {
            engine.accept_connections()?;
        }
        Ok(engine)
    }

    /// Starts taking connections, once: a server of one process as it starts, a worker once its
    /// `workerStart` has run (a replacement's socket listens from then on: see
    /// `workers::listen`). Nothing for a task worker, which takes none.
    pub fn accept_connections(&self) -> Result<(), String> {
        let Some(accepting) = self.accepting.lock().take() else {
            return Ok(());
        };
        if self.in_forked_child() {
            // A child PHP forked in workerStart that went on serving: the socket's number was
            // closed in it as it was forked, and may be another file's now.
            std::mem::forget(accepting);
            return Ok(());
        }
        let Accepting {
            listener,
            not_inherited,
            scheme,
            tls,
        } = accepting;
        let addr = self.local_addr;
        workers::listen(listener.as_fd(), addr)?;
        // Registered with the runtime once it listens: registered before, it was never told
        // of the connections that came (the socket's first readiness was a hang-up).
        let listener = {
            let _guard = self.runtime().enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?
        };
        let accept = accept_loop(listener, not_inherited, self.shared.clone(), tls);
        self.runtime().spawn(accept);
        log::info!(target: "surge", "listening on {scheme}://{addr}");
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn set_handler(&self, handler: Handler, present: bool) {
        handler_flag(&self.shared, handler).store(present, Relaxed);
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime lives until finish()")
    }

    /// The PHP thread's loop: hands `handle` the events in batches of up to `max`, as they
    /// come, until it returns false or the engine stops sending. `handle` runs inside the
    /// runtime, so with `worker_threads` 0 the network work goes on between batches on this
    /// thread, and what PHP pushes is written without waking another thread.
    ///
    /// With `worker_threads` 0 a connection task also calls `handle` itself, with a batch of one
    /// message, when nothing waits in the queue (see `inline_dispatch`).
    pub fn serve(&self, max: usize, mut handle: impl FnMut(&mut Vec<Event>) -> bool) {
        let mut rx = self.events.lock();
        let mut batch = Vec::with_capacity(max);
        // What `workerStart` listed is forgotten before the first batch.
        self.batch_done();
        let mut handle = |batch: &mut Vec<Event>| {
            let go_on = handle(batch);
            self.batch_done();
            go_on
        };
        let serving = Serving::new(&self.shared, &mut handle);
        let _installed = serving.install();
        self.runtime().block_on(async {
            while let Some(first) = serving.next(&mut rx).await {
                take_waiting(&mut rx, first, &mut batch, max);
                if !serving.handle(&mut batch) {
                    return;
                }
            }
        })
    }

    /// The callbacks of a batch of events have run (and the batch before `recv` takes the
    /// next): what they pushed to other workers' connections goes out, what they listed of
    /// them is forgotten (see `Peers::batch_done`).
    pub fn batch_done(&self) {
        self.last_pushed.lock().forget();
        if let Some(peers) = &self.peers {
            peers.batch_done();
        }
    }

    /// Writes the pushes made so far to other workers' connections, before what may reach the
    /// same clients by another way (a task, a Redis publish, an HTTP response whose client acts
    /// on it): see `Peers::write_pushes`.
    pub fn write_pushes(&self) {
        if let Some(peers) = &self.peers {
            peers.write_pushes();
        }
    }

    /// Moves up to `max` events into `batch`, waiting up to `timeout` (forever if None) for the
    /// first. Returns false if the wait timed out with nothing received.
    pub fn recv(&self, batch: &mut Vec<Event>, max: usize, timeout: Option<Duration>) -> bool {
        self.batch_done();
        let mut rx = self.events.lock();
        let first = match rx.try_recv() {
            Ok(event) => Some(event),
            Err(_) => self.runtime().block_on(async {
                match timeout {
                    Some(t) => tokio::time::timeout(t, rx.recv()).await.ok().flatten(),
                    None => rx.recv().await,
                }
            }),
        };
        let Some(first) = first else { return false };
        take_waiting(&mut rx, first, batch, max);
        true
    }

    /// The other worker that owns `fd`, if it is not this process's.
    fn elsewhere(&self, fd: u64) -> Option<(&Peers, usize)> {
        let peers = self.peers.as_ref()?;
        let owner = workers::owner(fd, peers.count())?;
        (owner != peers.me()).then_some((peers, owner))
    }

    /// Queues a message for one connection; never waits for the network. A connection of
    /// another worker is queued for it on the bus (see `bus::push_batches`): Ok once queued.
    pub fn push(&self, fd: u64, payload: Payload) -> Result<(), PushError> {
        let item = payload.into_outgoing();
        if let Some((peers, owner)) = self.elsewhere(fd) {
            return match peers.push(owner, fd, &item) {
                true => Ok(()),
                false => Err(PushError::Closed),
            };
        }
        let item = match item {
            Outgoing::Frame(frame) => {
                let frame = self.last_pushed.lock().share(frame);
                match inline_dispatch::reply(&self.shared, fd, frame) {
                    Ok(()) => return Ok(()),
                    Err(frame) => Outgoing::Frame(frame),
                }
            }
            control => control,
        };
        local::push(&self.shared, fd, item)
    }

    /// Queues one message for every established connection but `except`; the frame is encoded
    /// once and shared. Returns how many connections it was queued for.
    pub fn broadcast(&self, payload: Payload, except: &[u64]) -> usize {
        let item = payload.into_outgoing();
        let here = || local::broadcast(&self.shared, &item, except);
        match &self.peers {
            Some(peers) => peers.broadcast(&item, except, here),
            None => here(),
        }
    }

    /// Adds an established connection to a channel; false if `fd` is not open or already in it.
    pub fn join(&self, fd: u64, channel: &str) -> bool {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.join(owner, fd, channel),
            None => local::join(&self.shared, fd, channel),
        }
    }

    pub fn leave(&self, fd: u64, channel: &str) -> bool {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.leave(owner, fd, channel),
            None => local::leave(&self.shared, fd, channel),
        }
    }

    /// Queues one message (encoded once) for the members of `channel` but `except`.
    pub fn publish(&self, channel: &str, payload: Payload, except: &[u64]) -> usize {
        let item = payload.into_outgoing();
        let here = || local::publish(&self.shared, channel, &item, except);
        match &self.peers {
            Some(peers) => peers.publish(channel, &item, except, here),
            None => here(),
        }
    }

    /// Triggers a Pusher event on `channels` of the app `app_id` (the only one when None), as
    /// an HTTP API trigger would; Err says what was wrong with it. How many connections got it.
    pub fn pusher_trigger(
        &self,
        app_id: Option<&str>,
        channels: Vec<String>,
        event: String,
        data: String,
        except_socket_id: Option<String>,
    ) -> Result<usize, String> {
        let app = self.shared.pusher.app(app_id)?;
        crate::pusher::api::trigger_from_php(
            &self.shared,
            app,
            channels,
            event,
            data,
            except_socket_id,
        )
    }

    /// Channel names with member counts, sorted.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let here = self.shared.channels.list();
        match &self.peers {
            Some(peers) => peers
                .channels(here.into_iter().collect())
                .into_iter()
                .collect(),
            None => here,
        }
    }

    /// The members of `channel`, ascending.
    pub fn members(&self, channel: &str) -> Vec<u64> {
        let here = self.shared.channels.members(channel);
        match &self.peers {
            Some(peers) => sorted(peers.members(channel, here)),
            None => here,
        }
    }

    pub fn channels_of(&self, fd: u64) -> Vec<String> {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.channels_of(owner, fd),
            None => self.shared.channels.of(fd),
        }
    }

    /// The connection's socket id (see `Shared::socket_id`), if it exists.
    pub fn socket_id(&self, fd: u64) -> Option<String> {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.socket_id(owner, fd),
            None => local::socket_id(&self.shared, fd),
        }
    }

    /// The Redis bridge, if the `redis` setting is given.
    pub fn redis(&self) -> Option<&RedisBridge> {
        self.redis.as_deref()
    }

    /// PUBLISHes `payload` through the Redis bridge (see [`RedisBridge::publish`]), once the
    /// pushes made before are written: another worker may forward it to the same clients.
    /// False without a bridge.
    pub fn redis_publish(&self, channel: &str, payload: Bytes) -> bool {
        let Some(redis) = self.redis() else {
            return false;
        };
        self.write_pushes();
        redis.publish(channel, payload)
    }

    /// Starts the close handshake with `code`; false if `fd` is not open.
    pub fn disconnect(&self, fd: u64, code: u16, reason: &str) -> bool {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.disconnect(owner, fd, code, reason),
            None => local::disconnect(&self.shared, fd, code, reason),
        }
    }

    /// The connection exists (possibly closing).
    pub fn exists(&self, fd: u64) -> bool {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.exists(owner, fd),
            None => local::exists(&self.shared, fd),
        }
    }

    /// The connection is an open WebSocket (not closing).
    pub fn is_established(&self, fd: u64) -> bool {
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.is_established(owner, fd),
            None => local::is_established(&self.shared, fd),
        }
    }

    pub fn client_info(&self, fd: u64) -> Option<ClientInfo> {
        let port = self.local_addr.port();
        match self.elsewhere(fd) {
            Some((peers, owner)) => peers.client_info(owner, port, fd),
            None => local::client_info(&self.shared, port, fd),
        }
    }

    /// Established connections, ascending (every worker's).
    pub fn connections(&self) -> Vec<u64> {
        let here = self.shared.registry.open_fds();
        match &self.peers {
            Some(peers) => sorted(peers.connections(here)),
            None => here,
        }
    }

    /// Has the PHP thread's loop come round once more even with no event waiting (for the
    /// callables deferred by deferred ones). A full queue has it come round anyway.
    pub fn wake_php(&self) {
        let _ = self.shared.events.try_send(Event::Wake);
    }

    /// What the drain leaves open at its deadline: WebSocket clients that have not answered
    /// their close, HTTP connections, and those whose close events are on their way.
    pub fn open_at_stop(&self) -> usize {
        self.shared.live_connections()
    }

    /// At the drain's deadline: lets go of the WebSocket clients that have not answered their
    /// close, and gives the `close` events they would have queued (see `connection::cut_off`).
    pub fn cut_off(&self) -> Vec<Event> {
        crate::connection::cut_off(&self.shared)
    }

    /// Connections that ended whose `close` events are still on their way to the queue.
    pub fn closes_on_the_way(&self) -> usize {
        self.shared.closing.load(Acquire)
    }

    /// No WebSocket client, no TCP connection speaking HTTP or in its TLS handshake, and in a
    /// task worker no task being taken: the drain after a stop waits for this, so that requests
    /// under way get their answer and a task taken from the queue is run.
    pub fn is_idle(&self) -> bool {
        self.shared.live_connections() == 0 && !self.shared.taking_tasks.load(Acquire)
    }

    /// Counters since start, summed over every worker.
    pub fn stats(&self) -> StatsSnapshot {
        let here = local::stats(&self.shared);
        match &self.peers {
            Some(peers) => peers.stats(here),
            None => here,
        }
    }

    /// This process's worker id, and how many workers there are (0 of 1 without workers).
    pub fn worker(&self) -> (usize, usize) {
        self.peers.as_ref().map_or((0, 1), |p| (p.me(), p.count()))
    }

    /// Hands `data` to worker (or task worker) `worker` as [`Event::PipeMessage`] from this
    /// one; false when it cannot be reached.
    pub fn send_message(&self, worker: usize, data: &[u8]) -> bool {
        self.peers.as_ref().is_some_and(|p| p.pipe(worker, data))
    }

    /// A task worker (its id is `worker_num` or above).
    pub fn is_task_worker(&self) -> bool {
        let (id, count) = self.worker();
        id >= count
    }

    /// Queues a task for the task workers (see `tasks.rs`): this worker gets its result as
    /// [`Event::Finish`] with the same `task_id`; with `callback` (it keeps one for the
    /// result), an empty one if the task ends without a result. Waits while the queue is
    /// full, up to 5 s; the error is a message for the user.
    pub fn task(&self, task_id: u64, callback: bool, data: &[u8]) -> Result<(), String> {
        self.task_sender()?
            .send(self.worker().0, task_id, (false, callback), data)
    }

    /// Queues tasks (id, data) and waits up to `timeout` for their results, on this thread:
    /// None for one that did not come in time (it is dropped when it comes later). Other
    /// workers' requests to this one are answered meanwhile (by the bus's thread), its own
    /// network work waits with `worker_threads` 0. If one cannot be queued, the error: those
    /// queued before it still run, and their results are dropped.
    pub fn task_wait(
        &self,
        tasks: &[(u64, Vec<u8>)],
        timeout: Duration,
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let sender = self.task_sender()?;
        let results = &self.shared.task_results;
        let ids: Vec<u64> = tasks.iter().map(|(id, _)| *id).collect();
        ids.iter().for_each(|id| results.expect(*id));
        for (id, data) in tasks {
            if let Err(e) = sender.send(self.worker().0, *id, (true, false), data) {
                ids.iter().for_each(|id| results.forget(*id));
                return Err(e);
            }
        }
        // After a stop signal (seen here even while this thread is the runtime's, with
        // worker_threads 0) a result may still come, from a task running then, for as long as
        // the stop waits for its clients; past that the task waited for was dropped with the
        // queue, and the stop's watchdog would kill this worker waiting.
        let grace = self.shared.config.shutdown_timeout;
        let stopped = || signal_arrival::since_first().is_some_and(|t| t >= grace);
        Ok(results.wait(&ids, timeout, stopped))
    }

    /// The task queue, once the pushes made before the task are written: the task worker may
    /// push to the same clients.
    fn task_sender(&self) -> Result<&TaskSender, String> {
        let sender = (self.task_sender.as_ref())
            .ok_or_else(|| "there are no task workers to send tasks to".to_string())?;
        self.write_pushes();
        Ok(sender)
    }

    /// In a task worker: the task last handed over is finished; the next may be taken.
    pub fn task_done(&self) {
        if let Some(place) = &self.task_place {
            place.release();
        }
        self.task_done.notify_one();
    }

    /// Sends the result of task `task_id` to the worker that sent it (`reply_to` as the task
    /// came); false when that worker cannot be reached.
    pub fn finish(&self, reply_to: ReplyTo, task_id: u64, data: &[u8]) -> bool {
        // Released before it is sent: a death during the send loses the result unreported,
        // rather than have a NO_RESULT follow a result that arrived.
        if let Some(place) = &self.task_place {
            place.release();
        }
        self.peers
            .as_ref()
            .is_some_and(|p| p.finish(reply_to, task_id, data))
    }

    /// Sends `Event::Timer { id }` after `delay`, then every `every` if given, each time
    /// once `timer_ran` said PHP ran the one before (see `timers::Timers::add`).
    pub fn add_timer(&self, id: u64, delay: Duration, every: Option<Duration>) {
        // Those added while stopping never run, as those added before were cleared.
        if self.shared.is_stopping() {
            return;
        }
        let events = self.shared.events.clone();
        self.timers
            .add(self.runtime().handle(), events, id, delay, every);
    }

    /// PHP has run tick `id`, which it began at `began`.
    pub fn timer_ran(&self, id: u64, began: std::time::Instant) {
        self.timers.ran(id, began);
    }

    /// Stops a timer; false if it does not exist (or already fired, for a one-shot).
    pub fn clear_timer(&self, id: u64) -> bool {
        self.timers.clear(id)
    }

    /// Stops accepting and sends every client a close frame with `code` and `reason` (1001
    /// "server shutting down" when asked to stop). Connections then finish their close
    /// handshakes; `close` events keep arriving through `recv`.
    pub fn begin_shutdown(&self, code: u16, reason: &str) {
        let open = self.shared.registry.len();
        if !self.shared.begin_shutdown(code, reason) {
            return;
        }
        // A task worker has no clients to close.
        if !self.is_task_worker() {
            let s = if open == 1 { "" } else { "s" };
            log::info!(target: "surge", "shutting down: closing {open} connection{s}");
        }
        self.timers.clear_all();
    }

    /// How long ago the first SIGINT or SIGTERM came, whether or not its event has reached PHP.
    pub fn since_stop_signal(&self) -> Option<Duration> {
        signal_arrival::since_first()
    }

    /// Another stop signal came a second or more after the first (see `signal_arrival`).
    pub fn stop_signal_again(&self) -> bool {
        signal_arrival::again()
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shared.config.shutdown_timeout
    }
}

fn sorted(mut fds: Vec<u64>) -> Vec<u64> {
    fds.sort_unstable();
    fds
}

/// Puts `first` and then the events already waiting, up to `max` in all, into `batch`.
fn take_waiting(rx: &mut mpsc::Receiver<Event>, first: Event, batch: &mut Vec<Event>, max: usize) {
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

impl Engine {
    /// This is a child PHP forked (pcntl_fork): it has none of the runtime's threads.
    pub fn in_forked_child(&self) -> bool {
        self.made_in.forked()
    }
}

/// A worker's socket, bound before `workerStart`, listening and accepted on after it.
struct Accepting {
    /// Before `listener`, so that it is dropped before the socket closes.
    not_inherited: Listening,
    listener: std::net::TcpListener,
    scheme: &'static str,
    tls: Option<TlsAcceptor>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.in_forked_child() {
            // A child PHP forked (pcntl_fork) and now ending: it has none of the runtime's or
            // the bus's threads, and shutting them down would wait for them for ever. What they
            // hold goes with the process.
            std::mem::forget(self.runtime.take());
            // Its socket's number was closed in the child as it was forked.
            std::mem::forget(self.accepting.lock().take());
            std::mem::forget(self.bus.take());
            std::mem::forget(self.peers.take());
            std::mem::forget(self.redis.take());
            return;
        }
        // No other worker reaches this one's connections once it stops.
        drop(self.bus.take());
        if let Some(runtime) = &self.runtime {
            // What the callbacks of the stop published (a "gone offline" from `close` for each
            // client it closed, a last word from `workerStop`), and the webhooks' last events
            // (the channels the stop emptied, those of clients that never answered their close
            // included), go out before the runtime goes: for a moment at most (a Redis or an
            // endpoint that does not answer is not waited for), and not after a second stop
            // signal, which gives the process a second in all.
            crate::pusher::end_sessions(&self.shared);
            runtime.block_on(async {
                let deadline = tokio::time::Instant::now() + PUBLISHES_AT_STOP;
                if let Some(redis) = &self.redis {
                    let _ = tokio::time::timeout_at(deadline, redis.publishes_done()).await;
                }
                while !signal_arrival::again()
                    && crate::pusher::webhooks_pending(&self.shared) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            let left = crate::pusher::webhooks_pending(&self.shared);
            if left > 0 {
                log::warn!(target: "surge", "{left} webhook events were not posted before the stop");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
        // Tokio's signal handler stays installed after its runtime is gone and would swallow
        // the signals: give PHP back the default behaviour.
        default_signal_actions();
    }
}

/// How long a stopping engine waits for the Redis publishes its callbacks made, and for the
/// webhooks' last events.
const PUBLISHES_AT_STOP: Duration = Duration::from_secs(1);

/// The signals the engine takes (see `watch_signals`): SIGINT and SIGTERM stop it; SIGUSR1 and
/// SIGUSR2, a master's reload signals, are only logged here.
const ENGINE_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

fn engine_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in ENGINE_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn default_signal_actions() {
    for signal in ENGINE_SIGNALS {
        // SAFETY: SIG_DFL is a valid action for each of these signals.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// Tokio and signal-hook-registry install their handler for a signal once per process, and an
/// engine that ends gives the signals their default action back (`Engine::drop`): a second
/// server started later in the same process would die of its first SIGTERM. The handler as first
/// installed is kept here and put back for every later engine.
fn reinstall_signal_handler() {
    static INSTALLED: OnceLock<[libc::sigaction; 4]> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        ENGINE_SIGNALS.map(|signal| {
            // SAFETY: sigaction with no new action only fills `action`.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut action);
                action
            }
        })
    });
    for (signal, action) in ENGINE_SIGNALS.into_iter().zip(installed) {
        // SAFETY: an action read back from the kernel for this same signal.
        unsafe { libc::sigaction(signal, action, std::ptr::null_mut()) };
    }
}

fn unblock_engine_signals() {
    // SAFETY: a valid set; changes only the calling thread's mask.
    unsafe {
        libc::pthread_sigmask(
            libc::SIG_UNBLOCK,
            &engine_signal_set(),
            std::ptr::null_mut(),
        )
    };
}

/// While the engine runs, its signals (`ENGINE_SIGNALS`) are blocked on the thread that started
/// it (the PHP thread), so the kernel hands them to an I/O thread. Delivered to the PHP thread, they
/// would interrupt what a callback is doing: a sleep ends early, a blocking read fails with
/// EINTR. Dropping this gives the thread its mask back.
struct PhpThreadSignals {
    previous: libc::sigset_t,
    /// With no I/O threads (`worker_threads` 0), a thread that does nothing but take the
    /// signals (Tokio's handler tells the runtime); it ends when this is dropped.
    _catcher: Option<std::sync::mpsc::Sender<()>>,
}

impl PhpThreadSignals {
    fn block(io_threads: usize) -> Result<Self, String> {
        // SAFETY: valid sets; changes only the calling thread's mask.
        let previous = unsafe {
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &engine_signal_set(), &mut previous);
            previous
        };
        let mut signals = PhpThreadSignals {
            previous,
            _catcher: None,
        };
        if io_threads == 0 {
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            std::thread::Builder::new()
                .name("surge-signals".into())
                .spawn(move || {
                    unblock_engine_signals();
                    let _ = stopped.recv();
                })
                .map_err(|e| format!("cannot start the signal thread: {e}"))?;
            signals._catcher = Some(stop);
        }
        Ok(signals)
    }
}

impl Drop for PhpThreadSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `block` on this same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// In a task worker started in the place of one that died: the task that one was running is
/// lost; its sender is told (an empty result, `tasks::NO_RESULT`) when it waits for it or keeps
/// a callback for it, so that it stops waiting or lets the callback go.
fn tell_of_a_lost_task(place: &TaskPlace, peers: Option<&Peers>) {
    let Some((reply_to, task_id)) = place.take_lost() else {
        return;
    };
    log::warn!(target: "surge", "task {task_id} of worker {} was lost: the task worker running it died", reply_to.worker);
    if reply_to.waited || reply_to.callback {
        if let Some(peers) = peers {
            peers.finish(reply_to, task_id, tasks::NO_RESULT);
        }
    }
}

/// SIGINT and SIGTERM become [`Event::Signal`]. SIGUSR1 and SIGUSR2 ask a master to reload its
/// workers (`supervisor.rs` in the extension takes them there); sent to a server of one process
/// or to a worker, whose default action would end it, they are logged and ignored.
fn watch_signals(shared: Arc<Shared>, in_pool: bool) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => signal_arrival::terminate_name(),
                _ = usr1.recv() => {
                    ignore_reload_signal("SIGUSR1", in_pool);
                    continue;
                }
                _ = usr2.recv() => {
                    ignore_reload_signal("SIGUSR2", in_pool);
                    continue;
                }
            };
            shared.signalled.send_replace(true);
            let again = signal_arrival::again();
            // Sent apart: waiting here for room in a full event queue, the next signal would
            // be seen (and timed) only once this one is queued.
            let events = shared.events.clone();
            tokio::spawn(async move { events.send(Event::Signal { name, again }).await });
        }
    });
    Ok(())
}

fn ignore_reload_signal(name: &str, in_pool: bool) {
    let why = match in_pool {
        true => "a reload is asked of the master process ($server->master_pid)",
        false => "a server of one process has no worker processes to reload",
    };
    log::warn!(target: "surge", "{name} ignored: {why}");
}

fn handler_flag(shared: &Shared, handler: Handler) -> &AtomicBool {
    let h = &shared.handlers;
    match handler {
        Handler::Open => &h.open,
        Handler::Message => &h.message,
        Handler::Close => &h.close,
        Handler::Request => &h.request,
        Handler::Handshake => &h.handshake,
        Handler::Redis => &h.redis,
        Handler::PusherSubscribe => &h.pusher_subscribe,
        Handler::PusherUnsubscribe => &h.pusher_unsubscribe,
        Handler::PusherClientEvent => &h.pusher_client_event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame of the last push is shared with the pushes of the same message after it only
    /// until the batch of callbacks that made it is done: kept longer, a large message would
    /// stay in memory until something else is pushed.
    #[test]
    fn the_last_pushed_frame_is_forgotten_once_its_batch_is_done() {
        let mut config = Config::default();
        config
            .apply("log_level", &crate::Value::Str("off".into()))
            .unwrap();
        let engine = Engine::start(config, "127.0.0.1", 0, &[], None).unwrap();
        let pushed = || {
            // No such connection: the frame is made, and kept, all the same.
            let _ = engine.push(12345, Payload::text("a message"));
            engine.last_pushed.lock().holds_a_frame()
        };
        assert!(pushed());
        engine.batch_done();
        assert!(!engine.last_pushed.lock().holds_a_frame());
        // The PHP thread's next wait for events ends the batch too.
        assert!(pushed());
        assert!(!engine.recv(&mut Vec::new(), 1, Some(Duration::ZERO)));
        assert!(!engine.last_pushed.lock().holds_a_frame());
    }
}
