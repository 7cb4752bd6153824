//! Task workers (`task_worker_num`): processes that run what the workers hand over with
//! `task()`. The queue is one Unix datagram socket pair that the master makes before it forks:
//! every worker sends on one end, every task worker receives on the other, and the kernel hands
//! each datagram to one receiver. A task worker takes the next task only once its PHP thread
//! has finished the one before, so a task waits for the first task worker that is free, never
//! behind a slow task while another task worker idles. The result goes back over the bus to
//! the worker that sent the task (`bus.rs`).
//!
//! A datagram is the sending worker's id and the task id (8 bytes each), a flags byte, then the
//! data, or, for data over [`INLINE_MAX`] ([`IN_FILE`]), the path of a file holding it (in the
//! bus's private directory; the task worker that takes it removes it). [`WAITED`] marks a task
//! whose sender waits for its result (`taskwait()`): the result goes to [`TaskResults`], not to
//! PHP's finish callback. [`CALLBACK`] marks one whose sender keeps a callback for its result
//! (`task()` with `$finish_callback`): if such a task, or a waited one, ends without a result,
//! an empty one ([`NO_RESULT`]) says so, sent by the task worker, or by the one started in its
//! place if it died (see [`RunningTasks`]).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use surge_table::Mapping;
use tokio::sync::Notify;

use crate::events::{Event, ReplyTo, Task};
use crate::shared::Shared;
use crate::unix_send;

/// Data up to this size travels in the datagram itself; larger data goes through a file.
const INLINE_MAX: usize = 8 << 10;
/// The sending worker (u64), its process id (u32), the task id (u64), the flags (u8).
const HEADER: usize = 21;
const IN_FILE: u8 = 1;
const WAITED: u8 = 2;
const CALLBACK: u8 = 4;
/// The bytes of tasks not yet taken that the queue holds (the kernel's limit, `wmem_max`,
/// may be lower); a task sent while it is full waits for room up to [`SEND_WAIT`].
const QUEUE_BYTES: usize = 4 << 20;
const SEND_WAIT: Duration = Duration::from_secs(5);
/// The most data one worker keeps in task files not yet taken (the queue counts a file by its
/// name only); a task past it waits for room up to [`SEND_WAIT`] too.
const FILE_BYTES: usize = 64 << 20;

/// The result a task that ended without one sends when its sender keeps a callback for it or
/// waits for it: no data at all (a result is at least its kind byte).
pub const NO_RESULT: &[u8] = b"";

/// What each task worker is running, in memory shared by the master's children (made before
/// the fork): the task worker started in the place of one that died with a task (a crash, the
/// OOM killer, a reload's kill past its time) finds it there and tells its sender, which would
/// otherwise keep its finish callback for ever, or wait out its taskwait.
pub(crate) struct RunningTasks(Mapping);

/// Words of a task worker's place: the sender's worker id plus one (0: no task) with the flags
/// in the top byte, the sender's pid, the task id.
const PLACE_WORDS: usize = 3;

impl RunningTasks {
    pub(crate) fn new(task_workers: usize) -> Result<Arc<Self>, String> {
        let mapping = Mapping::new(task_workers * PLACE_WORDS * 8).map_err(|e| e.to_string())?;
        Ok(Arc::new(RunningTasks(mapping)))
    }
}

/// One task worker's place in [`RunningTasks`], written only by the task worker holding it.
pub(crate) struct TaskPlace {
    tasks: Arc<RunningTasks>,
    index: usize,
}

impl TaskPlace {
    pub(crate) fn new(tasks: &Arc<RunningTasks>, index: usize) -> Self {
        TaskPlace {
            tasks: tasks.clone(),
            index,
        }
    }

    fn words(&self) -> &[AtomicU64] {
        &self.tasks.0.words()[self.index * PLACE_WORDS..][..PLACE_WORDS]
    }

