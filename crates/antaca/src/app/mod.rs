//! Starting and stopping a whole engine: store, writer thread, ISO 8583 and
//! HTTP listeners on a network thread. `main` and the tests both use it.

use crate::engine::{now_ms, Command, Engine, EngineConfig, EngineHandle};
use crate::iso8583::Spec;
use crate::iso_server::{IsoConfig, IsoContext};
use crate::manage::portfolio::{self, Portfolio};
use crate::net::framing::LengthHeader;
use crate::protocol::Profile;
use crate::security::secrets::CardSecrets;
use crate::store::{SledStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub mod config;

/// The process's Prometheus recorder, installed by the first call; `None` when
/// another recorder was installed first (metrics then go there, `/metrics` is empty).
pub fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            const SECONDS: &[f64] = &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("antaca_engine_batch_size".into()), SIZES));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The demo portfolio, embedded so `serve` works from any directory.
pub const DEMO_PORTFOLIO: &str = include_str!("../../../../fixtures/demo-portfolio.json");

/// A boxed error with a message meant for the operator.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to serve and how.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Data directory.
    pub data: PathBuf,
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
    /// The zone PIN key PIN blocks (field 52) arrive under; `None`: a message
    /// with a PIN block is declined as "PIN cannot be verified".
    pub zpk: Option<crate::security::pinblock::ZonePinKey>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            data: PathBuf::from("./antaca-data"),
            iso_listen: "127.0.0.1:8583".into(),
            http_listen: "127.0.0.1:8080".into(),
            secure_listen: Some("127.0.0.1:8443".into()),
            spec: "iso87ascii".into(),
            portfolio: None,
            iso: IsoConfig::default(),
            engine: EngineConfig::default(),
            sweep_interval: Duration::from_secs(60),
            http: crate::http::HttpConfig::default(),
            smtp: None,
            notify_interval: Duration::from_secs(2),
            zpk: None,
        }
    }
}

/// Opens the sled store and data key in `data`.
pub fn open(
    data: &Path,
    config: EngineConfig,
) -> Result<(Engine<SledStore>, CardSecrets), BoxError> {
    let store = SledStore::open(data)
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
    let (engine, secrets) = open(&options.data, options.engine.clone())?;
    start_with(engine, secrets, options)
}

