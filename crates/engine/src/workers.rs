//! Worker processes (`worker_num` > 1). The process that calls start() makes a [`Pool`] before
//! it forks anything: a listening socket per worker, all on one port with SO_REUSEPORT (the
//! kernel spreads new connections over them; from one shared socket, the worker that woke first
//! took every connection of a burst), the directory of the local bus (see `bus.rs`), and the fd
//! counters. A worker's socket lives in that worker alone (the master closes its copy once it
//! has forked the worker, and binds a new one for a replacement): the kernel stops sending
//! connections to it when the worker stops serving, rather than queueing them for a replacement
//! that may take long to start or never start (a broken deploy). Each worker's engine then starts from its
//! [`Worker`]. fds are striped: worker `w` of `n` hands out `w + 1`, `w + 1 + n`, `w + 1 + 2n`
//! ..., so any worker knows from an fd which worker owns it, and a worker restarted in a dead
//! one's place goes on counting where it stopped (the counters are in shared memory), so fds
//! are never reused while the server runs.
//!
//! With `task_worker_num`, ids `worker_num` and up are task workers (see `tasks.rs`): no
//! listening socket, no connections, no bus server of their own; they reach the workers'
//! connections over the bus as any worker does.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use surge_table::Mapping;

use crate::config::Config;
use crate::logging;
use crate::tasks::{RunningTasks, TaskPlace, TaskQueue, TaskSender};

/// What the process calling start() holds while its workers serve.
pub struct Pool {
    count: usize,
    task_count: usize,
    addr: SocketAddr,
    /// The listening sockets of the workers about to be forked (see the module's comment).
    listeners: RefCell<Vec<Option<TcpListener>>>,
    bus_dir: BusDir,
    counters: Arc<SharedCounters>,
    tasks: Option<(TaskQueue, Arc<RunningTasks>)>,
}

/// What one worker's engine starts from (see `Engine::start`).
pub struct Worker {
    pub id: usize,
    /// Workers, task workers left out.
    pub count: usize,
    /// Workers and task workers.
    pub(crate) processes: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) bus_dir: PathBuf,
    pub(crate) counters: Arc<SharedCounters>,
    pub(crate) role: Role,
}

/// A worker's listening socket (none in a task worker), the end of the task queue it sends
/// tasks on (with task workers), and the end a task worker takes them from with its place in
/// [`RunningTasks`].
pub(crate) type Sockets = (
    Option<TcpListener>,
    Option<TaskSender>,
    Option<(std::os::unix::net::UnixDatagram, Arc<TaskPlace>)>,
);

impl Worker {
    pub(crate) fn sockets(&self) -> Result<Sockets, String> {
        Ok(match &self.role {
            Role::Serving { listener, tasks } => (
                Some(
                    listener
                        .try_clone()
                        .map_err(|e| format!("cannot share the listening socket: {e}"))?,
                ),
                tasks.as_ref().map(TaskSender::try_clone).transpose()?,
                None,
            ),
            Role::Tasks(queue, place) => (
                None,
                None,
                Some((
                    queue
                        .try_clone()
                        .map_err(|e| format!("cannot share the task queue: {e}"))?,
                    place.clone(),
                )),
            ),
        })
    }
}

pub(crate) enum Role {
    /// Accepts connections; may send tasks.
    Serving {
        listener: TcpListener,
        tasks: Option<TaskSender>,
    },
    /// Takes tasks from this end of the queue, noting the one it runs in its place.
    Tasks(std::os::unix::net::UnixDatagram, Arc<TaskPlace>),
}

