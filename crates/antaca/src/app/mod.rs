//! Starting and stopping a whole engine: store, writer thread, ISO 8583 and
//! HTTP listeners on a network thread. `main` and the tests both use it.
//!
//! `start_with` runs named steps in order: load the spec, import a portfolio
//! (`import_portfolio`), start the writer, bind the listeners and load the CA
//! (`bind_listeners`), load the JWE keys, build the ISO and HTTP contexts
//! (`iso_context`, `http_context`), then start the network thread
//! (`spawn_network`: listeners, notifier, `housekeeping`). It decides nothing
//! about a transaction and never touches the store after handing it to the writer.
//!
//! Owns: configuration (`config`), start-up and shutdown, telemetry
//! (`telemetry`: logging and the Prometheus recorder). Must never touch: a
//! decision, a record, a field; no module of the library imports `app`.

use crate::engine::{now_ms, Command, Engine, EngineConfig, EngineHandle, ReplyRouter};
use crate::iso8583::Spec;
use crate::iso_server::{IsoConfig, IsoContext};
use crate::manage::error::ErrorCode;
use crate::manage::portfolio::{self, Portfolio};
use crate::net::framing::LengthHeader;
use crate::protocol::Profile;
use crate::security::secrets::CardSecrets;
use crate::store::{DiskStore, Store, StoreConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod telemetry;

/// The demo portfolio, embedded so `serve` works from any directory.
pub const DEMO_PORTFOLIO: &str = include_str!("../../../../fixtures/demo-portfolio.json");

/// A boxed error with a message meant for the operator.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to serve and how.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Data directory.
    pub data: PathBuf,
    /// The store's settings (its backend, memory budget, log).
    pub store: StoreConfig,
    /// ISO 8583 listen address.
    pub iso_listen: String,
    /// HTTP listen address.
    pub http_listen: String,
    /// TLS listen address of the partner channel (`/secure`); `None` serves no TLS listener.
    pub secure_listen: Option<String>,
    /// Built-in spec name or spec file path.
    pub spec: String,
    /// Portfolio to import into the empty store; `None` loads the demo into an empty store.
    pub portfolio: Option<PathBuf>,
    /// Listener settings.
    pub iso: IsoConfig,
    /// Engine settings.
    pub engine: EngineConfig,
    /// How often expired holds are swept.
    pub sweep_interval: Duration,
    /// HTTP plane settings.
    pub http: crate::http::HttpConfig,
    /// Where partner notifications are mailed; `None` keeps them queued in the outbox.
    pub smtp: Option<crate::integrations::notify::SmtpConfig>,
    /// How often the outbox is looked at.
    pub notify_interval: Duration,
    /// How long a delivered notification is kept before the notifier deletes it.
    pub outbox_sent_retention: Duration,
    /// The zone PIN key PIN blocks (field 52) arrive under; `None`: a message
    /// with a PIN block is declined as "PIN cannot be verified".
    pub zpk: Option<crate::security::pinblock::ZonePinKey>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            data: PathBuf::from("./antaca-data"),
            store: StoreConfig::default(),
            iso_listen: "127.0.0.1:8583".into(),
            http_listen: "127.0.0.1:8080".into(),
            secure_listen: Some("127.0.0.1:8443".into()),
            spec: "iso87ascii".into(),
            portfolio: None,
            iso: IsoConfig::default(),
            engine: EngineConfig::default(),
            sweep_interval: Duration::from_mins(1),
            http: crate::http::HttpConfig::default(),
            smtp: None,
            notify_interval: Duration::from_secs(2),
            outbox_sent_retention: crate::integrations::notify::SENT_RETENTION_DEFAULT,
            zpk: None,
        }
    }
}

/// Opens the store (the backend the directory holds, see
/// [`DiskStore::open`]) and data key in `data`.
pub fn open(
    data: &Path,
    config: EngineConfig,
) -> Result<(Engine<DiskStore>, CardSecrets), BoxError> {
    open_with_store(data, StoreConfig::default(), config)
}