/// Like [`start`], over any store (tests use the in-memory one).
pub fn start_with<S: Store>(
    mut engine: Engine<S>,
    secrets: CardSecrets,
    options: ServeOptions,
) -> Result<Running, BoxError> {
    let spec = Spec::load(&options.spec).map_err(|e| format!("spec {:?}: {e}", options.spec))?;
    let metrics = metrics_handle();
    let mut banner = String::new();
    match &options.portfolio {
        Some(file) => {
            let portfolio = Portfolio::read(file)?;
            let summary = portfolio::import(&mut engine, &portfolio, &secrets, now_ms())?;
            banner.push_str(&format!(
                "imported {} ({} cards)\n",
                file.display(),
                summary.cards
            ));
        }
        None if engine.is_empty() => {
            let portfolio = Portfolio::parse(DEMO_PORTFOLIO)?;
            portfolio::import(&mut engine, &portfolio, &secrets, now_ms())?;
            banner.push_str(
                "empty store: loaded the demo portfolio (fixtures/demo-portfolio.json)\n",
            );
        }
        None => {}
    }
    let cards = describe_cards(engine.state());
    let engine = engine.with_secrets(secrets.clone());
    let (handle, writer, router) = engine.spawn_routed()?;

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
    banner.push_str(&format!(
        "ISO 8583 listening on {iso_addr} (spec {}, {:?} length header)\nHTTP listening on http://{http_addr}\n",
        spec.name(),
        options.iso.header
    ));
    if let Some(addr) = secure_addr {
        banner.push_str(&format!(
            "partner channel (/secure, TLS with client certificates) on https://{addr}; CA certificate {}\n",
            ca.ca_cert_path().display()
        ));
    }
    banner.push_str(&cards);

    let jwe_keys = crate::http::jwe::ServerKeys::load_or_create(&options.data)
        .map_err(|e| format!("JWE keys: {e}"))?;
    let card_secrets = secrets.clone();
    let shutdown = CancellationToken::new();
    let profile = Profile::for_spec(&spec);
    if options.zpk.is_none() {
        tracing::warn!(
            "no zone PIN key: messages with a PIN block (field 52) are declined as unverifiable"
        );
    }
    let parse_options = crate::protocol::parse::ParseOptions::for_spec(&spec, options.zpk.clone());
    let context = Arc::new(IsoContext {
        spec,
        profile,
        parse_options,
        secrets,
        config: options.iso.clone(),
        engine: handle.clone(),
    });
    let network_handle = handle.clone();
    let mut http_context =
        crate::http::HttpContext::new(handle.clone(), options.http.clone(), Some(ca.clone()));
    http_context.jwe = Some(Arc::new(jwe_keys));
    http_context.card_keys = Some(crate::manage::cards::CardKeys::new(card_secrets));
    let listeners = Arc::new(crate::http::Listeners {
        secure: secure
            .as_ref()
            .map(|_| std::sync::atomic::AtomicBool::new(false)),
        ..crate::http::Listeners::default()
    });
    http_context.listeners = Some(listeners.clone());
    let http_context = Arc::new(http_context);
    let network_shutdown = shutdown.clone();
    let sweep_interval = options.sweep_interval;
    let smtp = options.smtp.clone();
    let notify_interval = options.notify_interval;
    // One thread for the network (a current-thread runtime), one for the writer:
    // on a small machine this beats a work-stealing pool (fewer wakeups and cache moves).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let network = std::thread::Builder::new()
        .name("antaca-net".into())
        .spawn(move || {
            runtime.block_on(async move {
                let iso_listener = match tokio::net::TcpListener::from_std(iso_listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "iso listener"),
                };
                let http_listener = match tokio::net::TcpListener::from_std(http_listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "http listener"),
                };
                tokio::spawn(router.run());
                let up = |flag: &std::sync::atomic::AtomicBool, value: bool| {
                    flag.store(value, std::sync::atomic::Ordering::Relaxed)
                };
                let iso = tokio::spawn({
                    let listeners = listeners.clone();
                    let serving =
                        crate::iso_server::serve(iso_listener, context, network_shutdown.clone());
                    async move {
                        up(&listeners.iso, true);
                        serving.await;
                        up(&listeners.iso, false);
                    }
                });
                let secure_task = match secure {
                    Some((listener, config)) => match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let ctx = http_context.clone();
                            let ca = ca.clone();
                            let handler =
                                move |request, identity: Arc<crate::ca::PartnerIdentity>| {
                                    let ctx = ctx.clone();
                                    // Checked on every request too: a certificate revoked while its
                                    // connection stays open is refused from the next request on.
                                    let revoked = ca.is_revoked(&identity.serial_hex);
                                    async move {
                                        if revoked {
                                            return crate::http::api::ApiError::forbidden(
                                                "CERTIFICATE_REVOKED",
                                                "this client certificate has been revoked",
                                            )
                                            .response();
                                        }
                                        crate::http::handle(
                                            ctx,
                                            request,
                                            Some(identity.program.clone()),
                                        )
                                        .await
                                    }
                                };
                            let serving = crate::http::tls::serve_tls(
                                listener,
                                config,
                                network_shutdown.clone(),
                                handler,
                            );
                            let listeners = listeners.clone();
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
                    },
                    None => None,
                };
                let http = tokio::spawn({
                    let listeners = listeners.clone();
                    let serving =
                        crate::http::serve(http_listener, http_context, network_shutdown.clone());
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
                        network_shutdown.clone(),
                    )
                });
                let mut tick = tokio::time::interval(sweep_interval);
                // Histograms keep raw samples until upkeep folds them into buckets: keep memory bounded.
                let mut upkeep = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = network_shutdown.cancelled() => break,
                        _ = upkeep.tick() => {
                            if let Some(handle) = metrics {
                                handle.run_upkeep();
                            }
                        }
                        _ = tick.tick() => {
                            if network_handle.send(Command::ExpireHolds).await.is_err() { break; }
                        }
                    }
                }
                let _ = iso.await;
                let _ = http.await;
                if let Some(secure) = secure_task {
                    let _ = secure.await;
                }
                if let Some(notifier) = notifier {
                    let _ = notifier.await;
                }
            });
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
    s.parse::<LengthHeader>().map_err(|e| e.to_string())
}
