//! Accept loops with connection limits: a total and a per-IP count, both enforced
//! before any byte is read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use starling_proto::c2s::stream_header;
use starling_proto::error::{StreamError, StreamErrorCondition};
use starling_proto::ns;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::Shared;

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Releases a connection's slot when the connection ends.
pub struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.shared.limits.counts.lock().expect("limits lock");
        counts.0 -= 1;
        if let Some(count) = counts.1.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.1.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimits {
            max_total,
            max_per_ip,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    pub(crate) fn try_acquire(shared: &Arc<Shared>, ip: IpAddr) -> Option<ConnectionSlot> {
        let limits = &shared.limits;
        let mut counts = limits.counts.lock().expect("limits lock");
        let per_ip = counts.1.get(&ip).copied().unwrap_or(0);
        if counts.0 >= limits.max_total || per_ip >= limits.max_per_ip {
            return None;
        }
        counts.0 += 1;
        counts.1.insert(ip, per_ip + 1);
        Some(ConnectionSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, direct_tls: bool) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Running out of file descriptors must not end the loop.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionLimits::try_acquire(&shared, peer.ip()) else {
            tracing::warn!(%peer, "connection limit reached; refusing");
            if !direct_tls {
                tokio::spawn(refuse(tcp, shared.config.domains[0].clone()));
            }
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            crate::connection::serve(shared, tcp, direct_tls).await;
            drop(slot);
        });
    }
}

/// Over the limit on a plain listener: say why (RFC 6120 §4.9.3.14), then close.
async fn refuse(mut tcp: TcpStream, domain: String) {
    let error = StreamError::with_text(
        StreamErrorCondition::PolicyViolation,
        "too many connections",
    );
    let mut reply = stream_header(&domain, None, None);
    reply.push_str(&error.to_element().to_xml(ns::CLIENT));
    reply.push_str("</stream:stream>");
    let write = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.write_all(reply.as_bytes()),
    );
    let _ = write.await;
    let _ = tcp.shutdown().await;
}