    /// The task handed to PHP (released by `Engine::finish` or `Engine::task_done`, on the PHP
    /// thread, which the task's event reaches after this).
    fn hold(&self, reply_to: ReplyTo, task_id: u64) {
        let w = self.words();
        w[1].store(u64::from(reply_to.pid), Relaxed);
        w[2].store(task_id, Relaxed);
        let flags =
            if reply_to.waited { WAITED } else { 0 } | if reply_to.callback { CALLBACK } else { 0 };
        w[0].store(
            (reply_to.worker as u64 + 1) | u64::from(flags) << 56,
            Release,
        );
    }

    /// The task is done with (its result sent, or PHP finished it).
    pub(crate) fn release(&self) {
        self.words()[0].store(0, Release);
    }

    /// The task the task worker before this one held when it died, taken out.
    pub(crate) fn take_lost(&self) -> Option<(ReplyTo, u64)> {
        let w = self.words();
        let head = w[0].swap(0, Acquire);
        let flags = (head >> 56) as u8;
        let reply_to = ReplyTo {
            worker: ((head & ((1 << 56) - 1)).checked_sub(1)?) as usize,
            pid: w[1].load(Relaxed) as u32,
            waited: flags & WAITED != 0,
            callback: flags & CALLBACK != 0,
        };
        Some((reply_to, w[2].load(Relaxed)))
    }
}

/// Both ends of the queue, made before the fork (every process keeps both).
pub(crate) struct TaskQueue {
    send: UnixDatagram,
    take: UnixDatagram,
}

