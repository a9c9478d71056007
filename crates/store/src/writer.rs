//! The audit writer: one thread per gateway that owns the chain head, seals entries and
//! commits them in groups.
//!
//! Group commit: while one transaction commits (one fsync), new entries queue; the next
//! transaction takes everything queued (up to `max_batch`). Latency is one commit, throughput
//! is many entries per fsync. A caller that must not go on before its entry is durable awaits
//! [`Writer::append`]; others use [`Writer::append_detached`].
//!
//! With a `window` (`audit.commit_window`), a group of detached entries stays open that long
//! from its first entry, so a slow trickle of entries is still one transaction per window,
//! not one per entry (each transaction rewrites whole pages of the table and its indexes,
//! and fsyncs). An awaited entry ends the wait (what is already queued still joins its
//! group), a sync or a stop closes the group at once: nobody waits on the window. The writer
//! sleeps out the window (parked) instead of waking for each entry that joins: only an awaited
//! entry, a sync or a stop wakes it early (at a steady 2,000 requests/s that is 4,000 fewer
//! thread wake-ups a second, each paid by the request that sent the entry).
//!
//! Checkpoints are signed every `checkpoint_every` entries or `checkpoint_interval`, also
//! when idle, and at start and stop; each is stored, appended to the checkpoint file (one JSON
//! line, fsynced) and handed to `on_checkpoint` (the gateway's webhook).
//!
//! On start the writer resumes its chain from the store and appends an `interrupted` entry
//! for every forwarded request whose response was never recorded (the gateway stopped).
//!
//! On SQLite the WAL is checkpointed by a thread of the writer's own (`airlock-wal`, its own
//! connection, `PRAGMA wal_checkpoint(PASSIVE)`), asked after every 1,000 pages the WAL grows,
//! so no commit — and nobody waiting on one — carries a checkpoint; the writer's connection
//! checkpoints itself only as a backstop (see `sqlite.rs`).
//!
//! After a failed commit the connection is dropped and a new one opened for the next batch
//! (a failed fsync is never retried on the same handle); until a commit succeeds again the
//! writer reports itself unhealthy.

use crate::{Store, StoreError};
use airlock_audit::{Chain, Checkpoint, Draft, Kind};
use airlock_authn::SessionKeys;
use airlock_config::StoreUrl;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub chain: String,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Checkpoints are also appended here, one JSON line each (`{"chain":…,"note":…}`).
    pub checkpoint_file: Option<PathBuf>,
    pub max_batch: usize,
    /// How long a group of detached entries stays open from its first entry (zero: it
    /// closes as soon as the queue is empty).
    pub window: Duration,
    /// Run the writer and WAL checkpoint threads with a short scheduler slice
    /// ([`crate::sched`]), so their bursts do not hold up the request path. For `batch`
    /// durability, where no request waits on them.
    pub short_slice: bool,
}

/// Why an entry was not committed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit entry not committed: {0}")]
pub struct WriteError(pub String);

type Done = oneshot::Sender<Result<(), WriteError>>;

enum Job {
    Append(Box<Draft>, Option<Done>),
    /// Answered once every job sent before it has been committed (or failed).
    Sync(Done),
    Stop,
}

/// A handle on the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    state: Arc<State>,
}

struct State {
    depth: AtomicUsize,
    /// Transactions committed, and the entries in them.
    commits: AtomicU64,
    committed: AtomicU64,
    healthy: AtomicBool,
    chain: String,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The writer thread, to wake (unpark) while it sleeps out a commit window.
    worker: OnceLock<std::thread::Thread>,
    /// True while the writer sleeps out a window: an urgent job must wake it.
    window_open: AtomicBool,
    /// WAL checkpoints the checkpoint thread has run (SQLite).
    wal_checkpoints: AtomicU64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("chain", &self.state.chain).finish_non_exhaustive()
    }
}

pub type CheckpointHook = Box<dyn Fn(&str) + Send>;

