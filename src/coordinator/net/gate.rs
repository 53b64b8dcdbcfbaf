//! The gate in front of every gRPC service: authenticate and authorise from the headers, then
//! bound the body, all **before** a byte of the request body is read or decoded.
//!
//! tonic decodes a whole request message before the handler runs, so a check in the handler
//! comes after the memory is spent: one unauthenticated 200 MB message would be buffered and
//! decoded first. [`Gated`] wraps a generated service and, for each call,
//! 1. looks the method up in its table of [`MethodRule`]s (`UNIMPLEMENTED` if absent);
//! 2. checks the bearer token and the caller's role from the HTTP/2 headers alone
//!    (`UNAUTHENTICATED` / `PERMISSION_DENIED`, answered without reading the body — the
//!    stream is reset and the body never buffered);
//! 3. caps the request body at the method's limit: a body that grows past it fails with
//!    `RESOURCE_EXHAUSTED` as soon as the excess arrives.
//!
//! The handlers check the token again (it yields the caller's name for the audit log).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::{http, Bytes, Service};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use crate::coordinator::net::auth::{Role, TokenTable};

/// What one method admits.
#[derive(Debug, Clone, Copy)]
pub struct MethodRule {
    /// The method's name (the last path segment, e.g. `GetPublicKey`).
    pub method: &'static str,
    /// The roles that may call it.
    pub roles: &'static [Role],
    /// The largest request message (its 5-byte gRPC prefix comes on top).
    pub max_request_bytes: usize,
}

/// A generated service behind the gate (see the [module docs](self)).
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    tokens: Arc<TokenTable>,
    rules: Arc<[MethodRule]>,
}

impl<S> std::fmt::Debug for Gated<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<S> Gated<S> {
    /// `inner` behind a gate that admits the callers of `tokens` as `rules` say.
    pub fn new(inner: S, tokens: Arc<TokenTable>, rules: &[MethodRule]) -> Self {
        Self {
            inner,
            tokens,
            rules: rules.into(),
        }
    }
}

impl<S: NamedService> NamedService for Gated<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Gated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        let Some(rule) = self.rules.iter().find(|r| r.method == method).copied() else {
            let status = Status::unimplemented(format!("unknown method {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let metadata = MetadataMap::from_headers(req.headers().clone());
        if let Err(status) = self.tokens.authorize(&metadata, rule.method, rule.roles) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let req = req.map(|body| {
            Body::new(Capped {
                inner: body,
                // The message and its 5-byte gRPC prefix.
                left: rule.max_request_bytes.saturating_add(5),
                rule,
            })
        });
        // The clone is the ready one's twin (tower's usual dance for `&mut self` services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await })
    }
}

/// A request body that fails once more than `left` bytes have arrived.
struct Capped {
    inner: Body,
    left: usize,
    rule: MethodRule,
}

impl HttpBody for Capped {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.left {
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "{} requests are limited to {} bytes",
                            this.rule.method, this.rule.max_request_bytes
                        )))));
                    }
                    this.left -= data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