impl Pool {
    /// Binds `host:port` and prepares for `config.worker_num` workers (and starts the log, for
    /// the master's lines). Errors are messages for the user.
    pub fn new(config: &Config, host: &str, port: u16) -> Result<Pool, String> {
        logging::init(config.log_level, logging::Role::Master);
        let count = config.worker_num;
        // Bound first without SO_REUSEPORT, which fails if anything listens on the port, even
        // another server's workers (sockets that all set SO_REUSEPORT share a port silently).
        // Port 0 picks a free port here, which the workers' sockets then take.
        let addr = bind_listening(resolve(host, port)?, false)?
            .local_addr()
            .map_err(|e| e.to_string())?;
        // All bound now, so that start() fails at once if they cannot be.
        let listeners = (0..count)
            .map(|_| bind_listening(addr, true).map(Some))
            .collect::<Result<_, _>>()?;
        let tasks = match config.task_worker_num {
            0 => None,
            tasks => Some((TaskQueue::new()?, RunningTasks::new(tasks)?)),
        };
        Ok(Pool {
            count,
            task_count: config.task_worker_num,
            addr,
            listeners: RefCell::new(listeners),
            bus_dir: BusDir::create()?,
            counters: Arc::new(SharedCounters::new(count)?),
            tasks,
        })
    }

    /// Workers and task workers: the processes to fork, with ids from 0.
    pub fn processes(&self) -> usize {
        self.count + self.task_count
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// In the master, before it forks worker `id`: its socket, bound anew for a replacement,
    /// which listens once it serves if other workers take the new clients meanwhile; the only
    /// worker's listens at once, its clients waiting for its boot rather than being refused.
    pub fn prepare(&self, id: usize) -> Result<(), String> {
        if let Some(slot @ None) = self.listeners.borrow_mut().get_mut(id) {
            *slot = Some(match self.count {
                1 => bind_listening(self.addr, true)?,
                _ => bind(self.addr, true)?,
            });
        }
        Ok(())
    }

    /// In the master, once worker `id` is forked (the worker alone holds its socket now), or
    /// could not be (a socket nobody accepts on must not listen).
    pub fn forked(&self, id: usize) {
        if let Some(slot) = self.listeners.borrow_mut().get_mut(id) {
            *slot = None;
        }
    }

    /// What worker `id` needs (a task worker from `worker_num` on); called in the forked one,
    /// which keeps its own listening socket and closes those of the workers forked after it.
    pub fn worker(&self, id: usize) -> Result<Worker, String> {
        if id >= self.processes() {
            return Err(format!("there is no worker {id}"));
        }
        let mut listeners = self.listeners.borrow_mut();
        let listener = match id < self.count {
            true => Some(listeners[id].take().ok_or("its listening socket is gone")?),
            false => None,
        };
        listeners.iter_mut().for_each(|other| *other = None);
        drop(listeners);
        let role = match (listener, &self.tasks) {
            (Some(listener), tasks) => Role::Serving {
                listener,
                tasks: tasks
                    .as_ref()
                    .map(|(t, _)| t.sender(&self.bus_dir.path))
                    .transpose()?,
            },
            (None, Some((tasks, running))) => Role::Tasks(
                tasks.taker()?,
                Arc::new(TaskPlace::new(running, id - self.count)),
            ),
            (None, None) => unreachable!("ids past the workers' are task workers'"),
        };
        Ok(Worker {
            id,
            count: self.count,
            processes: self.processes(),
            addr: self.local_addr(),
            bus_dir: self.bus_dir.path.clone(),
            counters: self.counters.clone(),
            role,
        })
    }
}

pub(crate) fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("host '{host}' has no address"))
}

