//! Tests of the test harness itself: servers start, stop, pause, restart; ACL and TLS work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redlock_tests::{
    free_port, Cluster, GarbageMode, GarbageServer, RedisServer, Reply, ServerOptions,
};

#[test]
fn start_command_and_drop_kills() {
    let server = RedisServer::start();
    let port = server.port();
    assert_eq!(server.command(&["PING"]), Reply::Str("PONG".into()));
    assert_eq!(server.command(&["SET", "k", "v"]), Reply::Str("OK".into()));
    assert_eq!(server.command(&["GET", "k"]), Reply::Str("v".into()));
    assert_eq!(server.command(&["GET", "missing"]), Reply::Nil);
    assert_eq!(server.command(&["INCR", "n"]), Reply::Int(1));
    assert!(matches!(server.command(&["NOSUCHCMD"]), Reply::Err(_)));
    assert_eq!(
        server.command(&["CONFIG", "GET", "save"]),
        Reply::Array(vec![Reply::Str("save".into()), Reply::Str(String::new())])
    );
    drop(server);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn db_selection() {
    let server = RedisServer::start();
    server.command_in_db(3, &["SET", "k", "three"]);
    assert_eq!(server.command(&["GET", "k"]), Reply::Nil);
    assert_eq!(
        server.command_in_db(3, &["GET", "k"]),
        Reply::Str("three".into())
    );
    assert!(server.url_with(None, None, 3).ends_with("/3"));
}

#[test]
fn pause_resume() {
    let server = RedisServer::start();
    server.pause();
    let err = server.try_command_in_db(0, &["PING"]);
    // A paused server accepts (the kernel does) but never answers.
    assert!(err.is_err(), "{err:?}");
    server.resume();
    assert_eq!(server.command(&["PING"]), Reply::Str("PONG".into()));
}

#[test]
fn kill_and_restart_same_port_empty() {
    let mut server = RedisServer::start();
    let port = server.port();
    server.command(&["SET", "k", "v"]);
    server.kill();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.command(&["GET", "k"]), Reply::Nil);
}

#[test]
fn requirepass_and_acl() {
    let server = RedisServer::start_with(ServerOptions {
        requirepass: Some("s3cret".into()),
        acl_users: vec![("alice".into(), "wonderland".into())],
        ..ServerOptions::default()
    });
    // command() authenticates with requirepass.
    assert_eq!(server.command(&["PING"]), Reply::Str("PONG".into()));
    assert_eq!(
        server.command(&["AUTH", "alice", "wonderland"]),
        Reply::Str("OK".into())
    );
    assert!(matches!(
        server.command(&["AUTH", "alice", "wrong"]),
        Reply::Err(_)
    ));
    assert!(server.url().contains(":s3cret@"));
    // Without AUTH the server refuses.
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"-NOAUTH"), "{:?}", &buf[..n]);
}

#[test]
fn tls_starts() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    });
    let url = server.tls_url().expect("tls url");
    assert!(url.starts_with("rediss://localhost:"));
    assert!(server.tls().unwrap().dir.path().join("ca.crt").exists());
    assert!(TcpStream::connect(("127.0.0.1", server.tls_port().unwrap())).is_ok());
    assert_eq!(server.command(&["PING"]), Reply::Str("PONG".into()));
}

#[test]
fn cluster_starts_in_parallel() {
    let cluster = Cluster::start(5);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 5);
    let mut ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5);
    for n in &cluster.nodes {
        assert_eq!(n.command(&["PING"]), Reply::Str("PONG".into()));
    }
}

#[test]
fn free_port_is_bindable() {
    let p = free_port();
    assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
}

fn first_bytes(g: &GarbageServer, want: usize, wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", g.port())).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[test]
fn garbage_modes() {
    let g = GarbageServer::start(GarbageMode::HugeBulkHeader);
    assert_eq!(
        first_bytes(&g, 13, Duration::from_secs(2)),
        b"$9999999999\r\n"
    );
    let g = GarbageServer::start(GarbageMode::CloseMidReply);
    assert_eq!(first_bytes(&g, 100, Duration::from_secs(2)), b"+O");
    let g = GarbageServer::start(GarbageMode::Silence);
    assert!(first_bytes(&g, 1, Duration::from_millis(300)).is_empty());
    let g = GarbageServer::start(GarbageMode::RandomBytes);
    assert!(first_bytes(&g, 100, Duration::from_secs(2)).len() >= 100);
    let g = GarbageServer::start(GarbageMode::Trickle);
    let got = first_bytes(&g, 3, Duration::from_secs(2));
    assert_eq!(got, b"+OO");
    drop(g);
}
