//! The `antaca` command: parse the command line, then start, import or stop.
//! No business logic lives here.

use antaca::app::{self, BoxError, ServeOptions};
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
    /// Load a portfolio into an empty store, offline.
    Import {
        /// Data directory.
        #[arg(long, default_value = "./antaca-data")]
        data: PathBuf,
        /// Portfolio JSON file.
        file: PathBuf,
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
        Commands::Import { data, file } => import(&data, &file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("antaca: {e}");
            ExitCode::FAILURE
        }
    }
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

fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let options = ServeOptions {
        data: args.data,
        iso_listen: args.iso_listen,
        http_listen: args.http_listen,
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
