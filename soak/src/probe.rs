//! A plain RESP connection of the soak's own, to look at a node from the
//! outside (`CLIENT LIST`, `GET`, `PTTL`, `KEYS`) without going through the
//! library under test. Every read and write is bounded by a timeout, so a
//! paused node costs at most that.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};

/// One connection to `127.0.0.1:port`.
#[derive(Debug)]
pub(crate) struct Probe {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Probe {
    /// Connects as the default user, each read and write within `timeout`.
    pub(crate) fn connect(port: u16, timeout: Duration) -> io::Result<Probe> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Probe {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one command, returns its reply.
    pub(crate) fn command(&mut self, args: &[&str]) -> io::Result<OwnedFrame> {
        let mut replies = self.pipeline(&[args])?;
        replies.pop().ok_or_else(|| io::Error::other("no reply"))
    }

    /// Sends several commands in one write, returns their replies in order.
    pub(crate) fn pipeline(&mut self, commands: &[&[&str]]) -> io::Result<Vec<OwnedFrame>> {
        let mut out = Vec::new();
        for args in commands {
            let frame = OwnedFrame::Array(
                args.iter()
                    .map(|a| OwnedFrame::BulkString(a.as_bytes().to_vec()))
                    .collect(),
            );
            let start = out.len();
            out.resize(start + frame.encode_len(false), 0);
            encode(&mut out[start..], &frame, false)
                .map_err(|e| io::Error::other(format!("encode: {e:?}")))?;
        }
        self.stream.write_all(&out)?;
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            replies.push(self.read_reply()?);
        }
        Ok(replies)
    }

    fn read_reply(&mut self) -> io::Result<OwnedFrame> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad RESP: {e:?}"),
                    ))
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the node",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The text of a bulk or simple string reply.
pub(crate) fn text(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

/// The integer of an integer reply.
pub(crate) fn int(frame: &OwnedFrame) -> Option<i64> {
    match frame {
        OwnedFrame::Integer(i) => Some(*i),
        _ => None,
    }
}
