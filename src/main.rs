//! The `antaca` command: parse the command line, then start, import or stop.
//! No business logic lives here.

use antaca::app::{self, BoxError, ServeOptions};
use antaca::ca::Ca;
use antaca::engine::{now_ms, EngineConfig};
use antaca::framing::LengthHeader;
use antaca::portfolio::{self, Portfolio};
use antaca::server::IsoConfig;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    Serve(ServeArgs),
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
        /// Portfolio JSON file.
        file: PathBuf,
    },
    /// Manage the partner certificate authority (mutual TLS, trusted identities).
    #[command(subcommand)]
    Ca(CaCommand),
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (sled store and data key).
    #[arg(long, default_value = "./antaca-data")]
    data: PathBuf,
    /// ISO 8583 listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8583")]
    iso_listen: String,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: String,
    /// TLS listen address of the partner channel (/secure, client certificates from our CA).
    #[arg(long, default_value = "127.0.0.1:8443")]
    secure_listen: String,
    /// ISO 8583 dialect: a built-in spec name or a path to a spec JSON file.
    #[arg(long, default_value = "iso87ascii")]
    spec: String,
    /// Load this portfolio into the (empty) store before serving.
    #[arg(long)]
    portfolio: Option<PathBuf>,
    /// Length header: binary2 (2-byte big-endian) or ascii4 (4 ASCII digits).
    #[arg(long, default_value = "binary2", value_parser = app::parse_length_header)]
    length_header: LengthHeader,
    /// Largest ISO 8583 frame accepted, in bytes.
    #[arg(long, default_value_t = 8192)]
    max_frame: usize,
    /// Most requests in flight on one connection.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Days an authorization hold blocks funds before it is released.
    #[arg(long, default_value_t = 7)]
    hold_expiry_days: u64,
    /// Minutes an app session lasts.
    #[arg(long, default_value_t = 10)]
    customer_session_minutes: u64,
    /// Minutes an admin session lasts.
    #[arg(long, default_value_t = 15)]
    admin_session_minutes: u64,
    /// SMTP relay (HOST:PORT) for partner notifications; without it they wait in the outbox.
    #[arg(long)]
    smtp: Option<String>,
    /// Sender address of notifications.
    #[arg(long, default_value = "antaca@localhost")]
    smtp_from: String,
    /// eKYC provider endpoint (http://…); its key is read from ANTACA_EKYC_API_KEY and the
    /// callback secret from ANTACA_EKYC_CALLBACK_SECRET.
    #[arg(long)]
    ekyc_url: Option<String>,
    /// The URL the eKYC provider calls back (this server's /kyc/callback as the provider reaches it).
    #[arg(long)]
    ekyc_callback_url: Option<String>,
    /// Name of the environment variable holding the zone PIN key (32 or 48 hex
    /// digits); never the key itself. Without it PIN blocks cannot be verified.
    #[arg(long, value_name = "VAR")]
    zpk_hex_env: Option<String>,
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ANTACA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Serve(args) => serve(args),
        Commands::Send(args) => send(args),
        Commands::Admin(AdminCommand::Add { data, login, role }) => add_admin(&data, &login, role),
        Commands::Import { data, file } => import(&data, &file),
        Commands::Ca(command) => ca(command),
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
    match antaca::verify::verify_dir(data) {
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
    use antaca::http::sessions::{self, Administrator};
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    antaca::http::routes::validate_new_administrator(login, password).map_err(|e| e.message)?;
    let hash = sessions::hash_password(password)?;
    let (mut engine, _) = app::open(data, EngineConfig::default())?;
    let admin = Administrator {
        login: login.to_string(),
        role,
        password_hash: hash,
        failed_attempts: 0,
        locked_until_ms: 0,
    };
    let created = engine.apply(|state, changes| {
        let key = sessions::admin_key(login);
        if state.records.contains_key(&key) {
            return false;
        }
        changes.put_record(state, &key, &admin);
        true
    })?;
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

fn import(data: &Path, file: &Path) -> Result<(), BoxError> {
    let (mut engine, secrets) = app::open(data, EngineConfig::default())?;
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
    let currency = antaca::money::Currency::from_alpha(&args.currency)
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
    let date = antaca::calendar::date_of_ms(secs * 1000);
    let time = secs % 86_400;
    let hhmmss = format!("{:02}{:02}{:02}", time / 3600, (time / 60) % 60, time % 60);
    let mut message = antaca::iso8583::Message::new(mti);
    message.set(2, args.pan.clone());
    message.set(3, args.processing.clone());
    message.set(4, format!("{minor:012}"));
    message.set(7, format!("{:02}{:02}{hhmmss}", date.month, date.day));
    message.set(11, format!("{stan:06}"));
    message.set(12, hhmmss);
    message.set(13, format!("{:02}{:02}", date.month, date.day));
    if let Some(expiry) = &args.expiry {
        message.set(14, expiry.clone());
    }
    message.set(32, "000001".to_string());
    message.set(41, "CLI00001".to_string());
    message.set(49, format!("{:03}", currency.numeric));
    if let Some(original) = &args.original {
        message.set(90, original.clone());
    }
    println!("request:\n{}", antaca::client::describe(&message));
    let response = antaca::client::send(
        &args.iso,
        &spec,
        args.length_header,
        &message,
        Duration::from_secs(10),
    )?;
    println!("response:\n{}", antaca::client::describe(&response));
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let options = ServeOptions {
        data: args.data,
        iso_listen: args.iso_listen,
        http_listen: args.http_listen,
        secure_listen: Some(args.secure_listen),
        spec: args.spec,
        portfolio: args.portfolio,
        iso: IsoConfig {
            header: args.length_header,
            max_frame: args.max_frame,
            max_in_flight: args.max_in_flight,
            ..IsoConfig::default()
        },
        engine: EngineConfig {
            hold_expiry: Duration::from_secs(args.hold_expiry_days.saturating_mul(24 * 3600)),
            ..EngineConfig::default()
        },
        http: antaca::http::HttpConfig {
            customer_session: Duration::from_secs(args.customer_session_minutes.saturating_mul(60)),
            admin_session: Duration::from_secs(args.admin_session_minutes.saturating_mul(60)),
            kyc_provider: ekyc_config(args.ekyc_url, args.ekyc_callback_url)?,
            ..antaca::http::HttpConfig::default()
        },
        smtp: match args.smtp {
            Some(relay) => Some(smtp_config(&relay, args.smtp_from)?),
            None => None,
        },
        zpk: match &args.zpk_hex_env {
            Some(var) => Some(zone_pin_key(var)?),
            None => None,
        },
        ..ServeOptions::default()
    };
    let running = app::start(options)?;
    print!("{}", running.banner);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_signal()?;
    println!("stopping: answering requests in flight");
    running.stop();
    println!("stopped");
    Ok(())
}

/// Reads the zone PIN key from the environment variable `var`; errors name the variable, never the key.
fn zone_pin_key(var: &str) -> Result<antaca::pinblock::ZonePinKey, BoxError> {
    let hex =
        std::env::var(var).map_err(|_| format!("--zpk-hex-env: set {var} to the zone PIN key"))?;
    let key = antaca::pinblock::ZonePinKey::from_hex(hex.trim())
        .map_err(|e| format!("--zpk-hex-env: {var}: {e}"))?;
    println!("zone PIN key check value {}", key.check_value());
    Ok(key)
}

fn smtp_config(relay: &str, from: String) -> Result<antaca::notify::SmtpConfig, BoxError> {
    let (host, port) = relay.rsplit_once(':').ok_or("--smtp is HOST:PORT")?;
    let port = port.parse().map_err(|_| "--smtp port is a number")?;
    Ok(antaca::notify::SmtpConfig {
        host: host.to_string(),
        port,
        from,
        timeout: Duration::from_secs(30),
    })
}

fn ekyc_config(
    url: Option<String>,
    callback: Option<String>,
) -> Result<Option<antaca::kyc_provider::ProviderConfig>, BoxError> {
    let Some(url) = url else { return Ok(None) };
    let callback_url = callback.ok_or("--ekyc-url needs --ekyc-callback-url")?;
    let api_key = std::env::var("ANTACA_EKYC_API_KEY")
        .map_err(|_| "set ANTACA_EKYC_API_KEY for --ekyc-url")?;
    let secret = std::env::var("ANTACA_EKYC_CALLBACK_SECRET")
        .map_err(|_| "set ANTACA_EKYC_CALLBACK_SECRET for --ekyc-url")?;
    Ok(Some(antaca::kyc_provider::ProviderConfig {
        url,
        api_key,
        callback_secret: secret.into_bytes(),
        callback_url,
        timeout: Duration::from_secs(10),
    }))
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> Result<(), BoxError> {
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
