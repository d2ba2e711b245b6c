//! The health probes an `[[app.health]]` entry names: an HTTP GET, a TCP connect, a command.

use std::time::Duration;

use crate::config::Probe;

/// One HTTP client for every probe, on the ring TLS provider and the platform's roots.
fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        // Another part of the process may have installed the provider first; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    })
}

/// Runs `probe` once within `timeout`; the error says what failed, for the health report.
pub async fn run(probe: &Probe, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match probe {
            Probe::Http { url } => {
                let status = http_client()
                    .get(url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?
                    .status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("GET {url}: {status}"))
                }
            }
            Probe::Tcp { address } => tokio::net::TcpStream::connect(address)
                .await
                .map(drop)
                .map_err(|e| format!("connect {address}: {e}")),
            Probe::Command { argv } => {
                let status = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("{}: {e}", argv[0]))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("{}: {status}", argv[0]))
                }
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_probe_passes_and_fails_for_its_reason() {
        let t = Duration::from_secs(5);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(
            run(
                &Probe::Tcp {
                    address: open.clone()
                },
                t
            )
            .await,
            Ok(())
        );
        drop(listener);
        let closed = run(&Probe::Tcp { address: open }, t).await.unwrap_err();
        assert!(closed.starts_with("connect "), "{closed}");

        let ok = Probe::Command {
            argv: vec!["true".into()],
        };
        assert_eq!(run(&ok, t).await, Ok(()));
        let failing = Probe::Command {
            argv: vec!["false".into()],
        };
        assert!(
            run(&failing, t)
                .await
                .unwrap_err()
                .contains("exit status: 1")
        );
        let slow = Probe::Command {
            argv: vec!["sleep".into(), "5".into()],
        };
        let err = run(&slow, Duration::from_millis(100)).await.unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
    }
}