/// Opens the store with its settings `store`, and the data key, in `data`.
pub fn open_with_store(
    data: &Path,
    store: StoreConfig,
    config: EngineConfig,
) -> Result<(Engine<DiskStore>, CardSecrets), BoxError> {
    let store = DiskStore::open_with(data, store)
        .map_err(|e| format!("cannot open the store in {}: {e}", data.display()))?;
    let secrets =
        CardSecrets::load_or_create(data).map_err(|e| format!("cannot load the data key: {e}"))?;
    Ok((Engine::open(store, config)?, secrets))
}

/// A running engine.
pub struct Running {
    /// Where ISO 8583 is served.
    pub iso_addr: SocketAddr,
    /// Where HTTP is served.
    pub http_addr: SocketAddr,
    /// Where the partner channel is served over TLS.
    pub secure_addr: Option<SocketAddr>,
    engine: Option<EngineHandle>,
    /// What `serve` prints at start: listen addresses and demo cards.
    pub banner: String,
    shutdown: CancellationToken,
    network: Option<std::thread::JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// A handle to the writer (tests inspect state through it).
    pub fn engine(&self) -> EngineHandle {
        match &self.engine {
            Some(engine) => engine.clone(),
            None => unreachable!("the handle is only taken while stopping"),
        }
    }

