//! The one orchestrator and writer. Connections send it requests; for each
//! batch (every request that arrived meanwhile) it does three things in
//! order: **prefetch** (`Engine::prefetch`: read from the store every
//! transaction and index entry the batch will look at, into the bounded
//! cache; reads happen there), **execute** (`Engine::process`: find the card
//! and balances in memory, ask [`authz::decide`], apply the effects to the
//! change set), and **commit** the batch as one (group commit). The store makes a batch durable on a thread of
//! its own while the writer decides the next ([`Store::commit_then`]); a
//! reply leaves only after its batch, and every batch before it, is on
//! disk. If a commit fails the batch is undone in memory and every request
//! in it is answered with the system-malfunction code.
//!
//! Owns: the state in memory and the only thread that changes it. Must never
//! touch: a socket or a wire format (requests arrive typed, from `protocol`
//! and `manage`), or the disk except through the `Store` trait.

pub mod index;
mod ledger;
pub mod record;
pub mod state;

use crate::authz::{self, Decision, Operation};
use crate::domain::model::{Card, Leg, Txn, TxnState};
use crate::domain::outcome::{lock_reason, Outcome};
use crate::protocol::{AuthRequest, AuthResponse, FileAction, MessageClass};
use crate::security::secrets::CardSecrets;
use crate::store::{keys, OnDurable, Refused, Store, StoreError};
pub use ledger::Movement;
use rust_decimal::Decimal;
use state::{decode, Changes, State, TxnCache};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long an authorization hold blocks funds before the sweep releases it.
    pub hold_expiry: Duration,
    /// Most requests committed in one batch.
    pub batch_max: usize,
    /// Most requests waiting for the writer; senders wait when it is full (backpressure).
    pub queue_depth: usize,
    /// Transactions kept in the cache between batches.
    pub txn_cache: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            hold_expiry: Duration::from_hours(168),
            batch_max: 4096,
            queue_depth: 65_536,
            txn_cache: state::DEFAULT_TXN_CACHE,
        }
    }
}

/// Where an answer goes.
pub enum Reply {
    /// To a connection's queue, with the tag it gave.
    Channel {
        /// The connection's queue.
        tx: mpsc::UnboundedSender<(u64, AuthResponse)>,
        /// The connection's tag for the request.
        tag: u64,
    },
    /// To one waiting task.
    Oneshot(oneshot::Sender<AuthResponse>),
}

impl Reply {
    fn send(self, response: AuthResponse) {
        // A closed receiver means the client went away; nothing is lost by dropping the answer.
        match self {
            Reply::Channel { tx, tag } => drop(tx.send((tag, response))),
            Reply::Oneshot(tx) => drop(tx.send(response)),
        }
    }
}

/// Delivers the writer's answers on the runtime it runs on (see [`Engine::spawn_routed`]).
pub struct ReplyRouter {
    rx: mpsc::UnboundedReceiver<Vec<(Reply, AuthResponse)>>,
}

impl ReplyRouter {
    /// Hands out every batch of answers until the writer stops.
    pub async fn run(mut self) {
        while let Some(batch) = self.rx.recv().await {
            for (reply, response) in batch {
                reply.send(response);
            }
        }
    }
}

/// A batch's answers and management completions, released by the store
/// once the batch is durable (see [`Store::commit_then`]).
struct Finish {
    replies: Vec<(Reply, AuthResponse)>,
    deliveries: Vec<Delivery>,
    router: Option<mpsc::UnboundedSender<Vec<(Reply, AuthResponse)>>>,
}

impl Finish {
    fn answer(&mut self) {
        let replies = std::mem::take(&mut self.replies);
        match &self.router {
            Some(router) if !replies.is_empty() => {
                if let Err(mpsc::error::SendError(replies)) = router.send(replies) {
                    // The router's runtime is gone: answer directly.
                    for (reply, response) in replies {
                        reply.send(response);
                    }
                }
            }
            _ => {
                for (reply, response) in replies {
                    reply.send(response);
                }
            }
        }
    }
}

impl OnDurable for Finish {
    fn durable(mut self: Box<Self>) {
        self.answer();
        for deliver in self.deliveries.drain(..) {
            deliver(Ok(()));
        }
    }

    fn failed(mut self: Box<Self>, error: StoreError) {
        for (_, response) in &mut self.replies {
            *response = AuthResponse::outcome(Outcome::SystemMalfunction);
        }
        self.answer();
        for deliver in self.deliveries.drain(..) {
            deliver(Err(error.clone()));
        }
    }
}

/// A read-only look at the state, run by the writer after a commit.
pub type Inspect = Box<dyn FnOnce(&State) + Send>;

/// A read-only look at the state and the transactions on disk, run by the
/// writer after a commit.
pub type Read = Box<dyn FnOnce(&Reader<'_>) + Send>;

/// The state and the store's transactions, read only (history pages).
pub struct Reader<'a> {
    /// The state in memory.
    pub state: &'a State,
    store: &'a dyn Store,
}

impl Reader<'_> {
    /// A transaction by id.
    pub fn txn(&self, id: u64) -> Result<Option<Txn>, StoreError> {
        if let Some(txn) = self.state.txns.get(id) {
            return Ok(Some(txn.clone()));
        }
        let key = keys::numbered(keys::TXN, id);
        self.store
            .get(&key)?
            .map(|bytes| record::decode(&key, &bytes))
            .transpose()
    }

    /// The ids of the entries under `prefix` with an id below `below`
    /// (all when `None`), newest first, at most `limit`: `prefix` is an
    /// index's name prefix (`index::prefix`) or `keys::TXN`.
    pub fn ids_below(
        &self,
        prefix: &[u8],
        below: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let end = match below {
            Some(id) => {
                let mut end = prefix.to_vec();
                end.extend_from_slice(&keys::numbered(b"", id));
                end
            }
            None => index::prefix_end(prefix),
        };
        Ok(self
            .store
            .range(prefix, &end, true, limit)?
            .iter()
            .filter_map(|(k, _)| index::id_of(k).filter(|_| k.len() == prefix.len() + 20))
            .collect())
    }
}

/// What the writer is asked to do.
pub enum Command {
    /// Process an ISO 8583 request.
    Iso {
        /// The request.
        request: Box<AuthRequest>,
        /// Where the answer goes.
        reply: Reply,
    },
    /// Release the holds that have expired.
    ExpireHolds,
    /// Read the state.
    Inspect(Inspect),
    /// Read the state and the transactions on disk.
    Read(Read),
    /// Change the state (management operations); committed with the batch.
    Apply(Mutation),
}

/// Whether a mutation's batch reached the disk.
pub type Delivery = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A management operation: runs on the writer inside a batch, returns what to
/// do once the batch is committed (or failed).
pub type Mutation = Box<dyn FnOnce(&mut State, &mut Changes, u64) -> Delivery + Send>;

