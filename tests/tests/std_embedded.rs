//! The embedded-io driver of redlock-std against real redis-server processes.

use std::net::TcpStream;
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use redlock_std::core::url::NodeUrl;
use redlock_std::core::{Config, RetryPolicy};
use redlock_std::embedded::{EmbeddedClient, EmbeddedError, StdClock};
use redlock_tests::{Cluster, GarbageMode, GarbageServer, Reply};

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
        getrandom::fill(dst).unwrap();
        Ok(())
    }
}
impl rand_core::TryCryptoRng for OsRng {}

type Client = EmbeddedClient<FromStd<TcpStream>, StdClock>;

fn client(urls: &[String]) -> Client {
    let nodes = urls
        .iter()
        .map(|u| {
            let url = NodeUrl::parse(u).unwrap();
            let s = TcpStream::connect((url.host.as_str(), url.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
            s.set_nodelay(true).unwrap();
            (url.node_config(), FromStd::new(s))
        })
        .collect();
    let mut config = Config::new(Duration::from_secs(2));
    config.node_timeout = Duration::from_millis(100);
    config.retry = RetryPolicy::none();
    EmbeddedClient::new(config, nodes, StdClock::new())
        .unwrap()
        .with_timeout_classifier(|e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        })
}

#[test]
fn embedded_lock_extend_release() {
    let cluster = Cluster::start(3);
    let mut c = client(&cluster.urls());
    let lease = c.lock(b"emb", &mut OsRng).unwrap();
    for n in &cluster.nodes {
        assert_eq!(
            n.command(&["GET", "emb"]),
            Reply::Str(lease.token().as_str().into())
        );
    }
    let lease = c.extend(&lease, Duration::from_secs(5)).unwrap();
    assert!(cluster.nodes[0].command(&["PTTL", "emb"]).as_int().unwrap() > 3000);
    // A second client is refused while we hold it.
    let mut other = client(&cluster.urls());
    assert!(matches!(
        other.lock(b"emb", &mut OsRng),
        Err(EmbeddedError::Busy(_))
    ));
    let report = c.release(&lease).unwrap();
    assert!(report.released() >= 2, "decided at quorum: {report:?}");
    other.lock(b"emb", &mut OsRng).unwrap();
}

#[test]
fn embedded_minority_garbage_and_dead() {
    let mut cluster = Cluster::start(3);
    let garbage = GarbageServer::start(GarbageMode::RandomBytes);
    let mut urls = cluster.urls();
    urls.push(garbage.url());
    let g2 = GarbageServer::start(GarbageMode::Silence);
    urls.push(g2.url());
    let mut c = client(&urls);
    let lease = c.lock(b"emb2", &mut OsRng).unwrap();
    c.release(&lease).unwrap();
    assert!(c.needs_socket(3), "the garbage node's socket was dropped");
    // Kill a real node: 2 of 5 answer, no quorum, a bounded-time error.
    cluster.nodes[0].kill();
    let t = std::time::Instant::now();
    let err = c.lock(b"emb3", &mut OsRng).unwrap_err();
    assert!(matches!(err, EmbeddedError::Unavailable(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

fn connect(url: &str) -> FromStd<TcpStream> {
    let url = NodeUrl::parse(url).unwrap();
    let s = TcpStream::connect((url.host.as_str(), url.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    s.set_nodelay(true).unwrap();
    FromStd::new(s)
}

/// 16.8: a socket handed over while the node's link is up replaces the old
/// connection properly: the handshake (AUTH, SELECT) runs on the new socket.
#[test]
fn set_socket_on_a_live_link_handshakes_again() {
    let server = redlock_tests::RedisServer::start_with(redlock_tests::ServerOptions {
        requirepass: Some("emb-pw".into()),
        ..Default::default()
    });
    let url = server.url_with(None, Some("emb-pw"), 3);
    let mut c = client(std::slice::from_ref(&url));
    let lease = c.lock(b"swap", &mut OsRng).unwrap();
    c.release(&lease).unwrap();
    assert!(!c.needs_socket(0));
    c.set_socket(0, connect(&url));
    let lease = c
        .lock(b"swap", &mut OsRng)
        .expect("the new socket was authenticated");
    let token = Reply::Str(lease.token().as_str().into());
    assert_eq!(server.command_in_db(3, &["GET", "swap"]), token);
    assert_eq!(server.command(&["GET", "swap"]), Reply::Nil, "not in db 0");
    assert_eq!(c.release(&lease).unwrap().released(), 1);
}

/// 16.8: replies still owed by the old socket are never matched against
/// requests written to the new one.
#[test]
fn set_socket_drops_what_the_old_socket_owed() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let mut c = client(&urls);
    let warm = c.lock(b"warm", &mut OsRng).unwrap();
    c.release(&warm).unwrap();
    // Node 0 goes silent: its SET and release are written, never answered.
    cluster.nodes[0].pause();
    let lease = c.lock(b"owed", &mut OsRng).unwrap();
    assert_eq!(c.release(&lease).unwrap().released(), 2);
    cluster.nodes[0].resume();
    c.set_socket(0, connect(&urls[0]));
    let lease = c.lock(b"owed2", &mut OsRng).unwrap();
    let report = c.release(&lease).unwrap();
    // Decided at quorum: a mismatched reply would have failed a node instead.
    assert!(report.released() >= 2, "{report:?}");
    assert!(
        report
            .nodes
            .iter()
            .all(|(_, o)| !matches!(o, redlock_core::NodeOutcome::Failed(_))),
        "{report:?}"
    );
    assert!(cluster.wait_gone("owed2", Duration::from_secs(1)));
}