    /// Stops accepting, answers what is in flight, lets the writer commit, and waits.
    pub fn stop(mut self) {
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        self.shutdown.cancel();
        if let Some(network) = self.network.take() {
            let _ = network.join();
        }
        // The network thread held the other handles; ours is the last one.
        self.engine.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

/// Opens the store (importing a portfolio if asked, or the demo into an empty
/// store), starts the writer and both listeners, and returns once they listen.
pub fn start(options: ServeOptions) -> Result<Running, BoxError> {
    let (engine, secrets) =
        open_with_store(&options.data, options.store.clone(), options.engine.clone())?;
    start_with(engine, secrets, options)
}

/// Like [`start`], over any store (tests use the in-memory one).
pub fn start_with<S: Store>(
    mut engine: Engine<S>,
    secrets: CardSecrets,
    options: ServeOptions,
) -> Result<Running, BoxError> {
    let spec = Spec::load(&options.spec).map_err(|e| format!("spec {:?}: {e}", options.spec))?;
    let metrics = telemetry::metrics_handle();
    let mut banner = import_portfolio(&mut engine, &secrets, options.portfolio.as_deref())?;
    let cards = describe_cards(engine.state());
    let engine = engine.with_secrets(secrets.clone());
    let (handle, writer, router) = engine.spawn_routed()?;
    let bound = bind_listeners(&options)?;
    banner.push_str(&describe_listeners(&spec, &options, &bound));
    banner.push_str(&cards);

    let jwe_keys = crate::http::jwe::ServerKeys::load_or_create(&options.data)
        .map_err(|e| format!("JWE keys: {e}"))?;
    let card_secrets = secrets.clone();
    let shutdown = CancellationToken::new();
    let iso_context = Arc::new(iso_context(spec, secrets, &options, handle.clone()));
    let listeners = Arc::new(crate::http::Listeners {
        secure: bound
            .secure
            .as_ref()
            .map(|_| std::sync::atomic::AtomicBool::new(false)),
        ..crate::http::Listeners::default()
    });
    let http_context = http_context(
        handle.clone(),
        &options,
        bound.ca.clone(),
        jwe_keys,
        card_secrets,
        listeners.clone(),
        metrics,
    );
    let (iso_addr, http_addr, secure_addr) = (bound.iso_addr, bound.http_addr, bound.secure_addr);
    let network = spawn_network(Network {
        iso_listener: bound.iso,
        http_listener: bound.http,
        secure: bound.secure,
        ca: bound.ca,
        router,
        iso_context,
        http_context: Arc::new(http_context),
        listeners,
        engine: handle.clone(),
        smtp: options.smtp.clone(),
        notify_interval: options.notify_interval,
        outbox_sent_retention: options.outbox_sent_retention,
        sweep_interval: options.sweep_interval,
        metrics,
        shutdown: shutdown.clone(),
    })?;
    Ok(Running {
        iso_addr,
        http_addr,
        secure_addr,
        engine: Some(handle),
        banner,
        shutdown,
        network: Some(network),
        writer: Some(writer),
    })
}

/// Imports the portfolio file into the store, or the demo portfolio into an
/// empty one; returns the banner's first line (empty when nothing was imported).
fn import_portfolio<S: Store>(
    engine: &mut Engine<S>,
    secrets: &CardSecrets,
    portfolio: Option<&Path>,
) -> Result<String, BoxError> {
    let mut banner = String::new();
    match portfolio {
        Some(file) => {
            let portfolio = Portfolio::read(file)?;
            let summary = portfolio::import(engine, &portfolio, secrets, now_ms())?;
            banner.push_str(&format!(
                "imported {} ({} cards)\n",
                file.display(),
                summary.cards
            ));
        }
        None if engine.is_empty() => {
            let portfolio = Portfolio::parse(DEMO_PORTFOLIO)?;
            portfolio::import(engine, &portfolio, secrets, now_ms())?;
            banner.push_str(
                "empty store: loaded the demo portfolio (fixtures/demo-portfolio.json)\n",
            );
        }
        None => {}
    }
    Ok(banner)
}

/// The listening sockets, bound (not yet accepting), and our CA.
struct Bound {
    iso: std::net::TcpListener,
    http: std::net::TcpListener,
    secure: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    iso_addr: SocketAddr,
    http_addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
    ca: Arc<crate::ca::Ca>,
}

/// Binds the ISO 8583 and HTTP listeners, loads (or creates) our CA, and binds
/// the TLS listener it certifies when one is configured.
fn bind_listeners(options: &ServeOptions) -> Result<Bound, BoxError> {
    let iso_listener = std::net::TcpListener::bind(&options.iso_listen)
        .map_err(|e| format!("cannot listen on {}: {e}", options.iso_listen))?;
    let http_listener = std::net::TcpListener::bind(&options.http_listen)
        .map_err(|e| format!("cannot listen on {}: {e}", options.http_listen))?;
    iso_listener.set_nonblocking(true)?;
    http_listener.set_nonblocking(true)?;
    let iso_addr = iso_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // Our CA signs partner certificates and the TLS listener's own; created on first start.
    let ca = Arc::new(
        crate::ca::Ca::load_or_init(&options.data)
            .map_err(|e| format!("certificate authority: {e}"))?,
    );
    let secure = match &options.secure_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listener.set_nonblocking(true)?;
            let config =
                crate::http::tls::server_config(&ca).map_err(|e| format!("TLS listener: {e}"))?;
            Some((listener, config))
        }
        None => None,
    };
    let secure_addr = match &secure {
        Some((listener, _)) => Some(listener.local_addr()?),
        None => None,
    };
    Ok(Bound {
        iso: iso_listener,
        http: http_listener,
        secure,
        iso_addr,
        http_addr,
        secure_addr,
        ca,
    })
}

/// The banner's lines about the listeners.
fn describe_listeners(spec: &Spec, options: &ServeOptions, bound: &Bound) -> String {
    let mut banner = format!(
        "ISO 8583 listening on {} (spec {}, {:?} length header)\nHTTP listening on http://{}\n",
        bound.iso_addr,
        spec.name(),
        options.iso.header,
        bound.http_addr,
    );
    if let Some(addr) = bound.secure_addr {
        banner.push_str(&format!(
            "partner channel (/secure, TLS with client certificates) on https://{addr}; CA certificate {}\n",
            bound.ca.ca_cert_path().display()
        ));
    }
    banner
}

