//! TLS for https agents: rustls with the ring provider, the configured CA (or the system's
//! roots), and an optional client certificate. Built per adapter, so nothing process-wide (a
//! default crypto provider) is installed behind the caller's back.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{COMPONENT, ConfigError, ConsulConfig};

/// The rustls client configuration for `config`. For an http address it has no roots: it is
/// never used.
pub(crate) fn client_config(config: &ConsulConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let https = config.base_url().starts_with("https://");
    match (&config.ca_file, https) {
        (Some(path), _) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                ConfigError::new(COMPONENT, "ca_file", format!("{}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    ConfigError::new(COMPONENT, "ca_file", format!("{}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    ConfigError::new(COMPONENT, "ca_file", format!("{}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(ConfigError::new(
                    COMPONENT,
                    "ca_file",
                    format!("{} holds no certificate", path.display()),
                ));
            }
        }
        (None, true) => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ConfigError::new(
                    COMPONENT,
                    "ca_file",
                    "no system root certificates found; set ca_file",
                ));
            }
        }
        (None, false) => {}
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(COMPONENT, "address", format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = CertificateDer::pem_file_iter(cert_path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ConfigError::new(
                        COMPONENT,
                        "client_cert_file",
                        format!("{}: {e}", cert_path.display()),
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                ConfigError::new(
                    COMPONENT,
                    "client_key_file",
                    format!("{}: {e}", key_path.display()),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::new(COMPONENT, "client_cert_file", e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_names_the_field() {
        let missing = ConsulConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ConsulConfig::new("https://127.0.0.1:8501")
        };
        assert_eq!(client_config(&missing).unwrap_err().field, "ca_file");
        let empty =
            std::env::temp_dir().join(format!("coord-consul-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let config = ConsulConfig {
            ca_file: Some(empty.clone()),
            ..ConsulConfig::new("https://127.0.0.1:8501")
        };
        assert_eq!(client_config(&config).unwrap_err().field, "ca_file");
        let _ = std::fs::remove_file(empty);
        assert!(client_config(&ConsulConfig::default()).is_ok());
    }
}