/// Why a management operation did not happen.
#[derive(Debug)]
pub enum ApplyError {
    /// The writer has stopped.
    Stopped,
    /// The store could not commit; nothing changed.
    Storage(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Stopped => f.write_str("the engine has stopped"),
            ApplyError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// A cloneable handle to the writer.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    status: std::sync::Arc<WriterStatus>,
}

/// What the writer last did with the store, for readiness probes.
#[derive(Debug, Default)]
pub struct WriterStatus {
    last_batch_ms: std::sync::atomic::AtomicU64,
    last_commit_ms: std::sync::atomic::AtomicU64,
    last_commit_failed: std::sync::atomic::AtomicBool,
}

impl WriterStatus {
    /// When the writer last finished a batch (ms since the epoch; 0: never).
    pub fn last_batch_ms(&self) -> u64 {
        self.last_batch_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the store last committed a non-empty batch (ms since the epoch; 0: never).
    pub fn last_commit_ms(&self) -> u64 {
        self.last_commit_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when the last commit the writer attempted failed.
    pub fn last_commit_failed(&self) -> bool {
        self.last_commit_failed
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The writer stopped (shut down or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStopped;

impl std::fmt::Display for EngineStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the engine has stopped")
    }
}

impl std::error::Error for EngineStopped {}

impl EngineHandle {
    /// What the writer last did with the store.
    pub fn status(&self) -> &WriterStatus {
        &self.status
    }

    /// Resolves once the writer has stopped taking commands.
    pub async fn stopped(&self) {
        self.tx.closed().await;
    }

    /// Commands waiting for the writer now.
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a command, waiting while the queue is full.
    pub async fn send(&self, command: Command) -> Result<(), EngineStopped> {
        self.tx.send(command).await.map_err(|_| EngineStopped)
    }

    /// Processes one request and waits for its durable answer.
    pub async fn request(&self, request: AuthRequest) -> Result<AuthResponse, EngineStopped> {
        if request.class == MessageClass::NetworkManagement {
            // Network management never reaches the writer.
            return Ok(crate::protocol::respond::network_management());
        }
        let (tx, rx) = oneshot::channel();
        self.send(Command::Iso {
            request: Box::new(request),
            reply: Reply::Oneshot(tx),
        })
        .await?;
        rx.await.map_err(|_| EngineStopped)
    }

    /// Runs `f` on the writer inside a batch and returns its result once the
    /// batch is durable. `f` gets the time in ms since the epoch.
    pub async fn apply<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State, &mut Changes, u64) -> T + Send + 'static,
    ) -> Result<T, ApplyError> {
        let (tx, rx) = oneshot::channel();
        let mutation: Mutation = Box::new(move |state, changes, now| {
            let out = f(state, changes, now);
            Box::new(move |committed: Result<(), StoreError>| {
                drop(
                    tx.send(
                        committed
                            .map(|()| out)
                            .map_err(|e| ApplyError::Storage(e.to_string())),
                    ),
                );
            })
        });
        self.send(Command::Apply(mutation))
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }

    /// Runs `f` on the state and the store's transactions (after the
    /// current batch commits) and returns its result.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> T + Send + 'static,
    ) -> Result<T, EngineStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Read(Box::new(move |reader| {
            drop(tx.send(f(reader)));
        })))
        .await?;
        rx.await.map_err(|_| EngineStopped)
    }

    /// Runs `f` on the state (after the current batch commits) and returns its result.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, EngineStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Inspect(Box::new(move |state| {
            drop(tx.send(f(state)));
        })))
        .await?;
        rx.await.map_err(|_| EngineStopped)
    }
}

/// The writer: state, store, settings and the data key (to verify PINs and CVV2s).
pub struct Engine<S: Store> {
    state: State,
    store: S,
    config: EngineConfig,
    secrets: Option<CardSecrets>,
    /// What the prefetch read: index entries by key.
    fetched: state::HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the prefetch read: the first stored entry under a prefix.
    fetched_first: state::HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The holds the prefetch found due, for the sweep.
    due_holds: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// True while the prefetch runs: its reads are expected.
    prefetching: bool,
    /// The first read that failed since it was last taken.
    read_error: Option<StoreError>,
    /// Reads the prefetch did not foresee (each one a read on the execute path).
    prefetch_misses: u64,
}

/// Most holds one sweep releases (the next sweep goes on).
const SWEEP_MAX: usize = 10_000;
/// Transactions rewritten per commit when the indexes are built at open.
const REINDEX_BATCH: usize = 10_000;
/// The store's layout version: 2 has the transaction indexes on disk (the
/// change set writes it with the counters and the index mark,
/// `state::put_counters`).
const LAYOUT: &str = "2";
/// Keys deleted per commit when stale indexes are cleared at open.
const CLEAR_BATCH: usize = 10_000;

/// True when `key` is the hold entry `txn` holds now (authorized, with this expiry).
fn holds_entry(txn: &Txn, key: &[u8]) -> bool {
    txn.state == TxnState::Authorized
        && txn
            .hold_expires_ms
            .is_some_and(|expires| index::hold(expires, txn.id) == key)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .try_into()
        .unwrap_or(u64::MAX)
}