/// What every ISO 8583 connection shares: the dialect, the card secrets, the writer.
fn iso_context(
    spec: Spec,
    secrets: CardSecrets,
    options: &ServeOptions,
    engine: EngineHandle,
) -> IsoContext {
    let profile = Profile::for_spec(&spec);
    if options.zpk.is_none() {
        tracing::warn!(
            "no zone PIN key: messages with a PIN block (field 52) are declined as unverifiable"
        );
    }
    let parse_options = crate::protocol::parse::ParseOptions::for_spec(&spec, options.zpk.clone());
    IsoContext {
        spec,
        profile,
        parse_options,
        secrets,
        config: options.iso.clone(),
        engine,
    }
}

/// What every HTTP request shares: the writer, our CA and JWE keys, the card
/// keys, the listeners' flags for readiness, and the metrics to render.
fn http_context(
    engine: EngineHandle,
    options: &ServeOptions,
    ca: Arc<crate::ca::Ca>,
    jwe_keys: crate::http::jwe::ServerKeys,
    card_secrets: CardSecrets,
    listeners: Arc<crate::http::Listeners>,
    metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
) -> crate::http::HttpContext {
    let mut http_context = crate::http::HttpContext::new(engine, options.http.clone(), Some(ca));
    http_context.jwe = Some(Arc::new(jwe_keys));
    http_context.card_keys = Some(crate::manage::cards::CardKeys::new(card_secrets));
    http_context.listeners = Some(listeners);
    http_context.metrics = metrics.cloned();
    http_context.blobs = Some(crate::store::blobs::BlobStore::under(&options.data));
    http_context
}

/// Everything the network thread runs.
struct Network {
    iso_listener: std::net::TcpListener,
    http_listener: std::net::TcpListener,
    secure: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    ca: Arc<crate::ca::Ca>,
    router: ReplyRouter,
    iso_context: Arc<IsoContext>,
    http_context: Arc<crate::http::HttpContext>,
    listeners: Arc<crate::http::Listeners>,
    engine: EngineHandle,
    smtp: Option<crate::integrations::notify::SmtpConfig>,
    notify_interval: Duration,
    outbox_sent_retention: Duration,
    sweep_interval: Duration,
    metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: CancellationToken,
}

/// Starts the network thread: every listener, the reply router, the notifier
/// and the housekeeping ticks, until shutdown.
fn spawn_network(network: Network) -> Result<std::thread::JoinHandle<()>, BoxError> {
    // One thread for the network (a current-thread runtime), one for the writer:
    // on a small machine this beats a work-stealing pool (fewer wakeups and cache moves).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("antaca-net".into())
        .spawn(move || runtime.block_on(run_network(network)))?;
    Ok(thread)
}

/// Marks a listener up or down for the readiness probe.
fn up(flag: &std::sync::atomic::AtomicBool, value: bool) {
    flag.store(value, std::sync::atomic::Ordering::Relaxed);
}

/// The network thread's work; returns once every listener has drained.
async fn run_network(network: Network) {
    let Network {
        iso_listener,
        http_listener,
        secure,
        ca,
        router,
        iso_context,
        http_context,
        listeners,
        engine: network_handle,
        smtp,
        notify_interval,
        outbox_sent_retention,
        sweep_interval,
        metrics,
        shutdown: network_shutdown,
    } = network;
    let iso_listener = match tokio::net::TcpListener::from_std(iso_listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "iso listener"),
    };
    let http_listener = match tokio::net::TcpListener::from_std(http_listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "http listener"),
    };
    tokio::spawn(router.run());
    let iso = tokio::spawn({
        let listeners = listeners.clone();
        let serving = crate::iso_server::serve(iso_listener, iso_context, network_shutdown.clone());
        async move {
            up(&listeners.iso, true);
            serving.await;
            up(&listeners.iso, false);
        }
    });
    let secure_task = secure.and_then(|(listener, config)| {
        serve_secure(
            listener,
            config,
            ca,
            http_context.clone(),
            listeners.clone(),
            network_shutdown.clone(),
        )
    });
    let http = tokio::spawn({
        let listeners = listeners.clone();
        let serving = crate::http::serve(http_listener, http_context, network_shutdown.clone());
        async move {
            up(&listeners.http, true);
            serving.await;
            up(&listeners.http, false);
        }
    });
    let notifier = smtp.map(|smtp| {
        crate::integrations::notify::spawn_notifier(
            network_handle.clone(),
            smtp,
            notify_interval,
            outbox_sent_retention,
            network_shutdown.clone(),
        )
    });
    housekeeping(&network_handle, metrics, sweep_interval, &network_shutdown).await;
    let _ = iso.await;
    let _ = http.await;
    if let Some(secure) = secure_task {
        let _ = secure.await;
    }
    if let Some(notifier) = notifier {
        let _ = notifier.await;
    }
}

