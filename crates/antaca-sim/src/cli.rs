//! `antaca sim`: the command line of the simulator, the echo server and the plot.

use super::book::{current_yymm, Book};
use super::{Checks, Mix, Report, SimConfig, SimError};
use antaca::iso8583::Spec;
use antaca::manage::portfolio::Portfolio;
use antaca::net::framing::LengthHeader;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// `antaca sim` options.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Engine address.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub iso: String,
    /// Dialect: a built-in spec name or a spec file.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Length header: binary2 or ascii4.
    #[arg(long, default_value = "binary2", value_parser = antaca::app::parse_length_header)]
    pub length_header: LengthHeader,
    /// The portfolio the engine was loaded with (default: the demo portfolio `serve` loads).
    #[arg(long)]
    pub portfolio: Option<PathBuf>,
    /// TCP connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests outstanding per connection (pipelining, matched on STAN).
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Requests per second over all connections; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Message mix, `kind=weight,...` (kinds: auth completion reversal refund inquiry repeat duplicate decline echo).
    #[arg(long, default_value = Mix::DEFAULT)]
    pub mix: Mix,
    /// Check matching only (MTI, STAN, 7/11/41), not codes or balances: for the echo server.
    #[arg(long)]
    pub protocol_only: bool,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Report file (JSON); with --plot, the reports to draw (repeatable).
    #[arg(long)]
    pub json: Vec<PathBuf>,
    /// Draw the latency distribution of the --json reports into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Run the bare echo server (the baseline) on this address instead.
    #[arg(long, value_name = "ADDR")]
    pub echo_server: Option<String>,
    /// With --echo-server: append as many bytes as every request (zeros) to
    /// this file and answer only once an fdatasync covers them (group commit,
    /// no decision, no store).
    #[arg(long, value_name = "FILE", requires = "echo_server")]
    pub echo_log: Option<PathBuf>,
}

/// Runs `antaca sim`.
pub fn main(args: SimArgs) -> Result<(), SimError> {
    let spec = Spec::load(&args.spec).map_err(|e| format!("spec {:?}: {e}", args.spec))?;
    if let Some(addr) = &args.echo_server {
        return echo(addr, spec, args.length_header, args.echo_log.as_deref());
    }
    if let Some(out) = &args.plot {
        return plot(out, &args.json);
    }
    if args.json.len() > 1 {
        return Err("--json takes one file when running (several only with --plot)".into());
    }
    let text = match &args.portfolio {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("portfolio {}: {e}", path.display()))?,
        None => antaca::app::DEMO_PORTFOLIO.to_string(),
    };
    let portfolio = Portfolio::parse(&text).map_err(|e| format!("portfolio: {e}"))?;
    let book = Book::from_portfolio(&portfolio, current_yymm())?;
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err("--duration must be a positive number of seconds".into());
    }
    let mut config = SimConfig::new(args.iso.clone(), spec, book);
    config.header = args.length_header;
    config.connections = args.connections;
    config.inflight = args.inflight;
    config.rate = args.rate;
    config.duration = Duration::from_secs_f64(args.duration);
    config.mix = args.mix;
    config.checks = if args.protocol_only {
        Checks::Protocol
    } else {
        Checks::Full
    };
    config.progress = std::io::stdout().is_terminal();
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let report = super::run_blocking(config)?;
    print!("{}", report.summary());
    if let Some(path) = args.json.first() {
        std::fs::write(path, report.to_json()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("{} errors (see above)", report.errors.max(1)).into())
    }
}

fn echo(
    addr: &str,
    spec: Spec,
    header: LengthHeader,
    log: Option<&std::path::Path>,
) -> Result<(), SimError> {
    let name = spec.name().to_string();
    let server = match log {
        None => super::echo::EchoServer::start(addr, spec, header)?,
        Some(log) => super::echo::EchoServer::start_durable(addr, spec, header, log)?,
    };
    let durable = match log {
        None => String::new(),
        Some(log) => format!(", each request fdatasynced to {} first", log.display()),
    };
    println!(
        "echo server listening on {} (spec {name}, {header} length header{durable})",
        server.addr
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    antaca::app::wait_for_signal()?;
    server.stop();
    Ok(())
}

fn plot(out: &PathBuf, inputs: &[PathBuf]) -> Result<(), SimError> {
    if inputs.is_empty() {
        return Err("--plot needs at least one --json REPORT.json".into());
    }
    let mut series = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let report = Report::from_json(&text)
            .map_err(|e| format!("{}: not a sim report: {e}", path.display()))?;
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        series.push((label, report));
    }
    std::fs::write(out, super::plot::svg(&series))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("plot written to {}", out.display());
    Ok(())
}
