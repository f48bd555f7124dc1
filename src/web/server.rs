//! The HTTP/1 server under the router: what `axum::serve` does, plus the limits a server facing
//! slow or hostile clients needs (SPEC §12): a connection must send its whole request head within
//! `header_read_timeout_secs` (also the idle time allowed between requests on a kept-alive
//! connection), a request's body must arrive within `body_read_timeout_secs` of its head (else 408
//! and the connection closes), and at most `max_connections` connections are served at once
//! (further ones wait in the listen backlog until one closes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The limits the server applies to every connection, and whom it believes about addresses.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl Limits {
    pub fn of(config: &crate::config::Config) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_secs),
            max_connections: config.max_connections,
            trusted_proxies: config.trusted_networks().into(),
        }
    }
}

/// The client's address of a request, as [`client_address`] found it (throttles key on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client behind `peer`: the connection's address, unless it is a trusted proxy — then the
/// right-most address of `X-Forwarded-For` (of all such headers, in order) that is not a trusted
/// proxy; if every hop is trusted, the left-most. An entry that is no address stops the walk at
/// the hop before it (a client cannot choose its address by writing one further left).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<std::net::IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets the open
/// connections finish their requests (the caller bounds how long it waits for that).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let trusted = limits.trusted_proxies.clone();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the limit, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // closed: never happens, the loop owns it
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let trusted = trusted.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            let client = client_address(peer.ip(), req.headers(), &trusted);
            async move {
                let mut req = req.map(|b| Body::new(Deadline::new(b, body_timeout)));
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(ClientAddr(client));
                router.oneshot(req).await
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out, malformed); nothing to answer.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A request body that fails with [`BodyTimedOut`] when it has not arrived in full by its deadline.
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Deadline {
        Deadline { inner, sleep: Box::pin(tokio::time::sleep(timeout)) }
    }
}

/// The error a body gives when its client was too slow; the extractors answer 408 for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (from reading a body, through the extractors' wrappers) is a body deadline.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // No proxy trusted, or not from one: the connection's address, whatever the header says.
        assert_eq!(client_address(ip("203.0.113.9"), &headers(&["198.51.100.1"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_address(ip("10.0.0.2"), &headers(&["198.51.100.1"]), &[]), ip("10.0.0.2"));
        // Through two trusted proxies; a forged entry further left does not count.
        let h = headers(&["6.6.6.6, 198.51.100.1", "10.0.0.3"]);
        assert_eq!(client_address(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.1"));
        assert_eq!(client_address(ip("::1"), &headers(&["2001:db8::7"]), &trusted), ip("2001:db8::7"));
        // Every hop trusted: the left-most; no header: the proxy itself; garbage stops the walk.
        assert_eq!(client_address(ip("10.0.0.2"), &headers(&["10.1.1.1, 10.0.0.3"]), &trusted), ip("10.1.1.1"));
        assert_eq!(client_address(ip("10.0.0.2"), &headers(&[]), &trusted), ip("10.0.0.2"));
        assert_eq!(client_address(ip("10.0.0.2"), &headers(&["198.51.100.1, bogus"]), &trusted), ip("10.0.0.2"));
    }
}
