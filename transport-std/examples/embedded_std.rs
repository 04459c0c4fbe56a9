//! The embedded driver over `std::net::TcpStream` through `embedded-io-adapters`.
//!
//! Usage: `cargo run -p redlock-std --example embedded_std -- redis://127.0.0.1:6379 [more URLs]`

use std::net::TcpStream;
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use redlock_std::core::url::NodeUrl;
use redlock_std::core::Config;
use redlock_std::embedded::{EmbeddedClient, StdClock};

/// A CSPRNG for tokens: OS bytes via getrandom, wrapped for rand_core 0.10.
struct OsRng;

impl rand_core::TryRng for OsRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        // An example may abort on an OS RNG failure; a library must not.
        getrandom::fill(dst).expect("OS random number generator");
        Ok(())
    }
}
impl rand_core::TryCryptoRng for OsRng {}

fn connect(url: &NodeUrl) -> std::io::Result<FromStd<TcpStream>> {
    let sock = TcpStream::connect((url.host.as_str(), url.port))?;
    sock.set_nodelay(true)?;
    // embedded-io has no timeouts: the socket's own read timeout bounds each read.
    sock.set_read_timeout(Some(Duration::from_millis(2)))?;
    Ok(FromStd::new(sock))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: embedded_std redis://HOST:PORT [...]");
        std::process::exit(2);
    }
    let mut nodes = Vec::new();
    for a in &args {
        let url = NodeUrl::parse(a).map_err(|e| format!("{a}: {e}"))?;
        let sock = connect(&url).map_err(|e| format!("{url}: {e}"))?;
        nodes.push((url.node_config(), sock));
    }
    let mut client =
        EmbeddedClient::new(Config::new(Duration::from_secs(10)), nodes, StdClock::new())?
            .with_timeout_classifier(|e: &std::io::Error| {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            });
    let lease = client.lock(b"embedded-example", &mut OsRng)?;
    eprintln!("acquired, valid for {:?}", lease.remaining(lease.start()));
    let lease = client.extend(&lease, Duration::from_secs(10))?;
    eprintln!("extended");
    let report = client.release(&lease)?;
    eprintln!("released on {} of {} nodes", report.released(), args.len());
    Ok(())
}