impl<S: Store> Engine<S> {
    /// Loads the whole state from the store.
    pub fn open(store: S, config: EngineConfig) -> Result<Engine<S>, StoreError> {
        let mut state = State {
            next_txn: 1,
            next_journal: 1,
            ..State::default()
        };
        for (k, v) in store.scan_prefix(keys::PROGRAM)? {
            let program: crate::domain::model::Program = decode(&k, &v)?;
            state.programs.insert(program.id.clone(), program);
        }
        for (k, v) in store.scan_prefix(keys::USER)? {
            let user: crate::domain::model::User = decode(&k, &v)?;
            state.users.insert(user.id.clone(), user);
        }
        for (k, v) in store.scan_prefix(keys::BALANCE)? {
            let balance: crate::domain::model::Balance = record::decode(&k, &v)?;
            state.balances.insert(balance.id.clone(), balance);
        }
        for (k, v) in store.scan_prefix(keys::CARD)? {
            let card: Card = decode(&k, &v)?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&card.pan_hash, &mut hash)
                .map_err(|_| StoreError::Corrupt(format!("card {}: bad PAN hash", card.id)))?;
            state.card_by_pan.insert(hash, card.id.clone());
            state.cards.insert(card.id.clone(), card);
        }
        for (k, v) in store.scan_prefix(keys::RECORD)? {
            let key = String::from_utf8_lossy(&k[keys::RECORD.len()..]).into_owned();
            state.records.insert(key, v);
        }
        let counter = |name: &str| -> Result<Option<u64>, StoreError> {
            match store.get(&keys::key(keys::META, name))? {
                Some(v) => String::from_utf8_lossy(&v)
                    .parse()
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt(format!("counter {name}"))),
                None => Ok(None),
            }
        };
        state.next_txn = counter("next_txn")?.unwrap_or(1);
        state.next_journal = counter("next_journal")?.unwrap_or(1);
        state.txns = TxnCache::with_capacity(config.txn_cache);
        let mut engine = Engine {
            state,
            store,
            config,
            secrets: None,
            fetched: state::HashMap::default(),
            fetched_first: state::HashMap::default(),
            due_holds: None,
            prefetching: false,
            read_error: None,
            prefetch_misses: 0,
        };
        engine.check_indexes()?;
        let orphans =
            engine
                .store
                .range(index::ORPHANS, &index::prefix_end(index::ORPHANS), false, 1)?;
        engine.state.orphans_possible = !orphans.is_empty();
        Ok(engine)
    }

    /// Refuses a store of a layout this version does not know, and builds
    /// the indexes again when they are not current: a store of layout 1
    /// (indexes in memory) has none, and a store a layout-1 version ran on
    /// since has stale ones (that version moved the counters, not the mark,
    /// see `index::MARK`). Stale entries would be worse than none (a hold
    /// released by the other version swept again, a reversal matched by it
    /// found as an orphan), so every index is cleared first.
    fn check_indexes(&mut self) -> Result<(), StoreError> {
        let layout = self.store.get(&keys::key(keys::META, "layout"))?;
        if let Some(other) = layout.as_deref().filter(|l| *l != LAYOUT.as_bytes()) {
            return Err(StoreError::Invalid(format!(
                "the store's layout is {:?}, written by a newer version of antaca; this version knows layout {LAYOUT}: run the newer version",
                String::from_utf8_lossy(other)
            )));
        }
        let mark = index::mark(self.state.next_txn, self.state.next_journal);
        let current = self.store.get(&keys::key(keys::META, index::MARK))?;
        if current.as_deref() == Some(mark.as_slice()) {
            return Ok(());
        }
        let txns = self
            .store
            .range(keys::TXN, &index::prefix_end(keys::TXN), false, 1)?;
        if layout.is_none() && current.is_none() && txns.is_empty() {
            // A new store: its first change set writes the mark.
            return Ok(());
        }
        if layout.is_some() {
            tracing::warn!(
                "the transaction indexes are not current (a version of antaca without them ran on this store since): building them again"
            );
        }
        self.clear_indexes()?;
        self.build_indexes()
    }

    /// Deletes every index entry, a page at a time.
    fn clear_indexes(&mut self) -> Result<(), StoreError> {
        for prefix in index::ALL {
            let end = index::prefix_end(prefix);
            loop {
                let page = self.store.range(prefix, &end, false, CLEAR_BATCH)?;
                if page.is_empty() {
                    break;
                }
                let mut batch = crate::store::WriteBatch::with_capacity(page.len());
                for (k, _) in page {
                    batch.delete(k);
                }
                self.store.commit(batch)?;
            }
        }
        Ok(())
    }

    /// Writes the index entries of every stored transaction, a page at a
    /// time, then the layout and the index mark.
    fn build_indexes(&mut self) -> Result<(), StoreError> {
        let end = index::prefix_end(keys::TXN);
        let mut start = keys::TXN.to_vec();
        let mut built = 0usize;
        loop {
            let page = self.store.range(&start, &end, false, REINDEX_BATCH)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            let mut batch = crate::store::WriteBatch::with_capacity(page.len() * 6);
            for (k, v) in &page {
                let txn: Txn = record::decode(k, v)?;
                let card_balance = self.state.card_balance(txn.card.as_ref());
                for (key, value) in index::entries(&txn, card_balance) {
                    batch.put(key, value);
                }
            }
            built += page.len();
            self.store.commit(batch)?;
        }
        // The mark last: a crash before it builds them all again.
        let mut batch = crate::store::WriteBatch::default();
        batch.put(keys::key(keys::META, "layout"), LAYOUT.as_bytes().to_vec());
        batch.put(
            keys::key(keys::META, index::MARK),
            index::mark(self.state.next_txn, self.state.next_journal),
        );
        self.store.commit(batch)?;
        if built > 0 {
            tracing::info!(
                transactions = built,
                "built the transaction indexes on disk"
            );
        }
        Ok(())
    }

    /// Gives the engine the data key it verifies PINs and CVV2s with; without
    /// it a presented PIN cannot be verified and a presented CVV2 never matches.
    pub fn with_secrets(mut self, secrets: CardSecrets) -> Engine<S> {
        self.secrets = Some(secrets);
        self
    }

    /// The state (for import, tests and offline tools).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state and the store's transactions, read only (tests, tools).
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            state: &self.state,
            store: &self.store,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// True when the store holds no programs yet.
    pub fn is_empty(&self) -> bool {
        self.state.programs.is_empty()
    }

    /// Applies `f` to the state and commits its changes (import, management operations).
    pub fn apply<T>(
        &mut self,
        f: impl FnOnce(&mut State, &mut Changes) -> T,
    ) -> Result<T, StoreError> {
        let mut changes = Changes::default();
        let out = f(&mut self.state, &mut changes);
        self.commit(changes)?;
        Ok(out)
    }

    /// Commits a change set as the writer does (benches drive `process` by hand).
    pub fn commit_for_bench(&mut self, changes: Changes) -> Result<(), StoreError> {
        self.commit(changes)
    }

    fn commit(&mut self, changes: Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            self.after_commit();
            return Ok(());
        }
        let batch = changes.to_batch(&self.state);
        let result = self
            .store
            .commit(batch)
            .inspect_err(|_| self.revert(changes));
        self.after_commit();
        result
    }

    /// What a batch leaves behind once the store has it (or has reverted
    /// it): the index entries are the store's now, the prefetch is spent,
    /// and the cache goes back within its bound.
    fn after_commit(&mut self) {
        self.state.pending_index.clear();
        self.fetched.clear();
        self.fetched_first.clear();
        self.due_holds = None;
        self.state.txns.trim();
    }

    /// Reads the prefetch did not foresee, so far (a test of the prefetch
    /// expects none).
    pub fn prefetch_misses(&self) -> u64 {
        self.prefetch_misses
    }

    /// Commits like [`Engine::commit`], telling `finish` once the batch is
    /// durable; an empty change set still waits for the batches before it
    /// (its answers may repeat theirs).
    fn commit_then(&mut self, changes: Changes, finish: Box<Finish>) -> Result<(), Refused> {
        let batch = changes.to_batch(&self.state);
        let result = self
            .store
            .commit_then(batch, finish)
            .inspect_err(|_| self.revert(changes));
        self.after_commit();
        result
    }

    /// Undoes a failed commit. The store may hold the batch (sled applies,
    /// then flushes; a log write may have reached the disk): put the old
    /// records back there and in memory, so that neither keeps an effect
    /// whose request is answered "system malfunction".
    fn revert(&mut self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let undo = changes.undo_batch();
        changes.undo(&mut self.state);
        if let Err(revert) = self.store.revert(undo) {
            tracing::error!(error = %revert, "could not revert a failed commit in the store");
        }
    }

    /// Starts the writer on its own thread and returns the handle that feeds it.
    /// The writer answers each request itself, waking its waiter.
    pub fn spawn(self) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
        self.start(None)
    }

    /// Starts the writer like [`Engine::spawn`], but hands each batch's
    /// answers to a [`ReplyRouter`] in one message: run the router on the
    /// runtime the connections live on, and a batch wakes that runtime once
    /// instead of once per answer (a wake from another thread is a syscall).
    pub fn spawn_routed(
        self,
    ) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>, ReplyRouter)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (handle, thread) = self.start(Some(tx))?;
        Ok((handle, thread, ReplyRouter { rx }))
    }

    fn start(
        mut self,
        router: Option<mpsc::UnboundedSender<Vec<(Reply, AuthResponse)>>>,
    ) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(self.config.queue_depth.max(1));
        // A store that starts refusing commits on its own thread wakes an
        // idle writer, which then stops (connections waiting for answers
        // that will not come see it stop, and a shutdown does not hang).
        let weak = tx.downgrade();
        self.store.on_refusal(Box::new(move || {
            if let Some(tx) = weak.upgrade() {
                let _ = tx.try_send(Command::Inspect(Box::new(|_| {})));
            }
        }));
        let status = std::sync::Arc::new(WriterStatus::default());
        let writer_status = status.clone();
        let thread = std::thread::Builder::new()
            .name("antaca-writer".into())
            .spawn(move || self.run(rx, &writer_status, router))?;
        Ok((EngineHandle { tx, status }, thread))
    }

    /// The writer loop: gather, decide, commit once, answer. Ends when every handle is dropped.
    fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        status: &WriterStatus,
        router: Option<mpsc::UnboundedSender<Vec<(Reply, AuthResponse)>>>,
    ) {
        use std::sync::atomic::Ordering;
        let batch_max = self.config.batch_max.max(1);
        let mut commands = Vec::with_capacity(batch_max);
        let mut replies: Vec<(Reply, AuthResponse)> = Vec::with_capacity(self.config.batch_max);
        let mut inspects: Vec<Result<Read, Inspect>> = Vec::new();
        let mut unread: Vec<usize> = Vec::new();
        let mut deliveries: Vec<Delivery> = Vec::new();
        loop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            commands.push(first);
            while commands.len() < batch_max {
                match rx.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            let now = now_ms();
            let batch_len = commands.len();
            // Prefetch: every read of the batch, before any change. A
            // request whose reads fail is answered "system malfunction"
            // and changes nothing.
            unread.clear();
            for (i, command) in commands.iter().enumerate() {
                let read = match command {
                    Command::Iso { request, .. } => self.prefetch(request),
                    Command::ExpireHolds => self.prefetch_holds(now),
                    _ => Ok(()),
                };
                if let Err(e) = read {
                    tracing::error!(error = %e, "a read of the store failed");
                    metrics::counter!("antaca_engine_read_failures_total").increment(1);
                    unread.push(i);
                }
            }
            let mut changes = Changes::for_requests(batch_len);
            for (i, command) in commands.drain(..).enumerate() {
                let failed = unread.contains(&i);
                match command {
                    Command::Iso { reply, .. } if failed => {
                        replies.push((reply, AuthResponse::outcome(Outcome::SystemMalfunction)));
                    }
                    Command::Iso { request, reply } => {
                        let response = self.process(&mut changes, &request, now);
                        replies.push((reply, response));
                    }
                    Command::ExpireHolds if failed => {}
                    Command::ExpireHolds => self.expire_holds(&mut changes, now),
                    Command::Inspect(f) => inspects.push(Err(f)),
                    Command::Read(f) => inspects.push(Ok(f)),
                    Command::Apply(f) => deliveries.push(f(&mut self.state, &mut changes, now)),
                }
            }
            if let Some(e) = self.read_error.take() {
                // A read the prefetch did not foresee failed while deciding,
                // and the lookup answered "not found": nothing decided on
                // that may stand. The whole batch is undone and answered
                // "system malfunction" (a retry decides again).
                tracing::error!(error = %e, batch = batch_len, "a read failed while deciding; the batch changes nothing");
                std::mem::take(&mut changes).undo(&mut self.state);
                for (_, response) in &mut replies {
                    *response = AuthResponse::outcome(Outcome::SystemMalfunction);
                }
                for deliver in deliveries.drain(..) {
                    deliver(Err(e.clone()));
                }
            }
            let batch_size = replies.len();
            let writes = !changes.is_empty();
            let flush_started = std::time::Instant::now();
            // The answers leave once the batch is on disk, perhaps while the
            // writer is already deciding the next one.
            let finish = Box::new(Finish {
                replies: std::mem::replace(&mut replies, Vec::with_capacity(batch_size)),
                deliveries: std::mem::take(&mut deliveries),
                router: router.clone(),
            });
            let committed = if batch_max == 1 {
                // One request, one log record, one fdatasync, nothing
                // overlapped: the baseline that shows what group commit buys.
                match self.commit(changes) {
                    Ok(()) => {
                        finish.durable();
                        Ok(())
                    }
                    Err(e) => Err((e, finish as Box<dyn OnDurable>)),
                }
            } else {
                self.commit_then(changes, finish)
            };
            let done = now_ms();
            if writes {
                metrics::histogram!("antaca_engine_commit_seconds")
                    .record(flush_started.elapsed().as_secs_f64());
                metrics::histogram!("antaca_engine_batch_size").record(batch_len as f64);
                if committed.is_ok() {
                    status.last_commit_ms.store(done, Ordering::Relaxed);
                }
            }
            metrics::gauge!("antaca_engine_queue_depth").set(rx.len() as f64);
            let refused = committed.is_err() || self.store.refusal().is_some();
            status.last_commit_failed.store(refused, Ordering::Relaxed);
            status.last_batch_ms.store(done, Ordering::Relaxed);
            if let Err((e, finish)) = committed {
                metrics::counter!("antaca_engine_commit_failures_total").increment(1);
                if let Some(reason) = self.store.refusal() {
                    // The store cannot say whether the batch is on disk (its undo
                    // or an fdatasync failed): a "declined" answer could be
                    // contradicted by a replay after a restart. Answer nothing, so
                    // the acquirers time out and reverse, and stop: new requests
                    // get "system malfunction" from the connections until a restart.
                    tracing::error!(error = %e, reason = %reason, batch_size, "the store refuses commits; the writer stops without answering its batch");
                    drop(finish);
                    break;
                }
                tracing::error!(error = %e, batch_size, "commit failed; answering the batch with system malfunction");
                finish.failed(e);
            }
            // A read sees only what is on disk: the effects it is shown
            // must not be lost to a crash (a notifier mails what it reads).
            if !inspects.is_empty() && self.store.wait_durable().is_err() {
                // The store refuses commits; the next batch stops the writer.
                inspects.clear();
            }
            let reader = Reader {
                state: &self.state,
                store: &self.store,
            };
            for f in inspects.drain(..) {
                match f {
                    Ok(read) => read(&reader),
                    Err(inspect) => inspect(&self.state),
                }
            }
        }
    }

    /// Processes one request against the state, recording its changes.
    pub fn process(
        &mut self,
        changes: &mut Changes,
        request: &AuthRequest,
        now: u64,
    ) -> AuthResponse {
        if let Some(txn) = self.txn_by_key(&request.idempotency_key()) {
            if txn.fingerprint != 0 && txn.fingerprint != request.fingerprint() {
                // Same key, another card, amount or processing code: not a duplicate
                // to replay, and not a new message we can tell apart. Nothing is recorded.
                return AuthResponse::outcome(Outcome::DuplicateTransmission);
            }
            return response_of(&txn);
        }
        let orphan = self.orphan_of(request);
        let txn = match request.class {
            _ if orphan.is_some() => self.reversed_before_arrival(changes, request, orphan, now),
            // Answered before the writer (`protocol::respond::network_management`); a direct caller gets the same.
            MessageClass::NetworkManagement => {
                return crate::protocol::respond::network_management()
            }
            MessageClass::Authorization if request.advice => {
                self.authorization_advice(changes, request, now)
            }
            MessageClass::Authorization => self.authorization(changes, request, now),
            MessageClass::Financial if request.advice => self.completion(changes, request, now),
            MessageClass::Financial => self.financial(changes, request, now),
            MessageClass::Reversal => self.reversal(changes, request, now),
            MessageClass::FileUpdate => self.file_update(changes, request, now),
        };
        let response = response_of(&txn);
        tracing::debug!(
            txn = txn.id,
            mti = %String::from_utf8_lossy(&request.mti),
            pan = txn.pan_masked.as_deref().unwrap_or("-"),
            outcome = txn.outcome.name(),
            "processed"
        );
        changes.put_txn(&mut self.state, txn);
        response
    }

    /// Reads into the cache every transaction and index entry that
    /// [`Engine::process`] will look at for `request` (its duplicate, an
    /// orphan reversal, its original and the original's money owner): the
    /// same lookups, made ahead, so that the execute step reads memory only.
    /// An error means the request cannot be decided now.
    pub fn prefetch(&mut self, request: &AuthRequest) -> Result<(), StoreError> {
        // A failure noted while deciding an earlier request is not this one's.
        self.read_error = None;
        self.prefetching = true;
        if self.txn_by_key(&request.idempotency_key()).is_none() {
            self.orphan_of(request);
            let classes = original_classes(request);
            if !classes.is_empty() {
                if let Some(found) = self.find_original(request, classes) {
                    self.money_owner(found);
                }
            }
        }
        self.prefetching = false;
        self.read_error.take().map_or(Ok(()), Err)
    }

    /// Reads the hold entries due at `now` and their transactions, for the sweep.
    fn prefetch_holds(&mut self, now: u64) -> Result<(), StoreError> {
        let due = self
            .store
            .range(index::HOLDS, &index::holds_until(now), false, SWEEP_MAX)?;
        for (k, _) in &due {
            if let Some(id) = index::id_of(k) {
                self.read_txn(id)?;
            }
        }
        self.due_holds = Some(due);
        Ok(())
    }

    /// The orphan reversal that names `request`, if it may have one.
    fn orphan_of(&mut self, request: &AuthRequest) -> Option<u64> {
        match request.class {
            MessageClass::Reversal | MessageClass::NetworkManagement | MessageClass::FileUpdate => {
                None
            }
            _ if !self.state.orphans_possible => None,
            _ => self.first_holder(&index::prefix(index::ORPHANS, &request.orphan_key())),
        }
    }

    /// Notes a failed read: the prefetch returns it; on the execute path
    /// the lookup answers "not found" and the writer undoes the batch.
    fn read_failed(&mut self, error: StoreError) {
        if !self.prefetching {
            tracing::error!(error = %error, "a read of the store failed while deciding");
            metrics::counter!("antaca_engine_read_failures_total").increment(1);
        }
        self.read_error.get_or_insert(error);
    }

    fn missed(&mut self) {
        if !self.prefetching {
            self.prefetch_misses += 1;
        }
    }

    /// An index entry's value: what the batch wrote, else what the prefetch
    /// read, else the store's.
    fn index_value(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(value) = self.state.index_entry(key) {
            return value.map(<[u8]>::to_vec);
        }
        if let Some(value) = self.fetched.get(key) {
            return value.clone();
        }
        self.missed();
        match self.store.get(key) {
            Ok(value) => {
                self.fetched.insert(key.to_vec(), value.clone());
                value
            }
            Err(e) => {
                self.read_failed(e);
                None
            }
        }
    }

    /// The lowest id under an index prefix: the store's first entry unless
    /// the batch deleted it, else the batch's first (the batch's ids are
    /// all above the store's).
    fn first_holder(&mut self, prefix: &[u8]) -> Option<u64> {
        let stored = match self.fetched_first.get(prefix) {
            Some(first) => first.clone(),
            None => {
                self.missed();
                let end = index::prefix_end(prefix);
                match self.store.range(prefix, &end, false, 1) {
                    Ok(page) => {
                        let first = page.into_iter().next().map(|(k, _)| k);
                        self.fetched_first.insert(prefix.to_vec(), first.clone());
                        first
                    }
                    Err(e) => {
                        self.read_failed(e);
                        None
                    }
                }
            }
        };
        if let Some(key) = stored.filter(|k| !self.state.index_deleted(k)) {
            return index::id_of(&key);
        }
        self.state.first_index_entry(prefix).and_then(index::id_of)
    }

    /// A transaction by id: the cache's, else the store's (then cached).
    fn txn(&mut self, id: u64) -> Option<Txn> {
        if let Some(txn) = self.state.txns.get(id) {
            return Some(txn.clone());
        }
        self.missed();
        match self.read_txn(id) {
            Ok(txn) => txn,
            Err(e) => {
                self.read_failed(e);
                None
            }
        }
    }

    /// Reads a transaction into the cache.
    fn read_txn(&mut self, id: u64) -> Result<Option<Txn>, StoreError> {
        if let Some(txn) = self.state.txns.get(id) {
            return Ok(Some(txn.clone()));
        }
        let key = keys::numbered(keys::TXN, id);
        let Some(bytes) = self.store.get(&key)? else {
            return Ok(None);
        };
        let txn: Txn = record::decode(&key, &bytes)?;
        self.state.txns.insert(txn.clone());
        Ok(Some(txn))
    }

    /// The transaction whose idempotency key is `key`.
    fn txn_by_key(&mut self, key: &str) -> Option<Txn> {
        let value = self.index_value(&index::by_key(key))?;
        let id = index::id_in(&value)?;
        self.txn(id).filter(|txn| txn.key == key)
    }

    /// The first transaction whose original key (what field 90/56 names) is `key`.
    fn txn_by_original_key(&mut self, key: &str) -> Option<Txn> {
        let id = self.first_holder(&index::prefix(index::BY_ORIGINAL, key))?;
        self.txn(id).filter(|txn| txn.original_key == key)
    }

    /// A message whose reversal came first: an advice or completion is
    /// acknowledged, a request declined; neither moves money.
    fn reversed_before_arrival(
        &mut self,
        changes: &mut Changes,
        request: &AuthRequest,
        reversal: Option<u64>,
        now: u64,
    ) -> Txn {
        let mut txn = self.open_txn(changes, request, now);
        txn.original = reversal;
        if request.advice {
            self.approve(&mut txn);
        } else {
            txn.outcome = Outcome::AlreadyReversed;
        }
        txn
    }

    /// A new transaction record for a request, with the card of its PAN,
    /// declined as invalid until decided.
    fn open_txn(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let id = changes.next_txn_id(&mut self.state);
        self.txn_record(id, request, self.card_of(request), now)
    }

    /// The record [`Engine::open_txn`] opens, under an id already taken.
    fn txn_record(&self, id: u64, request: &AuthRequest, card: Option<&Card>, now: u64) -> Txn {
        Txn {
            id,
            key: request.idempotency_key(),
            original_key: request.original_key(),
            mti: String::from_utf8_lossy(&request.mti).into_owned(),
            card: card.map(|c| c.id.clone()),
            pan_masked: request.pan_masked.clone(),
            processing_code: request
                .processing_code
                .map(|p| String::from_utf8_lossy(&p).into_owned()),
            amount_minor: request.amount_minor,
            currency: request.currency.map(|c| c.numeric),
            outcome: Outcome::InvalidTransaction,
            approval_code: None,
            additional_amounts: None,
            state: TxnState::None,
            legs: Vec::new(),
            held: Decimal::ZERO,
            charged: Decimal::ZERO,
            original: None,
            hold_expires_ms: None,
            at_ms: now,
            mcc: request.mcc.clone(),
            merchant_id: request.merchant_id.clone(),
            terminal: Some(request.terminal.clone()).filter(|t| !t.is_empty()),
            fingerprint: request.fingerprint(),
            orphan_of: None,
        }
    }

    fn card_for(&self, request: &AuthRequest) -> Option<Card> {
        self.card_of(request).cloned()
    }

    /// The card of a request's PAN, borrowed.
    fn card_of(&self, request: &AuthRequest) -> Option<&Card> {
        let hash = request.pan_hash?;
        let id = self.state.card_by_pan.get(&hash)?;
        self.state.cards.get(id)
    }

    /// The legs a card spends from, by its program's funding model.
    fn legs_for(&self, card: &Card) -> Vec<Leg> {
        ledger::legs_for(&self.state, card)
    }

    /// Verifies the CVV2 and PIN a request presents (forced operations skip both).
    fn verify_card_data(
        &self,
        card: Option<&Card>,
        request: &AuthRequest,
        operation: Operation,
    ) -> (Option<bool>, Option<bool>) {
        let Some(card) = card else {
            return (None, None);
        };
        if operation == Operation::Forced {
            return (None, None);
        }
        let cvv2_ok = request
            .cvv2
            .as_ref()
            .map(|cvv2| match (&self.secrets, &request.cvv2_pan) {
                (Some(secrets), Some(pan)) => {
                    crate::security::cvv::cvv2_verifies(secrets, card, pan.digits(), cvv2.digits())
                }
                _ => false,
            });
        let pin_ok = if request.pin_invalid {
            Some(false)
        } else {
            request.pin.as_ref().map(|pin| {
                match (&self.secrets, &card.pin_hash) {
                    (Some(secrets), Some(stored)) => {
                        crate::security::cvv::pin_matches(secrets, &card.id, stored, pin)
                    }
                    // A card without a PIN matches no PIN.
                    _ => false,
                }
            })
        };
        (cvv2_ok, pin_ok)
    }

    /// Decides a request for a card; returns the decision, the legs and what
    /// the PIN check does to the card's PIN tries (new count, lock).
    fn decide(
        &self,
        card: Option<&Card>,
        request: &AuthRequest,
        operation: Operation,
        now: u64,
    ) -> (Decision, Vec<Leg>, Option<authz::PinTries>) {
        let legs = card.map(|c| self.legs_for(c)).unwrap_or_default();
        let balances: Vec<&crate::domain::model::Balance> = legs
            .iter()
            .filter_map(|leg| self.state.balances.get(&leg.balance))
            .collect();
        if card.is_some() && (balances.len() != legs.len() || legs.is_empty()) {
            return (Decision::Decline(Outcome::InvalidTransaction), legs, None);
        }
        // A balance inquiry may come without a currency: it asks in the balance's.
        let balance_currency = balances
            .first()
            .and_then(|b| crate::domain::money::Currency::from_alpha(&b.currency));
        let Some(currency) = request.currency.or(balance_currency) else {
            let outcome = if card.is_none() {
                Outcome::UnknownCard
            } else {
                Outcome::FormatError
            };
            return (Decision::Decline(outcome), legs, None);
        };
        let (cvv2_ok, pin_ok) = self.verify_card_data(card, request, operation);
        let input = authz::Request {
            operation,
            amount_minor: request.amount_minor,
            currency,
            billing: request.billing,
            expiry: request.expiry,
            transmission: request.transmission,
            cvv2_ok,
            pin_ok,
            pin_unverifiable: request.pin_unverifiable,
        };
        let pin_tries = card.and_then(|c| authz::pin_tries_after(c, &input, now));
        (authz::decide(card, &balances, &input, now), legs, pin_tries)
    }

    fn approve(&self, txn: &mut Txn) {
        txn.outcome = Outcome::Approved;
        let mut code = [b'0'; 6];
        let mut rest = txn.id % 1_000_000;
        for digit in code.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        txn.approval_code = Some(String::from_utf8_lossy(&code).into_owned());
    }

    fn hold_expiry_ms(&self, now: u64) -> u64 {
        now.saturating_add(u64::try_from(self.config.hold_expiry.as_millis()).unwrap_or(u64::MAX))
    }

    /// Opens the transaction record of a request and decides it, with `spend`
    /// as the operation of a spending processing code. A decline comes back
    /// as the finished record in `Err`.
    // The record moves out either way; boxing it would add an allocation per request.
    #[allow(clippy::result_large_err)]
    fn open_and_decide(
        &mut self,
        changes: &mut Changes,
        request: &AuthRequest,
        spend: Operation,
        now: u64,
    ) -> Result<(Txn, ledger::Kind, Decimal, Vec<Leg>), Txn> {
        let id = changes.next_txn_id(&mut self.state);
        let kind = ledger::kind_of(request);
        let operation = match kind {
            ledger::Kind::Spend => spend,
            ledger::Kind::Credit => Operation::Credit,
            ledger::Kind::Inquiry => Operation::Inquiry,
            ledger::Kind::Unsupported => {
                let txn = self.txn_record(id, request, self.card_of(request), now);
                return Err(self.finish_declined(changes, txn, Outcome::InvalidTransaction));
            }
        };
        // The card is borrowed, not copied: only a change of its PIN tries
        // needs a card of its own.
        let card = self.card_of(request);
        let txn = self.txn_record(id, request, card, now);
        let (decision, legs, pin_tries) = self.decide(card, request, operation, now);
        let tried = match (pin_tries, card) {
            (Some(after), Some(card)) => {
                let mut card = card.clone();
                card.pin_tries = after.tries;
                if after.lock.is_some() {
                    card.lock = after.lock;
                }
                Some(card)
            }
            _ => None,
        };
        if let Some(card) = tried {
            // Durable with the batch even when the request is declined.
            self.put_card(changes, card);
        }
        match decision {
            Decision::Decline(outcome) => Err(self.finish_declined(changes, txn, outcome)),
            Decision::Approve { amount } => Ok((txn, kind, amount, legs)),
        }
    }

    /// 0100: place a hold; 31/30 report balances; 20 approves a refund without moving money.
    fn authorization(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let (mut txn, kind, amount, legs) =
            match self.open_and_decide(changes, request, Operation::Hold, now) {
                Ok(decided) => decided,
                Err(declined) => return declined,
            };
        // From here the request is approved.
        self.approve(&mut txn);
        match kind {
            ledger::Kind::Spend => self.hold(changes, &mut txn, legs, amount, now),
            ledger::Kind::Inquiry => {
                txn.additional_amounts = Some(ledger::inquiry_amounts(&self.state, &legs, request));
            }
            _ => {}
        }
        self.finish(changes, txn)
    }

    /// 0120: the network approved on our behalf; hold even past available funds.
    fn authorization_advice(
        &mut self,
        changes: &mut Changes,
        request: &AuthRequest,
        now: u64,
    ) -> Txn {
        let ours = self
            .find_original(request, ADVISED)
            .filter(|t| t.outcome == Outcome::Approved)
            .map(|t| t.id);
        if request.advice_response_approved == Some(false)
            || ours.is_some()
            || ledger::kind_of(request) != ledger::Kind::Spend
        {
            // The network declined, or we already approved this one, or nothing to post: acknowledge.
            let mut txn = self.open_txn(changes, request, now);
            txn.original = ours;
            self.approve(&mut txn);
            return self.finish(changes, txn);
        }
        let (mut txn, _, amount, legs) =
            match self.open_and_decide(changes, request, Operation::Forced, now) {
                Ok(decided) => decided,
                Err(declined) => return declined,
            };
        self.approve(&mut txn);
        self.hold(changes, &mut txn, legs, amount, now);
        self.finish(changes, txn)
    }

    /// 0200: debit at once; 20 credits (refund); 31/30 report balances.
    fn financial(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let (mut txn, kind, amount, legs) =
            match self.open_and_decide(changes, request, Operation::Debit, now) {
                Ok(decided) => decided,
                Err(declined) => return declined,
            };
        self.approve(&mut txn);
        match kind {
            ledger::Kind::Spend => self.charge(changes, &mut txn, legs, amount, now),
            ledger::Kind::Credit => self.refund(changes, &mut txn, legs, amount, now),
            _ => {
                txn.additional_amounts = Some(ledger::inquiry_amounts(&self.state, &legs, request));
            }
        }
        self.finish(changes, txn)
    }

    fn hold(
        &mut self,
        changes: &mut Changes,
        txn: &mut Txn,
        legs: Vec<Leg>,
        amount: Decimal,
        now: u64,
    ) {
        if amount > Decimal::ZERO {
            self.move_money(changes, txn, &legs, Movement::Hold(amount), now);
            txn.state = TxnState::Authorized;
            txn.held = amount;
            txn.hold_expires_ms = Some(self.hold_expiry_ms(now));
            txn.legs = legs;
        }
    }

    fn charge(
        &mut self,
        changes: &mut Changes,
        txn: &mut Txn,
        legs: Vec<Leg>,
        amount: Decimal,
        now: u64,
    ) {
        if amount > Decimal::ZERO {
            self.move_money(changes, txn, &legs, Movement::Debit(amount), now);
            txn.state = TxnState::Cleared;
            txn.charged = amount;
            txn.legs = legs;
        }
    }

    fn refund(
        &mut self,
        changes: &mut Changes,
        txn: &mut Txn,
        legs: Vec<Leg>,
        amount: Decimal,
        now: u64,
    ) {
        if amount > Decimal::ZERO {
            self.move_money(changes, txn, &legs, Movement::Credit(amount), now);
            txn.state = TxnState::Cleared;
            txn.charged = -amount;
            txn.legs = legs;
        }
    }

    /// 0220: post the hold of the original authorization with the completion's
    /// amount; without an open hold to post, charge directly (the network cleared it).
    fn completion(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let mut txn = self.open_txn(changes, request, now);
        let kind = ledger::kind_of(request);
        if kind == ledger::Kind::Inquiry || kind == ledger::Kind::Unsupported {
            self.approve(&mut txn);
            return self.finish(changes, txn);
        }
        let original = self
            .find_original(request, COMPLETED)
            .map(|found| self.money_owner(found));
        let (decision, legs, _) =
            self.decide(self.card_of(request), request, Operation::Forced, now);
        let amount = match (decision, &original) {
            (Decision::Approve { amount }, _) => amount,
            // Settled in a currency we cannot convert: post the authorization's
            // hold in proportion to the amounts the network sent.
            (Decision::Decline(Outcome::CurrencyMismatch), Some(auth))
                if auth.state == TxnState::Authorized
                    && auth.currency == request.currency.map(|c| c.numeric) =>
            {
                ledger::in_proportion(
                    auth.held,
                    request.amount_minor,
                    auth.amount_minor,
                    &self.state,
                    &auth.legs,
                )
            }
            (Decision::Decline(outcome), _) => return self.finish_declined(changes, txn, outcome),
        };
        self.approve(&mut txn);
        if kind == ledger::Kind::Credit {
            self.refund(changes, &mut txn, legs, amount, now);
            return self.finish(changes, txn);
        }
        match original {
            Some(mut auth) if auth.state == TxnState::Authorized => {
                let movement = Movement::Capture {
                    held: auth.held,
                    amount,
                };
                self.move_money(changes, &txn, &auth.legs, movement, now);
                auth.held = Decimal::ZERO;
                auth.charged = amount;
                auth.state = TxnState::Cleared;
                // From now on the authorization stands at the cleared amount:
                // a partial reversal is measured against it.
                auth.amount_minor = request.amount_minor;
                auth.currency = request.currency.map(|c| c.numeric);
                txn.original = Some(auth.id);
                txn.state = TxnState::Cleared;
                changes.put_txn(&mut self.state, auth);
            }
            Some(auth) if auth.state == TxnState::Cleared => {
                // Already completed under another message: acknowledge, do not charge twice.
                txn.original = Some(auth.id);
            }
            other => {
                txn.original = other.map(|t| t.id);
                self.charge(changes, &mut txn, legs, amount, now);
            }
        }
        self.finish(changes, txn)
    }

    /// Writes a changed card through the batch (its PAN hash is its index key).
    fn put_card(&mut self, changes: &mut Changes, card: Card) {
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(&card.pan_hash, &mut hash).is_err() {
            // Engine::open refuses such a card; one in memory is a bug.
            debug_assert!(false, "card {} has a malformed PAN hash", card.id);
            return;
        }
        changes.put_card(&mut self.state, card, hash);
    }

    /// 0302/1302 file update: add the card to the exception file (lock it
    /// with the reason sent) or delete it from the file (unlock it). An
    /// irreversible lock (1, 2, 5, 8) is never lifted nor replaced by another
    /// reason: refused. The card change commits with the batch, before the answer.
    fn file_update(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let txn = self.open_txn(changes, request, now);
        let card = self.card_for(request);
        let Some(mut card) = card else {
            return self.finish_declined(changes, txn, Outcome::UnknownCard);
        };
        if card.state == crate::domain::model::CardState::Removed {
            return self.finish_declined(changes, txn, Outcome::CardRemoved);
        }
        let irreversible = card
            .lock
            .and_then(lock_reason)
            .is_some_and(|r| r.irreversible);
        match request.file_action {
            Some(FileAction::Add { reason }) => {
                if card.lock == Some(reason) {
                    // Already on file with this reason: nothing to change.
                } else if irreversible {
                    return self.finish_declined(changes, txn, Outcome::FileUpdateRefused);
                } else {
                    card.lock = Some(reason);
                    self.put_card(changes, card);
                }
            }
            Some(FileAction::Delete) => {
                if irreversible {
                    return self.finish_declined(changes, txn, Outcome::FileUpdateRefused);
                }
                if card.lock.is_some() {
                    if card.lock == Some(6) {
                        // Lifting a PIN-tries lock gives the cardholder fresh tries.
                        card.pin_tries = 0;
                    }
                    card.lock = None;
                    self.put_card(changes, card);
                }
            }
            Some(FileAction::Other) | None => {
                return self.finish_declined(changes, txn, Outcome::FileUpdateUnsupported)
            }
        }
        let mut txn = txn;
        self.approve(&mut txn);
        self.finish(changes, txn)
    }

    /// 0400/0420: bring the original down to the replacement amount (0 when
    /// full): release held funds or credit back charged ones. Idempotent by
    /// target. An unknown original is acknowledged, moves nothing, and is
    /// remembered so that the original, if it arrives late, is not approved.
    fn reversal(&mut self, changes: &mut Changes, request: &AuthRequest, now: u64) -> Txn {
        let mut txn = self.open_txn(changes, request, now);
        self.approve(&mut txn);
        let Some(found) = self.find_original(request, REVERSED) else {
            txn.orphan_of = Some(match &request.original {
                Some(o) => format!(
                    "{}|{}|{}",
                    String::from_utf8_lossy(&o.stan),
                    o.datetime,
                    o.acquirer
                ),
                None => request.orphan_key(),
            });
            return self.finish(changes, txn);
        };
        let mut owner = self.money_owner(found);
        txn.original = Some(owner.id);
        let Some(currency) = owner
            .legs
            .first()
            .and_then(|leg| self.state.balances.get(&leg.balance))
            .and_then(|b| crate::domain::money::Currency::from_alpha(&b.currency))
        else {
            return self.finish(changes, txn);
        };
        let current = match owner.state {
            TxnState::Authorized => owner.held,
            TxnState::Cleared => owner.charged.abs(),
            TxnState::Reversed | TxnState::None => return self.finish(changes, txn),
        };
        let target = match request.replacement_amount {
            None => Decimal::ZERO,
            Some(replacement) => {
                ledger::replacement_in_balance_currency(&owner, replacement, current, currency)
            }
        };
        if target >= current {
            return self.finish(changes, txn);
        }
        let delta = current - target;
        let legs = owner.legs.clone();
        match owner.state {
            TxnState::Authorized => {
                self.move_money(changes, &txn, &legs, Movement::Release(delta), now);
                owner.held = target;
            }
            _ if owner.charged > Decimal::ZERO => {
                self.move_money(changes, &txn, &legs, Movement::Credit(delta), now);
                owner.charged = target;
            }
            _ => {
                self.move_money(changes, &txn, &legs, Movement::Debit(delta), now);
                owner.charged = -target;
            }
        }
        if target.is_zero() {
            owner.state = TxnState::Reversed;
        }
        changes.put_txn(&mut self.state, owner);
        self.finish(changes, txn)
    }

    /// The transaction that holds the money of `found`: a completion that
    /// captured an authorization's hold, or an advice acknowledged because we
    /// had approved its authorization, moved nothing itself; the authorization did.
    fn money_owner(&mut self, found: Txn) -> Txn {
        match (found.legs.is_empty(), found.original) {
            (true, Some(id)) => self.txn(id).unwrap_or(found),
            _ => found,
        }
    }

    /// The original a completion or reversal names (field 90/56), or else the
    /// message of one of `classes` (x100, x200 …) with the same acquirer, STAN,
    /// date-time and terminal; either way only a message of the same card.
    /// Field 90 names an original by MTI, STAN, date-time and acquirer, which
    /// an acquirer must not reuse; one that does must not have a reversal on
    /// one card move the money of another card.
    fn find_original(&mut self, request: &AuthRequest, classes: &[&[u8; 3]]) -> Option<Txn> {
        let card = request
            .pan_hash
            .and_then(|hash| self.state.card_by_pan.get(&hash))
            .cloned();
        let same_card = |txn: &Txn| request.pan_hash.is_none() || txn.card == card;
        if let Some(original) = &request.original {
            let key = crate::protocol::keys::original_key(
                &original.mti,
                &original.stan,
                &original.datetime,
                &original.acquirer,
            );
            let named = self.txn_by_original_key(&key);
            if named.as_ref().is_none_or(same_card) {
                return named;
            }
            // The key names another card's message (the first to take it):
            // the original is then the message with those fields sent from
            // this request's terminal.
            let key = crate::protocol::keys::idempotency_key(
                &original.mti,
                &original.acquirer,
                &original.stan,
                &original.datetime,
                &request.terminal,
            );
            return self.txn_by_key(&key).filter(same_card);
        }
        for class in classes {
            let mut mti = request.mti;
            mti[1..4].copy_from_slice(&class[..]);
            let key = crate::protocol::keys::idempotency_key(
                &mti,
                &request.acquirer,
                &request.stan,
                &request.key_datetime,
                &request.terminal,
            );
            if let Some(found) = self.txn_by_key(&key).filter(same_card) {
                return Some(found);
            }
        }
        None
    }

    /// Releases every hold whose expiry has passed.
    /// Releases every hold whose expiry has passed, up to [`SWEEP_MAX`] of
    /// them (the next sweep goes on): the holds on disk (the prefetch's, or
    /// read now) and those of writes not yet in the store.
    pub fn expire_holds(&mut self, changes: &mut Changes, now: u64) {
        let stored = match self.due_holds.take() {
            Some(due) => due,
            None => match self.prefetch_holds(now) {
                Ok(()) => self.due_holds.take().unwrap_or_default(),
                Err(e) => {
                    self.read_failed(e);
                    return;
                }
            },
        };
        // The store's entries, then this batch's own: a hold taken in this
        // batch with an expiry already past (a zero hold period) is due too.
        let until = index::holds_until(now);
        let mut due: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (k, v) in self.state.pending_index.range(index::HOLDS.to_vec()..until) {
            match v {
                Some(v) => due.insert(k.clone(), v.clone()),
                // Deleted in this batch: captured, reversed or swept since read.
                None => due.remove(k),
            };
        }
        for (key, value) in due {
            let Some(id) = index::id_of(&key) else {
                changes.drop_stale_entry(&mut self.state, &key, value);
                continue;
            };
            let hold = self.txn(id);
            let Some(mut hold) = hold.filter(|h| holds_entry(h, &key)) else {
                // No transaction holds this entry (its record is gone, or
                // it was released by a version that kept its indexes in
                // memory): delete it, or every sweep would read it again.
                tracing::warn!(
                    txn = id,
                    "a hold index entry no open hold justifies: deleted"
                );
                changes.drop_stale_entry(&mut self.state, &key, value);
                continue;
            };
            if hold.held > Decimal::ZERO {
                let legs = hold.legs.clone();
                self.move_money(changes, &hold, &legs, Movement::Release(hold.held), now);
            }
            hold.held = Decimal::ZERO;
            hold.state = TxnState::Reversed;
            changes.put_txn(&mut self.state, hold);
        }
    }

    fn move_money(
        &mut self,
        changes: &mut Changes,
        txn: &Txn,
        legs: &[Leg],
        movement: Movement,
        now: u64,
    ) {
        let Some(entry) = ledger::entry(&mut self.state, changes, legs, movement, txn.id, now)
        else {
            return;
        };
        changes.journal(&mut self.state, entry);
    }

    fn finish_declined(&mut self, changes: &mut Changes, mut txn: Txn, outcome: Outcome) -> Txn {
        txn.outcome = outcome;
        self.finish(changes, txn)
    }

    fn finish(&mut self, _changes: &mut Changes, txn: Txn) -> Txn {
        debug_assert!(txn.outcome != Outcome::Approved || txn.approval_code.is_some());
        txn
    }
}

/// The classes of message a completion's original may be (x100, x120).
const COMPLETED: &[&[u8; 3]] = &[b"100", b"120"];
/// The classes of message a reversal's original may be.
const REVERSED: &[&[u8; 3]] = &[b"100", b"200", b"120", b"220"];
/// The classes of message an authorization advice's original may be.
const ADVISED: &[&[u8; 3]] = &[b"100"];

/// The classes of the originals [`Engine::process`] looks for on behalf of
/// `request` (none for a message that names no original).
fn original_classes(request: &AuthRequest) -> &'static [&'static [u8; 3]] {
    match request.class {
        MessageClass::Authorization if request.advice => ADVISED,
        MessageClass::Financial if request.advice => COMPLETED,
        MessageClass::Reversal => REVERSED,
        _ => &[],
    }
}

/// The stored answer of a transaction.
pub fn response_of(txn: &Txn) -> AuthResponse {
    AuthResponse {
        outcome: txn.outcome,
        approval_code: txn.approval_code.clone(),
        additional_amounts: txn.additional_amounts.clone(),
    }
}