/// Serves the partner channel on the TLS listener; `None` when the listener
/// cannot be registered with the runtime (logged).
fn serve_secure(
    listener: std::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    ca: Arc<crate::ca::Ca>,
    http_context: Arc<crate::http::HttpContext>,
    listeners: Arc<crate::http::Listeners>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            let ctx = http_context;
            let handler = move |request, identity: Arc<crate::ca::PartnerIdentity>| {
                let ctx = ctx.clone();
                // Checked on every request too: a certificate revoked while its
                // connection stays open is refused from the next request on.
                let revoked = ca.is_revoked(&identity.serial_hex);
                async move {
                    if revoked {
                        return crate::http::api::ApiError::forbidden(
                            ErrorCode::CertificateRevoked,
                            "this client certificate has been revoked",
                        )
                        .response();
                    }
                    crate::http::handle(ctx, request, Some(identity.program.clone())).await
                }
            };
            let serving = crate::http::tls::serve_tls(listener, config, shutdown, handler);
            Some(tokio::spawn(async move {
                if let Some(flag) = &listeners.secure {
                    up(flag, true);
                }
                serving.await;
                if let Some(flag) = &listeners.secure {
                    up(flag, false);
                }
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "secure listener");
            None
        }
    }
}

/// Until shutdown (or the writer stops): sweeps expired holds every
/// `sweep_interval` and runs the metrics upkeep every 5 s.
async fn housekeeping(
    engine: &EngineHandle,
    metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    sweep_interval: Duration,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(sweep_interval);
    // Histograms keep raw samples until upkeep folds them into buckets: keep memory bounded.
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = upkeep.tick() => {
                if let Some(handle) = metrics {
                    handle.run_upkeep();
                }
            }
            _ = tick.tick() => {
                if engine.send(Command::ExpireHolds).await.is_err() { break; }
            }
        }
    }
}

/// One line per card: id, masked PAN, type, state, lock, expiry, balance.
pub fn describe_cards(state: &crate::engine::state::State) -> String {
    let mut cards: Vec<_> = state.cards.values().collect();
    cards.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = String::from("cards:\n");
    for card in cards {
        let balance = state.balances.get(&card.balance);
        let lock = card.lock.map(|l| format!(" lock {l}")).unwrap_or_default();
        out.push_str(&format!(
            "  {:<6} {}  {:?} {:?}{}  expiry {}  balance {} {} {}\n",
            card.id,
            card.pan_masked,
            card.card_type,
            card.state,
            lock,
            card.expiry,
            card.balance,
            balance.map(|b| b.available.to_string()).unwrap_or_default(),
            balance.map(|b| b.currency.as_str()).unwrap_or_default(),
        ));
    }
    out
}

/// Parses a length header name for the command line.
pub fn parse_length_header(s: &str) -> Result<LengthHeader, String> {
    s.parse::<LengthHeader>().map_err(|e| e.clone())
}

/// Blocks until SIGINT or SIGTERM (the `antaca` command and the echo server stop on it).
pub fn wait_for_signal() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    })?;
    Ok(())
}
