//! One node's byte stream: connecting (TCP, optionally TLS), and the two
//! small tasks that move bytes between the socket and the driver.
//!
//! Nothing here understands RESP: bytes read are handed to the driver as
//! they come, bytes to write come from the core's `poll_transmit`.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redlock_core::url::NodeUrl;
use redlock_core::NodeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// What connection tasks tell the driver. `generation` identifies the
/// connection attempt, so messages from a connection the driver has since
/// closed are recognised and dropped.
#[derive(Debug)]
pub(crate) enum IoEvent {
    /// Connected: write through `writer`. On plain TCP the driver reads the
    /// socket itself through `reader` (no task hop per reply); otherwise this
    /// connection's task keeps reading and sends `Data`.
    Up {
        node: NodeId,
        generation: u64,
        writer: Writer,
        writer_task: AbortHandle,
        reader: Option<OwnedReadHalf>,
    },
    /// Bytes read.
    Data {
        node: NodeId,
        generation: u64,
        bytes: Vec<u8>,
    },
    /// Connecting failed, or the connection closed or failed.
    Down {
        node: NodeId,
        generation: u64,
        reason: String,
    },
}

/// The driver's end of a connection's write side.
///
/// On plain TCP the driver writes directly with a non-blocking `try_write`
/// (no task hop on the hot path); only what the socket does not take at once
/// goes to the writer task, and while anything is queued there every later
/// write queues behind it, so bytes are never reordered. TLS streams always
/// go through the writer task.
#[derive(Debug)]
pub(crate) struct Writer {
    direct: Option<Arc<OwnedWriteHalf>>,
    /// Messages handed to the writer task and not yet fully written.
    queued: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Writer {
    /// Writes `data` in order after everything written before. Errors are
    /// left to the writer task, which reports the connection down.
    pub(crate) fn write(&self, data: &[u8]) {
        let mut rest = data;
        if let Some(direct) = &self.direct {
            if self.queued.load(Ordering::Acquire) == 0 {
                match direct.try_write(data) {
                    Ok(n) if n == data.len() => return,
                    Ok(n) => rest = &data[n..],
                    Err(_) => {}
                }
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        // A closed writer task reports `Down` by itself.
        let _ = self.tx.send(rest.to_vec());
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Read buffer size: larger replies arrive in several pieces, which the
/// core accepts split anywhere.
const READ_BUF: usize = 16 * 1024;

/// Builds the TLS settings: the Mozilla roots plus an optional extra root
/// (PEM, one or more certificates).
pub(crate) fn tls_config(extra_ca_pems: &[Vec<u8>]) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_ca_pems {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| io::Error::other(format!("bad CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| io::Error::other(format!("bad CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(io::Error::other("bad CA PEM: no certificate found"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An open connection: plain TCP (written to directly by the driver) or
/// any other stream (TLS).
enum Opened {
    Tcp(TcpStream),
    Other(Box<dyn Stream>),
}

async fn open(url: &NodeUrl, tls: Option<Arc<ClientConfig>>) -> io::Result<Opened> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
    tcp.set_nodelay(true)?;
    if !url.tls {
        return Ok(Opened::Tcp(tcp));
    }
    let config = tls.ok_or_else(|| io::Error::other("TLS is not configured"))?;
    let name = ServerName::try_from(url.host.as_str().to_owned())
        .map_err(|e| io::Error::other(format!("bad TLS server name: {e}")))?;
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Opened::Other(Box::new(stream)))
}

/// The connection task: connects within `timeout`, reports
/// [`IoEvent::Up`] with a writer, then reads until the stream ends.
pub(crate) async fn run(
    node: NodeId,
    generation: u64,
    url: NodeUrl,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    events: mpsc::Sender<IoEvent>,
) {
    let opened = match tokio::time::timeout(timeout, open(&url, tls)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err(format!("connect timed out after {timeout:?}")),
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err(reason) => {
            let _ = events
                .send(IoEvent::Down {
                    node,
                    generation,
                    reason,
                })
                .await;
            return;
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    // Plain TCP: the driver reads and (mostly) writes the socket itself.
    // Other streams (TLS): this task reads, a writer task writes.
    let (direct, driver_reader, task_reader, writer_task) = match stream {
        Opened::Tcp(tcp) => {
            let (r, w) = tcp.into_split();
            let w = Arc::new(w);
            let task = tokio::spawn(tcp_write_loop(
                node,
                generation,
                w.clone(),
                rx,
                queued.clone(),
                events.clone(),
            ));
            (Some(w), Some(r), None, task)
        }
        Opened::Other(stream) => {
            let (r, w) = tokio::io::split(stream);
            let task = tokio::spawn(write_loop(node, generation, w, rx, events.clone()));
            (None, None, Some(r), task)
        }
    };
    let up = IoEvent::Up {
        node,
        generation,
        writer: Writer { direct, queued, tx },
        writer_task: writer_task.abort_handle(),
        reader: driver_reader,
    };
    if events.send(up).await.is_err() {
        writer_task.abort();
        return;
    }
    let Some(mut reader) = task_reader else {
        return;
    };
    let mut buf = vec![0u8; READ_BUF];
    let reason = loop {
        match reader.read(&mut buf).await {
            Ok(0) => break "connection closed by the node".to_string(),
            Ok(n) => {
                let data = IoEvent::Data {
                    node,
                    generation,
                    bytes: buf[..n].to_vec(),
                };
                if events.send(data).await.is_err() {
                    writer_task.abort();
                    return;
                }
            }
            Err(e) => break format!("read failed: {e}"),
        }
    };
    let _ = events
        .send(IoEvent::Down {
            node,
            generation,
            reason,
        })
        .await;
}

/// The fallback writer for plain TCP: writes what the driver's `try_write`
/// could not, in order, and tells the driver when the queue is empty again.
async fn tcp_write_loop(
    node: NodeId,
    generation: u64,
    writer: Arc<OwnedWriteHalf>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    events: mpsc::Sender<IoEvent>,
) {
    while let Some(buf) = rx.recv().await {
        let mut off = 0;
        while off < buf.len() {
            let result = match writer.writable().await {
                Ok(()) => writer.try_write(&buf[off..]),
                Err(e) => Err(e),
            };
            match result {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = events
                        .send(IoEvent::Down {
                            node,
                            generation,
                            reason: format!("write failed: {e}"),
                        })
                        .await;
                    return;
                }
            }
        }
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn write_loop(
    node: NodeId,
    generation: u64,
    mut writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::Sender<IoEvent>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        let result = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        }
        .await;
        if let Err(e) = result {
            let _ = events
                .send(IoEvent::Down {
                    node,
                    generation,
                    reason: format!("write failed: {e}"),
                })
                .await;
            return;
        }
    }
    let _ = writer.shutdown().await;
}
