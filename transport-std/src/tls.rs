//! TLS for `rediss://` nodes: rustls (ring provider) trusting the Mozilla
//! roots from `webpki-roots` plus any CA the caller adds.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Builds the client configuration shared by every TLS node of a client.
pub(crate) fn client_config(extra_ca_pems: &[Vec<u8>]) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_ca_pems {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| invalid(format!("bad CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("bad CA certificate: {e}")))?;
            found = true;
        }
        if !found {
            return Err(invalid("CA PEM holds no certificate".to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}
