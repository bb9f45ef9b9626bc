//! The `antaca` command: parse the command line, then start, import or stop.
//! No business logic lives here.

use antaca::app::config::{Config, LogFormat};
use antaca::app::{self, BoxError};
use antaca::ca::Ca;
use antaca::engine::{now_ms, EngineConfig};
use antaca::manage::portfolio::{self, Portfolio};
use antaca::net::framing::LengthHeader;
use antaca::protocol::builder::RequestBuilder;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// jemalloc instead of glibc's malloc: the writer and the network thread
/// allocate and free across threads, which glibc answered with heap growth,
/// trimming and fresh zeroed pages (measured in BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "antaca",
    version,
    about = "A card issuer's authorization engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the engine: ISO 8583 over TCP and the HTTP plane.
    Serve(Box<ServeArgs>),
    /// Send one ISO 8583 request to a running engine and print the answer (card data masked).
    Send(SendArgs),
    /// Manage administrators of the admin panel (offline, with the server stopped).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Load a portfolio into an empty store, offline.
    Import {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
        /// Store backend of a new data directory: sled or fjall [default: what
        /// the directory holds, else ANTACA_STORE, else fjall].
        #[arg(long)]
        store: Option<antaca::store::Backend>,
        /// Portfolio JSON file.
        file: PathBuf,
    },
    /// Manage the partner certificate authority (mutual TLS, trusted identities).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Load simulator: drive a running engine (or run the echo baseline, or plot a report).
    Sim(antaca_sim::cli::SimArgs),
    /// Check a stopped store offline: journal, balances, holds, transactions, cards (exit 1 on a violation, 2 if it cannot be opened).
    Verify {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA and the /secure listener's certificate under DATA/ca/.
    Init {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
    },
    /// Issue a partner client certificate for a card program from its CSR.
    Sign {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
        /// The partner's certificate signing request (PEM).
        #[arg(long)]
        csr: PathBuf,
        /// The card program the certificate is for.
        #[arg(long)]
        program: String,
        /// Where to write the certificate (PEM); must not exist yet.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a partner certificate by serial or by certificate file; a running server sees it at once.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "cert"])))]
    Revoke {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
        /// Serial number in hex (as printed by `ca sign`).
        #[arg(long)]
        serial: Option<String>,
        /// The certificate file (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
}

/// `serve`'s flags: each overrides the configuration file and `ANTACA_<KEY>`
/// (see README "Configuration" for every key and its default).
#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (keys as in README "Configuration").
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (TOML, secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Data directory (store and data key) [default: ./antaca-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Store backend: sled or fjall; a data directory holding the other one's store is refused [default: the directory's own; fjall for a new store].
    #[arg(long)]
    store: Option<antaca::store::Backend>,
    /// The store backend's memory budget in bytes: sled's page cache, fjall's block cache and memtables [default: 268435456].
    #[arg(long)]
    store_cache_bytes: Option<u64>,
    /// The engine's memory budget, MiB: a quarter each for the transaction cache and (unless --store-cache-bytes) the store backend [default: 1024].
    #[arg(long)]
    memory_budget_mb: Option<u64>,
    /// ISO 8583 listen address; port 0 picks a free port [default: 127.0.0.1:8583].
    #[arg(long)]
    iso_listen: Option<String>,
    /// HTTP listen address; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long)]
    http_listen: Option<String>,
    /// TLS listen address of the partner channel (/secure); empty: none [default: 127.0.0.1:8443].
    #[arg(long)]
    secure_listen: Option<String>,
    /// ISO 8583 dialect: a built-in spec name or a spec JSON file [default: iso87ascii].
    #[arg(long)]
    spec: Option<String>,
    /// Load this portfolio into the (empty) store before serving.
    #[arg(long)]
    portfolio: Option<PathBuf>,
    /// Length header: binary2 (2-byte big-endian) or ascii4 (4 ASCII digits) [default: binary2].
    #[arg(long)]
    length_header: Option<String>,
    /// Largest ISO 8583 frame accepted, in bytes [default: 8192].
    #[arg(long)]
    max_frame: Option<usize>,
    /// Most ISO 8583 connections at once [default: 4096].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most requests in flight on one connection [default: 256].
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Seconds a connection may stay silent with nothing in flight [default: 300].
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Seconds a begun frame has to arrive whole [default: 10].
    #[arg(long)]
    read_timeout_secs: Option<u64>,
    /// Seconds a client has to take its responses [default: 10].
    #[arg(long)]
    write_timeout_secs: Option<u64>,
    /// Most requests committed in one batch [default: 4096].
    #[arg(long)]
    engine_batch_max: Option<usize>,
    /// Most requests waiting for the writer [default: 65536].
    #[arg(long)]
    engine_queue_depth: Option<usize>,
    /// Days an authorization hold blocks funds before it is released [default: 7].
    #[arg(long)]
    hold_expiry_days: Option<u64>,
    /// Seconds between sweeps of expired holds [default: 60].
    #[arg(long)]
    sweep_interval_secs: Option<u64>,
    /// Minutes an app session lasts [default: 10].
    #[arg(long)]
    customer_session_minutes: Option<u64>,
    /// Minutes an admin session lasts [default: 15].
    #[arg(long)]
    admin_session_minutes: Option<u64>,
    /// Most HTTP connections at once [default: 1024].
    #[arg(long)]
    http_max_connections: Option<usize>,
    /// Largest JSON request body in bytes [default: 65536].
    #[arg(long)]
    http_body_limit: Option<usize>,
    /// Seconds to send HTTP request headers [default: 10].
    #[arg(long)]
    http_header_timeout_secs: Option<u64>,
    /// Seconds to send an HTTP request body [default: 30].
    #[arg(long)]
    http_body_timeout_secs: Option<u64>,
    /// SMTP relay (HOST:PORT) for partner notifications; without it they wait in the outbox.
    #[arg(long)]
    smtp: Option<String>,
    /// Sender address of notifications [default: antaca@localhost].
    #[arg(long)]
    smtp_from: Option<String>,
    /// Seconds an SMTP delivery may take [default: 30].
    #[arg(long)]
    smtp_timeout_secs: Option<u64>,
    /// Seconds between looks at the outbox [default: 2].
    #[arg(long)]
    notify_interval_secs: Option<u64>,
    /// Days a delivered notification is kept before it is deleted [default: 30].
    #[arg(long)]
    outbox_sent_retention_days: Option<u64>,
    /// eKYC provider endpoint (http://…); its key is read from ANTACA_EKYC_API_KEY and the
    /// callback secret from ANTACA_EKYC_CALLBACK_SECRET (or the configuration file).
    #[arg(long)]
    ekyc_url: Option<String>,
    /// The URL the eKYC provider calls back (this server's /kyc/callback as the provider reaches it).
    #[arg(long)]
    ekyc_callback_url: Option<String>,
    /// Seconds an eKYC provider call may take [default: 10].
    #[arg(long)]
    ekyc_timeout_secs: Option<u64>,
    /// Name of the environment variable holding the zone PIN key (32 or 48 hex
    /// digits); never the key itself. Without it PIN blocks cannot be verified.
    #[arg(long, value_name = "VAR")]
    zpk_hex_env: Option<String>,
    /// Log format: human or json [default: human].
    #[arg(long, value_parser = ["human", "json"])]
    log_format: Option<String>,
    /// Log filter, tracing directives (also ANTACA_LOG) [default: info].
    #[arg(long)]
    log_filter: Option<String>,
}

impl ServeArgs {
    /// Puts every flag given over `config`.
    fn apply(self, config: &mut Config) {
        macro_rules! set {
            ($($field:ident),*) => {
                $(if let Some(v) = self.$field { config.$field = v; })*
            };
        }
        macro_rules! set_some {
            ($($field:ident),*) => {
                $(if let Some(v) = self.$field { config.$field = Some(v); })*
            };
        }
        set_some!(store);
        set!(
            data,
            store_cache_bytes,
            memory_budget_mb,
            iso_listen,
            http_listen,
            secure_listen,
            spec,
            length_header,
            max_frame,
            max_connections,
            max_in_flight,
            idle_timeout_secs,
            read_timeout_secs,
            write_timeout_secs,
            engine_batch_max,
            engine_queue_depth,
            hold_expiry_days,
            sweep_interval_secs,
            customer_session_minutes,
            admin_session_minutes,
            http_max_connections,
            http_body_limit,
            http_header_timeout_secs,
            http_body_timeout_secs,
            smtp_from,
            smtp_timeout_secs,
            notify_interval_secs,
            outbox_sent_retention_days,
            ekyc_timeout_secs,
            log_filter
        );
        set_some!(portfolio, smtp, ekyc_url, ekyc_callback_url, zpk_hex_env);
        if let Some(format) = self.log_format {
            config.log_format = match format.as_str() {
                "json" => LogFormat::Json,
                _ => LogFormat::Human,
            };
        }
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator; the password is read from standard input.
    Add {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
        /// Login.
        #[arg(long)]
        login: String,
        /// Admin, Manager or Employee.
        #[arg(long)]
        role: antaca::http::sessions::Role,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// Engine address.
    #[arg(long, default_value = "127.0.0.1:8583")]
    iso: String,
    /// Dialect: a built-in spec name or a spec file.
    #[arg(long, default_value = "iso87ascii")]
    spec: String,
    /// Length header: binary2 or ascii4.
    #[arg(long, default_value = "binary2", value_parser = app::parse_length_header)]
    length_header: LengthHeader,
    /// Message type.
    #[arg(long, default_value = "0100")]
    mti: String,
    /// Card number.
    #[arg(long)]
    pan: String,
    /// Amount as a decimal in the currency ("10.00").
    #[arg(long, default_value = "0")]
    amount: String,
    /// ISO 4217 alphabetic currency.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Processing code (000000 purchase, 200000 refund, 310000 balance inquiry).
    #[arg(long, default_value = "000000")]
    processing: String,
    /// Systems trace audit number (random when absent).
    #[arg(long)]
    stan: Option<u32>,
    /// Expiry date YYMM (field 14).
    #[arg(long)]
    expiry: Option<String>,
    /// Original data elements (field 90) for completions and reversals.
    #[arg(long)]
    original: Option<String>,
    /// Sets or replaces one field as N=VALUE, in the dialect's text, after
    /// the others (`--field 7=1207120000 --field 41=TERM0002`); repeatable.
    /// Not card data (fields 2, 14, 35, 36, 45, 52, 55): `--pan` and
    /// `--expiry` set those that `send` takes.
    #[arg(long = "field", value_name = "N=VALUE", value_parser = parse_field)]
    fields: Vec<(usize, String)>,
}

/// One `--field N=VALUE`.
fn parse_field(text: &str) -> Result<(usize, String), String> {
    let (n, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected N=VALUE, e.g. 41=TERM0001"))?;
    let n: usize = n
        .trim()
        .parse()
        .ok()
        .filter(|n| (2..=128).contains(n) && *n != 65)
        .ok_or_else(|| format!("{n:?}: a field number from 2 to 128 (not 65)"))?;
    if n == 2 || antaca::iso8583::is_sensitive(n) {
        return Err(format!(
            "field {n} carries card data, which --field never takes (the PAN and expiry: --pan, --expiry)"
        ));
    }
    Ok((n, value.to_string()))
}

/// Sends logs to standard error in `format`, filtered by `filter`.
fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Commands::Serve(_)) {
        let filter = std::env::var("ANTACA_LOG").unwrap_or_else(|_| "info".into());
        if let Err(e) = app::telemetry::init_logging(LogFormat::Human, &filter) {
            eprintln!("antaca: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Commands::Serve(args) => serve(*args),
        Commands::Send(args) => send(args),
        Commands::Admin(AdminCommand::Add { data, login, role }) => add_admin(&data, &login, role),
        Commands::Import { data, store, file } => import(&data, store, &file),
        Commands::Ca(command) => ca(command),
        Commands::Sim(args) => antaca_sim::cli::main(args),
        Commands::Verify { data } => return verify(&data),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("antaca: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the verify report of the store in `data`: exit 0 when consistent, 1 when not, 2 when it cannot be opened.
fn verify(data: &Path) -> ExitCode {
    match antaca::tools::verify::verify_dir(data) {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("antaca: {e}");
            ExitCode::from(2)
        }
    }
}

fn add_admin(data: &Path, login: &str, role: antaca::http::sessions::Role) -> Result<(), BoxError> {
    use antaca::http::sessions;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let admin = sessions::new_administrator(login, password, role).map_err(|e| e.to_string())?;
    let (mut engine, _) = app::open(data, EngineConfig::default())?;
    let created =
        engine.apply(|state, changes| sessions::insert_administrator(state, changes, &admin))?;
    if !created {
        return Err(format!("administrator {login:?} already exists").into());
    }
    println!(
        "administrator {login} ({role:?}) created in {}",
        data.display()
    );
    Ok(())
}

fn ca(command: CaCommand) -> Result<(), BoxError> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    match command {
        CaCommand::Init { data } => {
            let ca = Ca::init(&data)?;
            println!("{}", ca.ca_cert_path().display());
        }
        CaCommand::Sign {
            data,
            csr,
            program,
            out,
            days,
        } => {
            let ca = Ca::load(&data)?;
            let issued = ca.sign_csr(&read(&csr)?, &program, days)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            use std::io::Write;
            file.write_all(issued.cert_pem.as_bytes())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            println!("{}", issued.serial_hex);
        }
        CaCommand::Revoke { data, serial, cert } => {
            let ca = Ca::load(&data)?;
            let serial = match (serial, cert) {
                (Some(serial), _) => {
                    ca.revoke(&serial)?;
                    serial
                }
                (None, Some(cert)) => ca.revoke_cert_pem(&read(&cert)?)?,
                (None, None) => return Err("give --serial or --cert".into()),
            };
            println!("revoked {serial}");
        }
    }
    Ok(())
}

fn import(
    data: &Path,
    backend: Option<antaca::store::Backend>,
    file: &Path,
) -> Result<(), BoxError> {
    let store = antaca::store::StoreConfig {
        backend,
        ..antaca::store::StoreConfig::default()
    };
    let (mut engine, secrets) = app::open_with_store(data, store, EngineConfig::default())?;
    let portfolio = Portfolio::read(file)?;
    let summary = portfolio::import(&mut engine, &portfolio, &secrets, now_ms())?;
    println!(
        "imported {} programs, {} users, {} balances, {} cards into {}",
        summary.programs,
        summary.users,
        summary.balances,
        summary.cards,
        data.display()
    );
    Ok(())
}

fn send(args: SendArgs) -> Result<(), BoxError> {
    let spec = antaca::iso8583::Spec::load(&args.spec)
        .map_err(|e| format!("spec {:?}: {e}", args.spec))?;
    let currency = antaca::domain::money::Currency::from_alpha(&args.currency)
        .ok_or_else(|| format!("unknown currency {:?}", args.currency))?;
    let amount = currency
        .parse_amount(&args.amount)
        .map_err(|e| format!("amount {:?}: {e}", args.amount))?;
    let minor = currency.to_minor(amount).ok_or("amount out of range")?;
    let mti: [u8; 4] = args
        .mti
        .as_bytes()
        .try_into()
        .map_err(|_| "the MTI has 4 digits")?;
    let stan = args
        .stan
        .unwrap_or_else(|| rand::random::<u32>() % 1_000_000);
    let secs = now_ms() / 1000;
    let date = antaca::domain::calendar::date_of_ms(secs * 1000);
    let time = secs % 86_400;
    let hhmmss = format!("{:02}{:02}{:02}", time / 3600, (time / 60) % 60, time % 60);
    let dialect = antaca::protocol::Profile::for_spec(&spec).dialect;
    let mut digits = bytes::BytesMut::new();
    let mut request = RequestBuilder::new(dialect, mti, 16, &mut digits)
        .pan(args.pan.clone())
        .processing_code(args.processing.clone())
        // `parse_amount` takes digits only: never negative.
        .amount_minor(minor.unsigned_abs())
        .transmission(format!("{:02}{:02}{hhmmss}", date.month, date.day))
        .stan(stan)
        .local_time(hhmmss)
        .local_date(format!("{:02}{:02}", date.month, date.day));
    if let Some(expiry) = &args.expiry {
        request = request.expiry(expiry.clone());
    }
    request = request
        .acquirer("000001")
        .terminal("CLI00001")
        .currency_numeric(currency.numeric);
    if let Some(original) = &args.original {
        request = request.original_data(original.clone());
    }
    let mut message = request.build();
    for (n, value) in &args.fields {
        message.set(*n, value.clone().into_bytes());
    }
    println!("request:\n{}", antaca::tools::send::describe(&message));
    let response = antaca::tools::send::send(
        &args.iso,
        &spec,
        args.length_header,
        &message,
        Duration::from_secs(10),
    )?;
    println!("response:\n{}", antaca::tools::send::describe(&response));
    Ok(())
}

/// The effective configuration: defaults < file < `ANTACA_<KEY>` < flags.
fn resolve_config(args: ServeArgs) -> Result<Config, BoxError> {
    let text = match &args.config {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let origin = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let env = |name: &str| match std::env::var(name) {
        Ok(value) => Some(value),
        // The long-standing log filter variable, below ANTACA_LOG_FILTER.
        Err(_) if name == "ANTACA_LOG_FILTER" => std::env::var("ANTACA_LOG").ok(),
        Err(_) => None,
    };
    let mut config = Config::resolve(text.as_deref().map(|t| (origin.as_str(), t)), env)?;
    args.apply(&mut config);
    Ok(config)
}

fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let print = args.print_config;
    let config = resolve_config(args)?;
    if print {
        print!("{}", config.to_redacted_toml()?);
        return Ok(());
    }
    app::telemetry::init_logging(config.log_format, &config.log_filter)?;
    let mut options = config.to_serve_options()?;
    options.zpk = config.zone_pin_key(|var| std::env::var(var).ok())?;
    if let Some(key) = &options.zpk {
        println!("zone PIN key check value {}", key.check_value());
    }
    let running = app::start(options)?;
    print!("{}", running.banner);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    app::wait_for_signal()?;
    println!("stopping: answering requests in flight");
    running.stop();
    println!("stopped");
    Ok(())
}
