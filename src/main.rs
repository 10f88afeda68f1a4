//! The `vacd` binary: command line, logging and signals. Everything else is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vacd::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    version,
    about = "vacd — an open virtual ACD for calls, chats and written contacts"
)]
struct Cli {
    /// Configuration file; every key can be overridden by `VACD_<SECTION>__<KEY>`.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config/vacd.toml",
        env = "VACD_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load and validate the configuration, then exit.
    CheckConfig,
}

/// mimalloc instead of glibc's malloc: vacd allocates and frees small objects on every SIP
/// message and chat frame from many threads, where glibc spent ~13 % of the CPU at 800 calls/s
/// (see loadtests/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!(
                "vacd: invalid configuration in {}:\n{e}",
                cli.config.display()
            );
            std::process::exit(2);
        }
    };
    init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            vacd::channels::letter::LetterFonts::load(
                config.channels.letter_font.as_deref(),
                config.channels.letter_bold_font.as_deref(),
            )?;
            vacd::serve::Tls::configured(&config.http)?;
            vacd::sip::load_tls(&config.sip)?;
            println!("configuration {} is valid", cli.config.display());
            Ok(())
        }
        Command::Migrate => {
            let store =
                vacd::store::Store::open(&config.database.url, config.database.max_connections)
                    .await
                    .context("migrating the database")?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let running = vacd::server::start(&config)
                .await
                .context("starting vacd")?;
            shutdown_signal().await;
            tracing::info!("shutdown requested");
            running.shutdown().await.context("shutting down")?;
            Ok(())
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