impl Writer {
    /// Open the store, claim the chain, recover it, and start the writer thread.
    pub fn start(
        url: &StoreUrl,
        key: SessionKeys,
        options: WriterOptions,
        on_checkpoint: Option<CheckpointHook>,
    ) -> Result<Writer, StoreError> {
        let mut w = Worker::open(url.clone(), key, options.clone(), on_checkpoint)?;
        w.recover()?;
        w.checkpoint();
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(State {
            depth: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            chain: options.chain.clone(),
            thread: Mutex::new(None),
            worker: OnceLock::new(),
            window_open: AtomicBool::new(false),
            wal_checkpoints: AtomicU64::new(0),
        });
        w.start_checkpoints(&state);
        let thread_state = state.clone();
        let short_slice = w.options.short_slice;
        let handle = spawn("airlock-audit", short_slice, move || w.run(rx, &thread_state))
            .map_err(|e| StoreError::Setup(format!("cannot start the audit writer: {e}")))?;
        let _ = state.worker.set(handle.thread().clone());
        *state.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(Writer { tx, state })
    }

    /// Queue `draft` and wait until it is committed.
    pub async fn append(&self, draft: Draft) -> Result<(), WriteError> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Append(Box::new(draft), Some(done)))?;
        wait.await.unwrap_or_else(|_| Err(WriteError("the audit writer stopped".into())))
    }

    /// Queue `draft` without waiting; it commits with the next group.
    pub fn append_detached(&self, draft: Draft) {
        if self.send(Job::Append(Box::new(draft), None)).is_err() {
            tracing::error!(target: "airlock::audit", "audit writer stopped; entry lost");
        }
    }

    fn send(&self, job: Job) -> Result<(), WriteError> {
        self.state.depth.fetch_add(1, Ordering::Relaxed);
        let urgent = !matches!(job, Job::Append(_, None));
        self.tx.send(job).map_err(|_| {
            self.state.depth.fetch_sub(1, Ordering::Relaxed);
            WriteError("the audit writer stopped".into())
        })?;
        if urgent {
            self.state.wake_if_waiting();
        }
        Ok(())
    }

    /// Wait until every entry queued before this call is committed; the error of the last
    /// commit if it failed.
    pub async fn sync(&self) -> Result<(), WriteError> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Sync(done))?;
        wait.await.unwrap_or_else(|_| Err(WriteError("the audit writer stopped".into())))
    }

    /// Entries queued and not yet committed.
    pub fn depth(&self) -> usize {
        self.state.depth.load(Ordering::Relaxed)
    }

    /// Groups committed so far.
    pub fn commits(&self) -> u64 {
        self.state.commits.load(Ordering::Relaxed)
    }

    /// Entries committed so far (over [`Writer::commits`]: the entries per commit).
    pub fn committed(&self) -> u64 {
        self.state.committed.load(Ordering::Relaxed)
    }

    /// WAL checkpoints run off the writer's thread so far (SQLite; always 0 on PostgreSQL).
    pub fn wal_checkpoints(&self) -> u64 {
        self.state.wal_checkpoints.load(Ordering::Relaxed)
    }

    /// False after a failed commit, until one succeeds again.
    pub fn healthy(&self) -> bool {
        self.state.healthy.load(Ordering::Relaxed)
    }

    pub fn chain(&self) -> &str {
        &self.state.chain
    }

    /// Commit what is queued, write a final checkpoint, and stop the thread.
    pub fn close(&self) {
        let _ = self.tx.send(Job::Stop);
        self.state.wake_if_waiting();
        let handle = self.state.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The jobs the writer gathers into one transaction.
#[derive(Default)]
struct Group {
    batch: Vec<(Draft, Option<Done>)>,
    syncs: Vec<Done>,
    stop: bool,
    /// Someone is waiting on this group: take what is queued, but do not wait out the window
    /// for more.
    hurry: bool,
}

impl Group {
    fn absorb(&mut self, job: Job) {
        match job {
            Job::Append(draft, done) => {
                self.hurry |= done.is_some();
                self.batch.push((*draft, done));
            }
            Job::Sync(done) => self.syncs.push(done),
            Job::Stop => self.stop = true,
        }
    }

    /// A sync closes the group (it answers for everything before it), as do a stop and a
    /// full batch.
    fn closed(&self, max_batch: usize) -> bool {
        self.stop || !self.syncs.is_empty() || self.batch.len() >= max_batch
    }
}

impl State {
    /// Wake the writer if it is sleeping out a commit window. Called after a job is queued;
    /// the writer announces the window before it looks at the queue a last time and sleeps,
    /// and the fences on both sides order the two (one of them sees the other): either this
    /// sees the window open, or the writer finds the job before sleeping.
    fn wake_if_waiting(&self) {
        fence(Ordering::SeqCst);
        if self.window_open.load(Ordering::SeqCst)
            && let Some(worker) = self.worker.get()
        {
            worker.unpark();
        }
    }
}

struct Worker {
    url: StoreUrl,
    store: Option<Store>,
    key: SessionKeys,
    options: WriterOptions,
    chain: Chain,
    checkpoints: u64,
    last_note: Option<String>,
    last_checkpoint: Instant,
    since_checkpoint: u64,
    on_checkpoint: Option<CheckpointHook>,
    /// SQLite: the WAL checkpoint thread, and the WAL's size when it was last asked.
    wal: Option<WalCheckpoints>,
    wal_asked_at: i32,
}

impl Worker {
    fn open(
        url: StoreUrl,
        key: SessionKeys,
        options: WriterOptions,
        on_checkpoint: Option<CheckpointHook>,
    ) -> Result<Worker, StoreError> {
        let mut worker = Worker {
            store: None,
            url,
            key,
            chain: Chain::start(&options.chain),
            options,
            checkpoints: 0,
            last_note: None,
            last_checkpoint: Instant::now(),
            since_checkpoint: 0,
            on_checkpoint,
            wal: None,
            wal_asked_at: 0,
        };
        worker.connect()?;
        Ok(worker)
    }

    /// (Re)connect, claim the chain, and read its head and last checkpoint.
    fn connect(&mut self) -> Result<&mut Store, StoreError> {
        self.store = None;
        let mut store = Store::open(&self.url)?;
        store.lock_chain(&self.options.chain)?;
        if let Some((seq, head)) = store.head(&self.options.chain)? {
            self.chain = Chain { name: self.options.chain.clone(), seq, head };
        }
        if let Some((n, note)) = store.last_checkpoint(&self.options.chain)? {
            self.checkpoints = n;
            self.last_note = Some(note);
        }
        if self.wal.is_some() {
            store.hand_off_checkpoints();
        }
        Ok(self.store.insert(store))
    }

    /// On SQLite, start the WAL checkpoint thread and hand it this connection's checkpoints
    /// (a reconnect hands them off again). If the thread cannot start, SQLite keeps
    /// checkpointing inside commits, as it does by default.
    fn start_checkpoints(&mut self, state: &Arc<State>) {
        let StoreUrl::Sqlite(path) = &self.url else { return };
        match WalCheckpoints::start(path, state.clone(), self.options.short_slice) {
            Ok(wal) => {
                self.wal = Some(wal);
                if let Some(store) = self.store.as_mut() {
                    store.hand_off_checkpoints();
                }
            }
            Err(e) => {
                tracing::warn!(target: "airlock::audit", error = %e, "cannot start the WAL checkpoint thread; checkpoints stay inside commits")
            }
        }
    }

    /// After a commit: ask the checkpoint thread once per `CHECKPOINT_PAGES` the WAL grew.
    fn after_commit(&mut self) {
        let (Some(wal), Some(pages)) = (&self.wal, self.store.as_ref().and_then(Store::wal_pages))
        else {
            return;
        };
        if pages < self.wal_asked_at {
            self.wal_asked_at = 0; // the WAL started over
        }
        if pages - self.wal_asked_at >= crate::sqlite::CHECKPOINT_PAGES {
            self.wal_asked_at = pages;
            wal.ask();
        }
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        let store = self.store.as_mut().ok_or_else(|| StoreError::Db("not connected".into()))?;
        let unfinished = store.unfinished(&self.options.chain)?;
        if unfinished.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            target: "airlock::audit",
            count = unfinished.len(),
            "forwarded requests whose response was never recorded (the gateway stopped); marking them interrupted"
        );
        let drafts: Vec<Draft> = unfinished
            .into_iter()
            .map(|(request_id, index)| Draft {
                kind: Kind::Interrupted,
                request_id,
                at_ms: crate::now_ms(),
                index,
                detail: airlock_audit::detail(&serde_json::json!({
                    "outcome": "interrupted",
                    "reason": "the gateway stopped before the response was recorded",
                })),
            })
            .collect();
        let (sealed, next) = self.chain.seal(drafts);
        store.append(&sealed)?;
        self.chain = next;
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<Job>, state: &State) {
        loop {
            let wait =
                self.options.checkpoint_interval.saturating_sub(self.last_checkpoint.elapsed());
            let mut group = Group::default();
            match rx.recv_timeout(wait) {
                Ok(job) => {
                    let close = Instant::now() + self.options.window;
                    group.absorb(job);
                    while !group.closed(self.options.max_batch) {
                        // What is queued joins.
                        match rx.try_recv() {
                            Ok(job) => {
                                group.absorb(job);
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => break,
                            Err(TryRecvError::Empty) => {}
                        }
                        let now = Instant::now();
                        if group.hurry || now >= close {
                            break;
                        }
                        // Sleep out the window; entries that join meanwhile are only queued.
                        // Announce it, then look once more (see State::wake_if_waiting).
                        state.window_open.store(true, Ordering::SeqCst);
                        fence(Ordering::SeqCst);
                        match rx.try_recv() {
                            Ok(job) => group.absorb(job),
                            Err(_) => std::thread::park_timeout(close - now),
                        }
                        state.window_open.store(false, Ordering::SeqCst);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => group.stop = true,
            }
            let Group { batch, syncs, stop, .. } = group;
            let jobs = batch.len() + syncs.len();
            let result = if batch.is_empty() { Ok(()) } else { self.commit(batch, state) };
            for done in syncs {
                let _ = done.send(result.clone());
            }
            state.depth.fetch_sub(jobs, Ordering::Relaxed);
            if stop
                || self.since_checkpoint >= self.options.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
            {
                self.checkpoint();
            }
            if stop {
                return;
            }
        }
    }

    fn commit(
        &mut self,
        batch: Vec<(Draft, Option<Done>)>,
        state: &State,
    ) -> Result<(), WriteError> {
        let (drafts, dones): (Vec<Draft>, Vec<Option<Done>>) = batch.into_iter().unzip();
        let entries = drafts.len();
        let result = self.try_commit(drafts).map_err(|e| WriteError(e.to_string()));
        state.healthy.store(result.is_ok(), Ordering::Relaxed);
        if result.is_ok() {
            state.commits.fetch_add(1, Ordering::Relaxed);
            state.committed.fetch_add(entries as u64, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(target: "airlock::audit", error = %e, entries, "audit commit failed");
        }
        for done in dones.into_iter().flatten() {
            let _ = done.send(result.clone());
        }
        result
    }

    fn try_commit(&mut self, drafts: Vec<Draft>) -> Result<(), StoreError> {
        if self.store.is_none() {
            self.connect()?;
        }
        let (sealed, next) = self.chain.seal(drafts);
        let store = self.store.as_mut().ok_or_else(|| StoreError::Db("not connected".into()))?;
        match store.append(&sealed) {
            Ok(()) => {
                self.since_checkpoint += sealed.len() as u64;
                self.chain = next;
                self.after_commit();
                Ok(())
            }
            Err(e) => {
                // Never retry on this handle: the next batch gets a fresh connection (and
                // re-reads the head, in case this commit landed after all).
                self.store = None;
                Err(e)
            }
        }
    }

    fn checkpoint(&mut self) {
        let checkpoint = Checkpoint {
            chain: self.chain.name.clone(),
            size: self.chain.seq,
            root: self.chain.head.clone(),
            time: (crate::now_ms() / 1000) as u64,
            prev: self.last_note.as_deref().map(airlock_audit::note::note_hash),
        };
        let note = checkpoint.sign(&self.key);
        self.last_checkpoint = Instant::now();
        let Some(store) = self.store.as_mut() else { return };
        if let Err(e) =
            store.add_checkpoint(&self.chain.name, self.checkpoints + 1, checkpoint.size, &note)
        {
            tracing::error!(target: "airlock::audit", error = %e, "cannot store a checkpoint");
            self.store = None;
            return;
        }
        self.checkpoints += 1;
        self.since_checkpoint = 0;
        if let Some(path) = &self.options.checkpoint_file
            && let Err(e) = append_line(path, &self.chain.name, &note)
        {
            tracing::error!(target: "airlock::audit", error = %e, path = %path.display(), "cannot write the checkpoint file");
        }
        if let Some(hook) = &self.on_checkpoint {
            hook(&note);
        }
        self.last_note = Some(note);
    }
}

/// Start one of the store's background threads, named `name`, running `f`; with
/// `short_slice` it first asks for a short scheduler slice ([`crate::sched`]). Returns once
/// the thread runs, named and with its slice: the setting has taken effect when the writer
/// starts serving (and its tests can read it back at once).
fn spawn<T: Send + 'static>(
    name: &str,
    short_slice: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let (started, running) = mpsc::sync_channel(1);
    let handle = std::thread::Builder::new().name(name.into()).spawn(move || {
        if short_slice {
            crate::sched::short_slice();
        }
        let _ = started.send(());
        f()
    })?;
    // An error here means the thread ended before it ran `f`: the handle reports that.
    let _ = running.recv();
    Ok(handle)
}

/// The WAL checkpoint thread: runs a passive checkpoint each time it is asked (asks that come
/// while one runs make one more run, not a queue). Stopped and joined on drop, after the run
/// asked for last.
struct WalCheckpoints {
    shared: Arc<(Mutex<Asked>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Asked {
    run: bool,
    stop: bool,
}

impl WalCheckpoints {
    fn start(
        path: &std::path::Path,
        state: Arc<State>,
        short_slice: bool,
    ) -> Result<WalCheckpoints, StoreError> {
        let conn = crate::sqlite::Checkpoints::open(path)?;
        let shared = Arc::new((Mutex::new(Asked::default()), std::sync::Condvar::new()));
        let theirs = shared.clone();
        let thread = spawn("airlock-wal", short_slice, move || {
            let (lock, wake) = &*theirs;
            loop {
                {
                    let mut asked = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while !asked.run && !asked.stop {
                        asked = wake.wait(asked).unwrap_or_else(|e| e.into_inner());
                    }
                    // A run asked for before the stop still happens.
                    if !asked.run {
                        return;
                    }
                    asked.run = false;
                }
                match conn.passive() {
                    Ok((log, done)) => {
                        state.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "airlock::audit", log, done, "WAL checkpointed");
                    }
                    Err(e) => {
                        tracing::warn!(target: "airlock::audit", error = %e, "WAL checkpoint failed")
                    }
                }
            }
        })
        .map_err(|e| StoreError::Setup(format!("cannot start the WAL checkpoint thread: {e}")))?;
        Ok(WalCheckpoints { shared, thread: Some(thread) })
    }

    fn ask(&self) {
        let (lock, wake) = &*self.shared;
        let mut asked = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !asked.run {
            asked.run = true;
            wake.notify_one();
        }
    }
}

impl Drop for WalCheckpoints {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn append_line(path: &std::path::Path, chain: &str, note: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let line = serde_json::json!({ "chain": chain, "note": note }).to_string();
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}
