//! Logging set-up: `FERRY_LOG`, else `RUST_LOG`, else `info`; to stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let mut filter = std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    // rustls warns about every client that sends an IP address as SNI (wrk,
    // some OpenSSL clients); ferry serves its default certificate then, by design.
    if !filter.contains("rustls") {
        filter.push_str(",rustls=error");
    }
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("ferry: ignoring invalid log filter {filter:?}: {e}");
        EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
