//! The socket of any stream before and after TLS, and the one read path all
//! streams share.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use starling_xml::{StreamEvent, StreamParser, XmlError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::accepted_tls::AcceptedTls;

/// The socket before and after STARTTLS.
pub(crate) enum Transport {
    Plain(TcpStream),
    /// A client's TLS connection, on rustls' unbuffered API.
    Accepted(Box<AcceptedTls>),
    /// We accepted the TLS connection of a server (incoming s2s).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// We opened the TLS connection (outgoing s2s).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while the TLS handshake owns the socket.
    Upgrading,
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            // Read through `read_and_parse`, record by record.
            Transport::Accepted(_) => Poll::Ready(Err(std::io::ErrorKind::Unsupported.into())),
            Transport::Server(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Client(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Accepted(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Server(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Client(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Accepted(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Server(s) => Pin::new(s).poll_flush(cx),
            Transport::Client(s) => Pin::new(s).poll_flush(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Accepted(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Server(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Client(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Received bytes are read into this buffer, shared by all connections of a
/// thread, and parsed before the read returns: an idle connection holds no
/// read buffer of its own.
const READ_BYTES: usize = 16 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BYTES].into_boxed_slice());
}

/// Waits for received bytes and feeds them to `parser`, appending to `events`.
/// `None` when the connection closed or failed.
pub(crate) async fn read_and_parse(
    transport: &mut Transport,
    parser: &mut StreamParser,
    events: &mut Vec<StreamEvent>,
) -> Option<Result<(), XmlError>> {
    if let Transport::Accepted(tls) = transport {
        return std::future::poll_fn(|cx| {
            let mut parsed = Ok(());
            let mut feed = |bytes: &[u8]| {
                // Nothing after the first error is parsed.
                if parsed.is_ok() {
                    parsed = parser.feed(bytes, events);
                }
            };
            match tls.poll_read_records(cx, &mut feed) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(true)) => Poll::Ready(Some(parsed)),
                Poll::Ready(Ok(false) | Err(_)) => Poll::Ready(None),
            }
        })
        .await;
    }
    std::future::poll_fn(|cx| {
        READ_BUFFER.with_borrow_mut(|buffer| {
            let mut read = ReadBuf::new(buffer);
            match Pin::new(&mut *transport).poll_read(cx, &mut read) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => Poll::Ready(None),
                Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(None),
                Poll::Ready(Ok(())) => Poll::Ready(Some(parser.feed(read.filled(), events))),
            }
        })
    })
    .await
}

impl Transport {
    /// Frees what a connection gone quiet does not need until it hears again.
    pub(crate) fn release_buffers(&mut self) {
        if let Transport::Accepted(tls) = self {
            tls.release_buffers();
        }
    }

    /// Write and flush all of `buffer`, then empty it; a peer that does not read
    /// within `timeout` fails the write.
    pub(crate) async fn write_out(
        &mut self,
        buffer: &mut String,
        timeout: std::time::Duration,
    ) -> std::io::Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let write = async {
            self.write_all(buffer.as_bytes()).await?;
            self.flush().await
        };
        let result = tokio::time::timeout(timeout, write).await;
        buffer.clear();
        result.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}