impl TaskQueue {
    pub(crate) fn new() -> Result<Self, String> {
        let (send, take) =
            UnixDatagram::pair().map_err(|e| format!("cannot make the task queue: {e}"))?;
        let bytes = QUEUE_BYTES as libc::c_int;
        // SAFETY: a valid socket and an int option of the size given. Clamped by the kernel.
        unsafe {
            libc::setsockopt(
                send.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(TaskQueue { send, take })
    }

    /// A worker's end: it sends tasks, data over `INLINE_MAX` through files in `dir`.
    pub(crate) fn sender(&self, dir: &Path) -> Result<TaskSender, String> {
        let socket = self.send.try_clone().map_err(|e| e.to_string())?;
        Ok(TaskSender {
            socket,
            dir: dir.to_owned(),
            wait: SEND_WAIT,
            files: Default::default(),
        })
    }

    /// A task worker's end.
    pub(crate) fn taker(&self) -> Result<UnixDatagram, String> {
        self.take.try_clone().map_err(|e| e.to_string())
    }
}

pub(crate) struct TaskSender {
    socket: UnixDatagram,
    dir: PathBuf,
    /// How long a task waits for room in a full queue.
    wait: Duration,
    /// This worker's task files not yet taken.
    files: parking_lot::Mutex<QueuedFiles>,
}

/// Task files sent and maybe not yet taken, oldest first, and their bytes in all.
#[derive(Default)]
struct QueuedFiles {
    files: VecDeque<(PathBuf, usize)>,
    bytes: usize,
}

impl QueuedFiles {
    /// Forgets those a task worker has taken (it removes the file), oldest first: the queue
    /// hands them out in order, so this stops at the first still there. `all`: looks at every
    /// one (a task worker killed before it removed its file would hold up the rest).
    fn forget_taken(&mut self, all: bool) {
        while let Some((path, len)) = self.files.front() {
            if path.exists() {
                break;
            }
            self.bytes -= len;
            self.files.pop_front();
        }
        if all {
            let mut bytes = 0;
            self.files.retain(|(path, len)| {
                let queued = path.exists();
                bytes += if queued { *len } else { 0 };
                queued
            });
            self.bytes = bytes;
        }
    }
}

impl TaskSender {
    pub(crate) fn try_clone(&self) -> Result<Self, String> {
        Ok(TaskSender {
            socket: self
                .socket
                .try_clone()
                .map_err(|e| format!("cannot share the task queue: {e}"))?,
            dir: self.dir.clone(),
            wait: self.wait,
            files: Default::default(),
        })
    }

    /// Queues a task; waits while the queue is full, up to `wait`. The error is a message
    /// for the user.
    pub(crate) fn send(
        &self,
        worker: usize,
        task_id: u64,
        (waited, callback): (bool, bool),
        data: &[u8],
    ) -> Result<(), String> {
        let mut datagram = Vec::with_capacity(HEADER + data.len().min(INLINE_MAX + 64));
        datagram.extend_from_slice(&(worker as u64).to_be_bytes());
        datagram.extend_from_slice(&std::process::id().to_be_bytes());
        datagram.extend_from_slice(&task_id.to_be_bytes());
        let flags = if waited { WAITED } else { 0 } | if callback { CALLBACK } else { 0 };
        let file = match data.len() > INLINE_MAX {
            false => {
                datagram.push(flags);
                datagram.extend_from_slice(data);
                None
            }
            true => {
                self.wait_for_file_room(data.len())?;
                let path = self.write_file(data)?;
                datagram.push(flags | IN_FILE);
                datagram.extend_from_slice(path.as_os_str().as_encoded_bytes());
                Some(path)
            }
        };
        let sent = self.send_waiting(&datagram);
        match (&sent, file) {
            (Ok(()), Some(path)) => {
                let mut queued = self.files.lock();
                queued.bytes += data.len();
                queued.files.push_back((path, data.len()));
            }
            (Err(_), Some(path)) => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
        sent
    }

    /// Waits up to `wait` until `len` more bytes fit in [`FILE_BYTES`] (one task file always
    /// does when none is queued).
    fn wait_for_file_room(&self, len: usize) -> Result<(), String> {
        let deadline = std::time::Instant::now() + self.wait;
        // Every file is looked at once a wait (thousands of them, maybe), else only the oldest.
        let mut all = true;
        loop {
            {
                let mut queued = self.files.lock();
                let over = |q: &QueuedFiles| q.bytes > 0 && q.bytes + len > FILE_BYTES;
                queued.forget_taken(false);
                if !over(&queued) {
                    return Ok(());
                }
                if std::mem::take(&mut all) {
                    queued.forget_taken(true);
                    if !over(&queued) {
                        return Ok(());
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the task data waiting in files stayed over {} MiB for {:?}: the task workers are behind",
                    FILE_BYTES >> 20,
                    self.wait
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn write_file(&self, data: &[u8]) -> Result<PathBuf, String> {
        let mut file = tempfile::Builder::new()
            .prefix("task.")
            .tempfile_in(&self.dir)
            .map_err(|e| format!("cannot write the task's data: {e}"))?;
        file.write_all(data)
            .map_err(|e| format!("cannot write the task's data: {e}"))?;
        let (_, path) = file
            .keep()
            .map_err(|e| format!("cannot keep the task's data: {e}"))?;
        Ok(path)
    }

    fn send_waiting(&self, datagram: &[u8]) -> Result<(), String> {
        let fd = self.socket.as_raw_fd();
        let deadline = std::time::Instant::now() + self.wait;
        loop {
            match unix_send::send_now(fd, datagram) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !unix_send::wait_for_room(fd, deadline) {
                        return Err(format!(
                            "the task queue stayed full for {:?}: the task workers are behind",
                            self.wait
                        ));
                    }
                }
                Err(e) => return Err(format!("cannot queue the task: {e}")),
            }
        }
    }
}

/// A task worker's loop on its runtime: takes a task, hands it to PHP as [`Event::Task`] and
/// waits for `done` (PHP finished it) before it takes the next. Once the stop begins it takes
/// no more: the tasks left in the queue are for the other task workers, or the one started in
/// its place at a reload. The stop's drain waits for it to return (`taking_tasks`), so that a
/// task it took is handed to PHP first.
pub(crate) async fn take_tasks(
    queue: UnixDatagram,
    place: Arc<TaskPlace>,
    shared: Arc<Shared>,
    done: Arc<Notify>,
) {
    let queue = match queue
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixDatagram::from_std(queue))
    {
        Ok(queue) => queue,
        Err(e) => {
            log::error!(target: "surge", "cannot read the task queue: {e}");
            return;
        }
    };
    shared.taking_tasks.store(true, Release);
    take_until_stopped(&queue, &place, &shared, &done).await;
    shared.taking_tasks.store(false, Release);
}

async fn take_until_stopped(
    queue: &tokio::net::UnixDatagram,
    place: &TaskPlace,
    shared: &Shared,
    done: &Notify,
) {
    let mut stopping = shared.stopping.subscribe();
    let mut signalled = shared.signalled.subscribe();
    // The largest datagram: inline data, or a file's path (shorter than a path may be, 4 KiB).
    let mut buffer = vec![0u8; HEADER + INLINE_MAX];
    loop {
        // A stop signal that came while PHP ran the last task is seen by its watcher once the
        // runtime looks at its events, which it does before a yielded task runs again: so no
        // task is taken after the signal (PHP hears of it only after this task was queued).
        tokio::task::yield_now().await;
        // A recv given up leaves its datagram in the queue.
        let received = tokio::select! {
            biased;
            _ = stopping.wait_for(Option::is_some) => return,
            _ = signalled.wait_for(|s| *s) => return,
            received = queue.recv(&mut buffer) => received,
        };
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                log::error!(target: "surge", "cannot read the task queue: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(Taken {
            task_id,
            reply_to,
            data,
        }) = parse(&buffer[..n])
        else {
            log::error!(target: "surge", "a task that cannot be read was dropped");
            continue;
        };
        // Held before its data is read: a task worker killed while it reads a large task's
        // file (when the OOM killer is likeliest to pick it) is told as having lost the task.
        place.hold(reply_to, task_id);
        let Some(data) = data.read() else {
            place.release();
            log::error!(target: "surge", "task {task_id} of worker {} dropped: its data could not be read", reply_to.worker);
            continue;
        };
        let event = Event::Task(Task {
            task_id,
            reply_to,
            data,
        });
        let finished = done.notified();
        if shared.events.send(event).await.is_err() {
            return;
        }
        // Once the stop begins, the drain runs the task handed over (its event is queued
        // already) or, after a fatal error, drops it: either way this has nothing to wait for.
        tokio::select! {
            _ = finished => {}
            _ = stopping.wait_for(Option::is_some) => return,
        }
    }
}

/// A task as its datagram tells it, its data not yet read.
struct Taken<'a> {
    task_id: u64,
    reply_to: ReplyTo,
    data: TaskData<'a>,
}

/// Where a task's data is: in its datagram, or in a file (see `TaskSender::send`).
enum TaskData<'a> {
    Inline(&'a [u8]),
    InFile(&'a Path),
}

impl TaskData<'_> {
    fn read(self) -> Option<Vec<u8>> {
        match self {
            TaskData::Inline(data) => Some(data.to_vec()),
            TaskData::InFile(path) => {
                // Read on the task worker's runtime, which has nothing else to do meanwhile.
                // Removed once open, before it is read: a task worker killed meanwhile leaves
                // nothing behind (the sender counts its files until they are gone).
                let mut file = std::fs::File::open(path).ok();
                let _ = std::fs::remove_file(path);
                let mut data = Vec::new();
                std::io::Read::read_to_end(file.as_mut()?, &mut data).ok()?;
                Some(data)
            }
        }
    }
}

fn parse(datagram: &[u8]) -> Option<Taken<'_>> {
    use std::os::unix::ffi::OsStrExt;
    let (head, rest) = datagram.split_at_checked(HEADER)?;
    let worker = u64::from_be_bytes(head[..8].try_into().ok()?);
    let pid = u32::from_be_bytes(head[8..12].try_into().ok()?);
    let task_id = u64::from_be_bytes(head[12..20].try_into().ok()?);
    let flags = head[20];
    let data = match flags & !(WAITED | CALLBACK) {
        0 => TaskData::Inline(rest),
        IN_FILE => TaskData::InFile(Path::new(std::ffi::OsStr::from_bytes(rest))),
        _ => return None,
    };
    Some(Taken {
        task_id,
        reply_to: ReplyTo {
            worker: usize::try_from(worker).ok()?,
            pid,
            waited: flags & WAITED != 0,
            callback: flags & CALLBACK != 0,
        },
        data,
    })
}

/// How often a worker waiting for task results looks whether the server is stopping.
const STOP_LOOK: Duration = Duration::from_millis(50);

/// The results this worker waits for: a result for a task no one waits for (any more: the wait
/// timed out) is dropped.
#[derive(Default)]
pub(crate) struct TaskResults {
    slots: parking_lot::Mutex<HashMap<u64, Option<Vec<u8>>>>,
    arrived: parking_lot::Condvar,
}

impl TaskResults {
    /// Task `task_id`'s result will be waited for.
    pub(crate) fn expect(&self, task_id: u64) {
        self.slots.lock().insert(task_id, None);
    }

    /// Stores a result if it is expected; false if not.
    pub(crate) fn deliver(&self, task_id: u64, data: Vec<u8>) -> bool {
        let mut slots = self.slots.lock();
        match slots.get_mut(&task_id) {
            Some(slot) => {
                *slot = Some(data);
                self.arrived.notify_all();
                true
            }
            None => false,
        }
    }

    /// The result will not be waited for after all (the task could not be sent).
    pub(crate) fn forget(&self, task_id: u64) {
        self.slots.lock().remove(&task_id);
    }

    /// Waits up to `timeout` for the results of `task_ids`, in their order: None for one that
    /// did not come in time. Either way none is expected after. `stopped` is asked every
    /// [`STOP_LOOK`]: once it says so the wait ends (a stop drops the tasks still queued, whose
    /// results would never come, and the worker would be killed waiting).
    pub(crate) fn wait(
        &self,
        task_ids: &[u64],
        timeout: Duration,
        stopped: impl Fn() -> bool,
    ) -> Vec<Option<Vec<u8>>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut slots = self.slots.lock();
        loop {
            let all_in = task_ids
                .iter()
                .all(|id| matches!(slots.get(id), Some(Some(_))));
            let look = (std::time::Instant::now() + STOP_LOOK).min(deadline);
            let timed_out = !all_in && self.arrived.wait_until(&mut slots, look).timed_out();
            if all_in || (timed_out && (std::time::Instant::now() >= deadline || stopped())) {
                return task_ids
                    .iter()
                    .map(|id| slots.remove(id).flatten())
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Acquire;

    /// What a task worker's taker runs with: its engine's state (and the receiving end of its
    /// events), the notice PHP gives when a task is done, and its place among the task workers.
    struct TaskWorker {
        shared: Arc<Shared>,
        events: tokio::sync::mpsc::Receiver<Event>,
        done: Arc<Notify>,
        running: Arc<RunningTasks>,
        place: Arc<TaskPlace>,
    }

    fn task_worker(task_workers: usize, index: usize) -> TaskWorker {
        let (tx, events) = tokio::sync::mpsc::channel(8);
        let shared = Arc::new(Shared::new(
            crate::config::Config::default(),
            tx,
            crate::workers::FdSource::single(),
        ));
        let running = RunningTasks::new(task_workers).unwrap();
        let place = Arc::new(TaskPlace::new(&running, index));
        TaskWorker {
            shared,
            events,
            done: Arc::new(Notify::new()),
            running,
            place,
        }
    }

    #[test]
    fn tasks_cross_inline_and_through_files_and_the_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let queue = TaskQueue::new().unwrap();
        let sender = queue.sender(dir.path()).unwrap();
        let taker = queue.taker().unwrap();
        let mut buffer = vec![0u8; HEADER + INLINE_MAX];
        for size in [0, 10, INLINE_MAX, INLINE_MAX + 1, 3 << 20] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let waited = size % 2 == 1;
            sender.send(3, 77, (waited, !waited), &data).unwrap();
            let n = taker.recv(&mut buffer).unwrap();
            let Some(Taken {
                task_id,
                reply_to,
                data: got,
            }) = parse(&buffer[..n])
            else {
                panic!("a task of {size} bytes")
            };
            let got = got.read().expect("its data");
            let pid = std::process::id();
            assert_eq!(
                (task_id, reply_to),
                (
                    77,
                    ReplyTo {
                        worker: 3,
                        pid,
                        waited,
                        callback: !waited
                    }
                )
            );
            assert!(got == data, "{size} bytes");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        assert!(parse(&[0; HEADER - 1]).is_none());
        assert!(parse(&[[0; HEADER - 1].as_slice(), &[8]].concat()).is_none());
    }

    #[test]
    fn a_stopping_task_worker_runs_the_task_it_took_and_leaves_the_rest_queued() {
        let dir = tempfile::tempdir().unwrap();
        let queue = TaskQueue::new().unwrap();
        let sender = queue.sender(dir.path()).unwrap();
        for task_id in 0..3 {
            sender.send(0, task_id, (false, false), b"x").unwrap();
        }
        let TaskWorker {
            shared,
            mut events,
            done,
            running,
            place,
        } = task_worker(2, 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let taker = tokio::spawn(take_tasks(
                queue.taker().unwrap(),
                place,
                shared.clone(),
                done.clone(),
            ));
            let Some(Event::Task(first)) = events.recv().await else {
                panic!("the first task")
            };
            assert_eq!(first.task_id, 0);
            // Noted as running, for the task worker that would start in this one's place.
            let successor = TaskPlace::new(&running, 1);
            assert_eq!(successor.take_lost(), Some((first.reply_to, 0)));
            assert_eq!(successor.take_lost(), None, "taken once");
            assert_eq!(TaskPlace::new(&running, 0).take_lost(), None);
            assert!(shared.taking_tasks.load(Acquire), "the stop waits for it");
            shared.begin_shutdown(1001, "stop");
            done.notify_one();
            taker.await.unwrap();
        });
        assert!(!shared.taking_tasks.load(Acquire));
        assert!(events.try_recv().is_err(), "no task taken after the stop");
        let rest = queue.taker().unwrap();
        rest.set_nonblocking(true).unwrap();
        let mut buffer = vec![0u8; HEADER + INLINE_MAX];
        let mut left = vec![];
        while let Ok(n) = rest.recv(&mut buffer) {
            let Some(task) = parse(&buffer[..n]) else {
                panic!("a task")
            };
            left.push(task.task_id);
        }
        assert_eq!(
            left,
            [1, 2],
            "the others stay queued for another task worker"
        );
    }

    #[test]
    fn a_task_is_held_while_its_file_is_read() {
        // A task worker killed while it reads a large task's file (the OOM killer's moment)
        // lost the task untold: it was held only once read. The file here is a FIFO, so the
        // read waits for this test to write it.
        let dir = tempfile::tempdir().unwrap();
        let queue = TaskQueue::new().unwrap();
        let sender = queue.sender(dir.path()).unwrap();
        let data = vec![5u8; INLINE_MAX + 1];
        sender.send(2, 41, (true, false), &data).unwrap();
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::remove_file(&path).unwrap();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let TaskWorker {
            shared,
            mut events,
            done,
            running,
            place,
        } = task_worker(1, 0);
        let taker = queue.taker().unwrap();
        let (stop, notify) = (shared.clone(), done.clone());
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let taking = tokio::spawn(take_tasks(taker, place, stop.clone(), notify.clone()));
                let Some(Event::Task(task)) = events.recv().await else {
                    panic!("the task")
                };
                stop.begin_shutdown(1001, "stop");
                notify.notify_one();
                taking.await.unwrap();
                task
            })
        });
        let started = std::time::Instant::now();
        let held = loop {
            if let Some(held) = TaskPlace::new(&running, 0).take_lost() {
                break held;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "not held while read"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(held.1, 41);
        std::fs::write(&path, &data).unwrap();
        let task = worker.join().unwrap();
        assert!(task.task_id == 41 && task.data == data);
    }

    #[test]
    fn a_released_task_is_not_lost() {
        let running = RunningTasks::new(1).unwrap();
        let place = TaskPlace::new(&running, 0);
        let reply_to = ReplyTo {
            worker: 3,
            pid: 4242,
            waited: true,
            callback: false,
        };
        place.hold(reply_to, 9);
        place.release();
        assert_eq!(place.take_lost(), None);
        place.hold(
            ReplyTo {
                worker: 0,
                ..reply_to
            },
            u64::MAX,
        );
        assert_eq!(
            place.take_lost(),
            Some((
                ReplyTo {
                    worker: 0,
                    ..reply_to
                },
                u64::MAX
            ))
        );
    }

    #[test]
    fn a_waited_result_is_taken_once_and_a_late_one_dropped() {
        let results = Arc::new(TaskResults::default());
        results.expect(1);
        let late = results.clone();
        let deliver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            late.deliver(1, b"one".to_vec())
        });
        assert_eq!(
            results.wait(&[1], Duration::from_secs(5), || false),
            [Some(b"one".to_vec())]
        );
        assert!(deliver.join().unwrap());
        results.expect(2);
        assert_eq!(
            results.wait(&[2], Duration::from_millis(10), || false),
            [None]
        );
        assert!(
            !results.deliver(2, b"too late".to_vec()),
            "no one waits any more"
        );
        assert!(!results.deliver(3, b"never asked".to_vec()));
    }

    #[test]
    fn several_results_are_waited_for_together_in_their_order() {
        let results = Arc::new(TaskResults::default());
        [4, 5, 6].iter().for_each(|id| results.expect(*id));
        let workers = results.clone();
        let deliver = std::thread::spawn(move || {
            workers.deliver(6, b"six".to_vec());
            std::thread::sleep(Duration::from_millis(20));
            workers.deliver(4, b"four".to_vec())
        });
        // 5 never comes: the others are there at the timeout.
        let got = results.wait(&[4, 5, 6], Duration::from_millis(300), || false);
        assert!(deliver.join().unwrap());
        assert_eq!(got, [Some(b"four".to_vec()), None, Some(b"six".to_vec())]);
        assert!(
            !results.deliver(5, b"late".to_vec()),
            "no one waits any more"
        );
    }

    #[test]
    fn task_files_not_yet_taken_are_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let queue = TaskQueue::new().unwrap();
        let mut sender = queue.sender(dir.path()).unwrap();
        sender.wait = Duration::from_millis(50);
        let taker = queue.taker().unwrap();
        let data = vec![7u8; FILE_BYTES / 4];
        for _ in 0..4 {
            sender.send(0, 1, (false, false), &data).unwrap();
        }
        let err = sender.send(0, 2, (false, false), &data).unwrap_err();
        assert!(err.contains("waiting in files stayed over 64 MiB"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
        // One gone out of order (its task worker read it; the oldest is left by one killed
        // before it removed its file): counted out all the same.
        let newest = sender.files.lock().files.back().unwrap().0.clone();
        std::fs::remove_file(newest).unwrap();
        sender.send(0, 2, (false, false), &data).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
        // A task worker takes the oldest: there is room for one more.
        let mut buffer = vec![0u8; HEADER + INLINE_MAX];
        let n = taker.recv(&mut buffer).unwrap();
        assert!(parse(&buffer[..n])
            .and_then(|task| task.data.read())
            .is_some());
        sender.send(0, 3, (false, false), &data).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_full_queue_is_an_error_after_the_wait_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let queue = TaskQueue::new().unwrap();
        let mut sender = queue.sender(dir.path()).unwrap();
        sender.wait = Duration::from_millis(50);
        let data = vec![7u8; INLINE_MAX];
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = sender.send(0, 1, (false, false), &data) {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(60));
        };
        assert!(err.contains("the task queue stayed full"), "{err}");
        assert!(sender
            .send(0, 1, (false, false), &vec![7u8; INLINE_MAX + 1])
            .is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
