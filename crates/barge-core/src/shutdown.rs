//! SIGTERM (systemd's stop) and SIGINT (Ctrl-C) request a graceful shutdown; a second one
//! stops the process at once.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. Daemons stop taking new work when it fires
/// and finish what they hold, so a stop never leaves a half-written batch. A second signal exits
/// the process at once with status 128 + the signal's number (143, 130), for an operator who
/// will not wait: work in hand is abandoned, which the daemons' guarantees allow for (an open
/// transaction rolls back, a held message comes back after its visibility timeout).
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let (name, _) = next_signal(&mut terminate, &mut interrupt).await;
        tracing::info!(
            signal = name,
            "shutdown requested, finishing in-flight work (send it again to stop at once)"
        );
        crate::service::stopping();
        cancel.cancel();
        let (name, status) = next_signal(&mut terminate, &mut interrupt).await;
        tracing::warn!(signal = name, "second signal: stopping at once");
        std::process::exit(status);
    });
    Ok(token)
}

/// The next SIGTERM or SIGINT: its name and the exit status it calls for.
async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = terminate.recv() => ("SIGTERM", 128 + 15),
        _ = interrupt.recv() => ("SIGINT", 128 + 2),
    }
}
