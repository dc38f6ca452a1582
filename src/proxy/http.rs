//! The request path, in phases, in this order:
//!
//! 1. **decide** — target, route, redirect, checks and the upstream request
//!    head, all at once and without I/O ([`decide`], see [`super::decision`]
//!    for its steps). Refusals and redirects are answered here; a WebSocket
//!    handshake leaves for [`websocket::proxy`] (upgrade, relay).
//! 2. **send** — to a server picked by the upstream's balancing, retried
//!    elsewhere only if nothing was sent; the read timeout bounds the wait for
//!    the response head ([`Upstream::send`](crate::upstream::Upstream::send)).
//! 3. **response** — hop-by-hop headers out, the route's `response_headers`,
//!    the body streamed with a between-chunks timeout ([`response::from_upstream`]).
//!    On a `compress = true` route, an upstream's or a static file's answer
//!    is compressed by the client's `Accept-Encoding` when the policy allows
//!    ([`compress::apply`]; never a WebSocket's, never ferry's own errors).
//!    Over TLS, every answer (ferry's own too) gets the `hsts` header.
//! 4. **log** — one record (and the metrics) when the body is done, or when
//!    the client abandons the request ([`RequestContext`]'s `Drop`).
//!
//! Errors from any phase are answered by [`response::error`], with the status
//! [`ProxyError::status`] picks: the one place that does.

use std::sync::Arc;

use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::body::ProxyBody;
use super::context::RequestContext;
use super::decision::{Action, Forward, decide};
use super::error::ProxyError;
use super::response::{self, wants_json};
use super::{ConnInfo, State, compress, websocket};
use crate::config::ListenerKind;
use crate::static_files;
use crate::upstream::RequestBody;

/// Serves one request. Never fails: errors become responses.
pub async fn handle(
    state: Arc<State>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let (mut head, body) = req.into_parts();
    // hyper's handle on the connection after a 101 (or an HTTP/2 CONNECT's
    // stream): taken before the head is rewritten for the upstream.
    let upgrade = head.extensions.remove::<OnUpgrade>();
    let mut ctx = Box::new(RequestContext::new(state.clone(), conn, &head));
    // Compression answers the client's request, not the upstream's head.
    let facts = compress::RequestFacts::capture(&head);

    // Phase 1: decide.
    let decision = decide(&state.config, &ctx.conn.inbound(), &mut head);
    ctx.host = decision.host;
    ctx.route = decision.route;
    ctx.upstream = decision.upstream;
    let compress = decision.websocket.is_none() && ctx.route_config().is_some_and(|r| r.compress);
    let result = match decision.action {
        Action::Refuse(e) => {
            if let Some(ws) = &decision.websocket {
                websocket::log_refusal(&ctx, ws, &e);
            }
            Err(e)
        }
        Action::Redirect { status, location } => Ok(response::redirect(status, location)),
        Action::Static(files) => match static_files::serve(&files, &head).await {
            Ok(res) => Ok(response::from_file(
                res,
                &state.config.routes[ctx.route.unwrap_or(0)],
            )),
            Err(e) => Err(ProxyError::from(e)),
        },
        Action::Forward(forward) => match decision.websocket {
            // Boxed: the rarer WebSocket path keeps its state out of every
            // plain request's future.
            Some(ws) => {
                let ws = websocket::proxy(&state, &mut ctx, forward, head, ws, upgrade);
                Box::pin(ws).await
            }
            None => proxy(&state, &mut ctx, forward, head, body).await,
        },
    };

    let mut res = match result {
        Ok(res) if compress => compress::apply(res, &facts),
        Ok(res) => res,
        Err(e) => {
            let res = response::error(&e, json);
            ctx.failure = Some((e.side(), e.chain()));
            res
        }
    };
    if ctx.conn.listener == ListenerKind::Tls {
        // Every answer over TLS, ferry's own included (nginx's `add_header … always`).
        response::set_hsts(res.headers_mut(), &state.config, ctx.route);
    }
    // Phase 4 set-up: the context rides on the body and is logged when it ends.
    ctx.status = Some(res.status());
    res.body_mut().set_context(ctx);
    res
}

/// Phases 2 and 3 for a plain request; `head` is the upstream's.
async fn proxy(
    state: &State,
    ctx: &mut RequestContext,
    forward: Forward,
    mut head: Parts,
    body: Incoming,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Forward {
        route,
        upstream,
        read_timeout,
        max_body_size,
    } = forward;
    let (route, upstream) = (&state.config.routes[route], &state.upstreams[upstream]);
    ctx.conn.attach_source(upstream, &mut head);
    let body = RequestBody::new(body, max_body_size);
    let progress = body.progress();
    ctx.request_body = Some(progress.clone());

    // Phase 2: send.
    let sent_at = std::time::Instant::now();
    let sent = upstream
        .send(Request::from_parts(head, body), read_timeout)
        .await
        .map_err(|f| ProxyError::from_send(&upstream.name, f, &progress, max_body_size))?;
    ctx.upstream_ms = Some(sent_at.elapsed().as_secs_f64() * 1000.0);
    ctx.upstream_addr = Some(sent.addr);
    // The server counts this request as load until the response body ends.
    ctx.load = Some(sent.load);

    // Phase 3: the response.
    Ok(response::from_upstream(sent.response, route, read_timeout))
}
