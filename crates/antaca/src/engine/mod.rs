//! The one orchestrator and writer. Connections send it requests; it loads
//! the card and balances from memory, asks [`authz::decide`], applies the
//! effects to memory, and commits every request that arrived meanwhile as
//! one batch (group commit). The store makes a batch durable on a thread of
//! its own while the writer decides the next ([`Store::commit_then`]); a
//! reply leaves only after its batch, and every batch before it, is on
//! disk. If a commit fails the batch is undone in memory and every request
//! in it is answered with the system-malfunction code.
//!
//! Owns: the state in memory and the only thread that changes it. Must never
//! touch: a socket or a wire format (requests arrive typed, from `protocol`
//! and `manage`), or the disk except through the `Store` trait.

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
use state::{decode, Changes, State};
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            hold_expiry: Duration::from_hours(168),
            batch_max: 4096,
            queue_depth: 65_536,
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
        for (k, v) in store.scan_prefix(keys::TXN)? {
            let txn: Txn = record::decode(&k, &v)?;
            state.index_txn(txn);
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
        Ok(Engine {
            state,
            store,
            config,
            secrets: None,
        })
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
            return Ok(());
        }
        let batch = changes.to_batch(&self.state);
        self.store
            .commit(batch)
            .inspect_err(|_| self.revert(changes))
    }

    /// Commits like [`Engine::commit`], telling `finish` once the batch is
    /// durable; an empty change set still waits for the batches before it
    /// (its answers may repeat theirs).
    fn commit_then(&mut self, changes: Changes, finish: Box<Finish>) -> Result<(), Refused> {
        let batch = changes.to_batch(&self.state);
        self.store
            .commit_then(batch, finish)
            .inspect_err(|_| self.revert(changes))
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
        let mut inspects: Vec<Inspect> = Vec::new();
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
            let mut changes = Changes::for_requests(batch_len);
            for command in commands.drain(..) {
                match command {
                    Command::Iso { request, reply } => {
                        let response = self.process(&mut changes, &request, now);
                        replies.push((reply, response));
                    }
                    Command::ExpireHolds => self.expire_holds(&mut changes, now),
                    Command::Inspect(f) => inspects.push(f),
                    Command::Apply(f) => deliveries.push(f(&mut self.state, &mut changes, now)),
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
            for f in inspects.drain(..) {
                f(&self.state);
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
        if let Some(txn) = self.state.txn_by_key(&request.idempotency_key()) {
            if txn.fingerprint != 0 && txn.fingerprint != request.fingerprint() {
                // Same key, another card, amount or processing code: not a duplicate
                // to replay, and not a new message we can tell apart. Nothing is recorded.
                return AuthResponse::outcome(Outcome::DuplicateTransmission);
            }
            return response_of(txn);
        }
        let orphan = match request.class {
            MessageClass::Reversal | MessageClass::NetworkManagement | MessageClass::FileUpdate => {
                None
            }
            _ if self.state.orphan_reversals.is_empty() => None,
            _ => self.state.orphan_reversal(&request.orphan_key()),
        };
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
            .find_original(request, &[b"100"])
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
            .find_original(request, &[b"100", b"120"])
            .map(|found| self.money_owner(found).clone());
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
        let Some(found) = self.find_original(request, &[b"100", b"200", b"120", b"220"]) else {
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
        let mut owner = self.money_owner(found).clone();
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
    fn money_owner<'a>(&'a self, found: &'a Txn) -> &'a Txn {
        match (found.legs.is_empty(), found.original) {
            (true, Some(id)) => self.state.txn(id).unwrap_or(found),
            _ => found,
        }
    }

    /// The original a completion or reversal names (field 90/56), or else the
    /// message of one of `classes` (x100, x200 …) with the same acquirer, STAN,
    /// date-time and terminal; either way only a message of the same card.
    /// Field 90 names an original by MTI, STAN, date-time and acquirer, which
    /// an acquirer must not reuse; one that does must not have a reversal on
    /// one card move the money of another card.
    fn find_original(&self, request: &AuthRequest, classes: &[&[u8; 3]]) -> Option<&Txn> {
        let card = request
            .pan_hash
            .and_then(|hash| self.state.card_by_pan.get(&hash));
        let same_card = |txn: &&Txn| request.pan_hash.is_none() || txn.card.as_ref() == card;
        if let Some(original) = &request.original {
            let key = crate::protocol::keys::original_key(
                &original.mti,
                &original.stan,
                &original.datetime,
                &original.acquirer,
            );
            let named = self.state.txn_by_original_key(&key);
            if named.is_none_or(|txn| same_card(&txn)) {
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
            return self.state.txn_by_key(&key).filter(same_card);
        }
        classes.iter().find_map(|class| {
            let mut mti = request.mti;
            mti[1..4].copy_from_slice(&class[..]);
            let key = crate::protocol::keys::idempotency_key(
                &mti,
                &request.acquirer,
                &request.stan,
                &request.key_datetime,
                &request.terminal,
            );
            self.state.txn_by_key(&key).filter(same_card)
        })
    }

    /// Releases every hold whose expiry has passed.
    pub fn expire_holds(&mut self, changes: &mut Changes, now: u64) {
        let expired: Vec<u64> = self
            .state
            .active_holds
            .iter()
            .take_while(|(expires, _)| *expires <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in expired {
            let Some(mut hold) = self.state.txn(id).cloned() else {
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

/// The stored answer of a transaction.
pub fn response_of(txn: &Txn) -> AuthResponse {
    AuthResponse {
        outcome: txn.outcome,
        approval_code: txn.approval_code.clone(),
        additional_amounts: txn.additional_amounts.clone(),
    }
}