/// A listening socket (see [`bind`]).
pub(crate) fn bind_listening(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, String> {
    let socket = bind(addr, reuse_port)?;
    listen(socket.as_fd(), addr)?;
    Ok(socket)
}

/// A socket bound with SO_REUSEADDR (and SO_REUSEPORT for a worker's), not listening yet (see
/// [`listen`]), not registered with any runtime (so that it can be made before forking).
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    let bind = || -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    bind().map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Has a bound socket listen, with the longest backlog the kernel allows (net.core.somaxconn;
/// 1024 overflowed when 10k clients came back at once after a restart, each overflow a client
/// waiting 1-3 s to retry its SYN). A replacement worker's listens once its `workerStart` has
/// run (`Engine::accept_connections`): the kernel hands a listening socket its share of new
/// connections, and one that died in `workerStart` (a broken deploy, started again every
/// second) dropped them all. The first workers' listen from the start: a port nothing listens
/// on looks free to another server's check (`Pool::new`), whose workers would then share it.
pub(crate) fn listen(socket: BorrowedFd<'_>, addr: SocketAddr) -> Result<(), String> {
    socket2::SockRef::from(&socket)
        .listen(i32::MAX)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Where fds come from: counted up from 1 in a single process, striped over workers.
pub(crate) struct FdSource {
    counter: Counter,
    stride: u64,
    offset: u64,
}

enum Counter {
    Own(AtomicU64),
    Shared(Arc<SharedCounters>, usize),
}

impl FdSource {
    pub(crate) fn single() -> Self {
        FdSource {
            counter: Counter::Own(AtomicU64::new(0)),
            stride: 1,
            offset: 0,
        }
    }

    pub(crate) fn worker(worker: &Worker) -> Self {
        FdSource {
            counter: Counter::Shared(worker.counters.clone(), worker.id),
            stride: worker.count as u64,
            offset: worker.id as u64,
        }
    }

    pub(crate) fn next(&self) -> u64 {
        let n = match &self.counter {
            Counter::Own(n) => n.fetch_add(1, Relaxed),
            Counter::Shared(counters, id) => counters.get(*id).fetch_add(1, Relaxed),
        };
        n * self.stride + self.offset + 1
    }
}

/// The worker that owns `fd`, of `count` (fd 0 never exists: None).
pub(crate) fn owner(fd: u64, count: usize) -> Option<usize> {
    fd.checked_sub(1).map(|n| (n % count as u64) as usize)
}

/// One atomic counter a worker, in memory shared with every process forked after it was made.
pub(crate) struct SharedCounters(Mapping);

impl SharedCounters {
    fn new(count: usize) -> Result<Self, String> {
        let mapping = Mapping::new(count * std::mem::size_of::<AtomicU64>());
        mapping.map(SharedCounters).map_err(|e| e.to_string())
    }

    fn get(&self, i: usize) -> &AtomicU64 {
        &self.0.words()[i]
    }
}

/// A directory only this user can enter, holding one Unix socket per worker and the data of
/// large tasks on their way (see `tasks.rs`). Removed by the process that made it (a forked
/// worker's copy of the handle leaves it alone); its `lock` file is locked while the master
/// or any of its workers lives (they share the lock), so that a master killed outright can
/// be told from a live one.
struct BusDir {
    path: PathBuf,
    owner: u32,
    _lock: std::fs::File,
}

const BUS_DIR_PREFIX: &str = "surge-bus.";
const BUS_DIR_LOCK: &str = "lock";

impl BusDir {
    fn create() -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        remove_dead_masters_dirs();
        let dir = tempfile::Builder::new()
            .prefix(BUS_DIR_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| format!("cannot make the workers' socket directory: {e}"))?;
        let lock = std::fs::File::create(dir.path().join(BUS_DIR_LOCK))
            .ok()
            .filter(try_lock)
            .ok_or_else(|| format!("cannot lock {}", dir.path().display()))?;
        Ok(BusDir {
            // Removal is ours (see Drop).
            path: dir.keep(),
            owner: std::process::id(),
            _lock: lock,
        })
    }
}

/// Takes the file's lock, if nobody holds it.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we hold open.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A master killed outright (SIGKILL, the OOM killer) leaves its directory behind, with the
/// data of any large task on its way: the next master removes those whose lock nobody holds
/// (a pid would not do: another PID namespace, a container sharing /tmp, has its own). Those
/// without a lock file (being made) are left alone.
fn remove_dead_masters_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = (entry.file_name().to_str()).is_some_and(|n| n.starts_with(BUS_DIR_PREFIX));
        let lock = std::fs::File::open(entry.path().join(BUS_DIR_LOCK));
        if ours && lock.is_ok_and(|lock| try_lock(&lock)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for BusDir {
    fn drop(&mut self) {
        if std::process::id() == self.owner {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The bus socket of worker `id`.
pub(crate) fn socket_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Config {
        Config {
            worker_num: n,
            ..Config::default()
        }
    }

    #[test]
    fn a_port_in_use_is_refused_even_by_sockets_that_share_it() {
        let pool = Pool::new(&workers(2), "127.0.0.1", 0).unwrap();
        let port = pool.local_addr().port();
        let err = Pool::new(&workers(2), "127.0.0.1", port).err().unwrap();
        assert!(
            err.starts_with(&format!("cannot listen on 127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn a_replacement_listens_at_once_only_when_it_is_the_only_worker() {
        let connects = |addr| std::net::TcpStream::connect(addr).is_ok();
        // Two workers, both gone: worker 1's replacement takes no client before it serves.
        let pool = Pool::new(&workers(2), "127.0.0.1", 0).unwrap();
        pool.forked(0);
        pool.forked(1);
        pool.prepare(1).unwrap();
        assert!(!connects(pool.local_addr()));
        // The only worker's: its clients wait for it in the queue.
        let pool = Pool::new(&workers(1), "127.0.0.1", 0).unwrap();
        pool.forked(0);
        pool.prepare(0).unwrap();
        assert!(connects(pool.local_addr()));
    }

    #[test]
    fn striped_fds_name_their_owner_and_continue_after_a_restart() {
        let pool = Pool::new(&workers(3), "127.0.0.1", 0).unwrap();
        let first = FdSource::worker(&pool.worker(1).unwrap());
        assert_eq!([first.next(), first.next()], [2, 5]);
        // A worker restarted in the place of worker 1 (on a socket bound anew) goes on from its
        // counter.
        assert!(pool.worker(1).is_err(), "its socket went with the first");
        pool.prepare(1).unwrap();
        let restarted = FdSource::worker(&pool.worker(1).unwrap());
        assert_eq!(restarted.next(), 8);
        pool.prepare(0).unwrap();
        let zero = FdSource::worker(&pool.worker(0).unwrap());
        assert_eq!(zero.next(), 1);
        for (fd, id) in [(1, 0), (2, 1), (3, 2), (8, 1), (9, 2)] {
            assert_eq!(owner(fd, 3), Some(id), "fd {fd}");
        }
        assert_eq!(owner(0, 3), None);
        let single = FdSource::single();
        assert_eq!([single.next(), single.next()], [1, 2]);
    }

    #[test]
    fn task_workers_come_after_the_workers_and_take_from_the_queue() {
        let config = Config {
            task_worker_num: 2,
            ..workers(2)
        };
        let pool = Pool::new(&config, "127.0.0.1", 0).unwrap();
        assert_eq!(pool.processes(), 4);
        let serving = pool.worker(1).unwrap();
        let Role::Serving {
            tasks: Some(sender),
            ..
        } = serving.role
        else {
            panic!("worker 1 serves and sends tasks")
        };
        let Role::Tasks(taker, _) = pool.worker(3).unwrap().role else {
            panic!("worker 3 takes tasks")
        };
        sender.send(1, 5, (false, false), b"job").unwrap();
        let mut buffer = [0u8; 64];
        let n = taker.recv(&mut buffer).unwrap();
        assert!(buffer[..n].ends_with(b"\0job"), "the flags, then the data");
        assert!(pool.worker(4).is_err());
        let Role::Serving { tasks: None, .. } = Pool::new(&workers(2), "127.0.0.1", 0)
            .unwrap()
            .worker(0)
            .unwrap()
            .role
        else {
            panic!("no task workers, no task queue")
        };
    }

    #[test]
    fn the_bus_directory_is_private_and_removed_by_its_maker() {
        use std::os::unix::fs::PermissionsExt;
        let pool = Pool::new(&workers(2), "127.0.0.1", 0).unwrap();
        let path = pool.bus_dir.path.clone();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_ne!(pool.local_addr().port(), 0);
        drop(pool);
        assert!(!path.exists());
    }
}
