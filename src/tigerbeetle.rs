//! Wiring of the TigerBeetle gateway into `clearline start`: its limits from the command line,
//! and the core's side of the hand-off (replies to the gateway's requests go back to it, not to
//! our own net thread).
//!
//! The gateway itself (framing, sessions, batches) lives in `clearline_net::tigerbeetle`; see
//! docs/tigerbeetle-compatibility.md.

use std::time::Duration;

use clearline_net::tigerbeetle::gateway::{CoreLink, GatewayConfig, GatewayStats};
use clearline_net::Request;

use crate::cli::TigerBeetleArgs;
use crate::core::{reply_to, Core};

/// The gateway's limits, if the gateway is asked for.
pub fn gateway_config(args: &TigerBeetleArgs) -> Option<GatewayConfig> {
    let addr = args.tigerbeetle_addr?;
    Some(GatewayConfig {
        connections_max: args.tigerbeetle_connections_max as usize,
        sessions_max: args.tigerbeetle_sessions_max as usize,
        requests_in_flight_max: args.tigerbeetle_requests_in_flight_max as usize,
        idle_timeout: Duration::from_millis(args.tigerbeetle_idle_timeout_ms),
        ..GatewayConfig::new(addr, args.tigerbeetle_cluster_id)
    })
}

/// Applies one request the gateway submitted and hands the reply back to it. The reply body
/// reuses the request's buffer, so the gateway's buffers stay with the gateway and our own
/// server's pool is untouched.
///
/// # Errors
///
/// A journal failure other than a full journal (the server must stop), or a reply the gateway
/// cannot take (it had more requests with the core than its queue holds: a broken invariant).
pub fn apply(
    core: &mut Core,
    mut request: Request,
    scratch: &mut [u8],
    link: Option<&CoreLink>,
) -> Result<(), String> {
    let Some(link) = link else {
        return Err("a request from the tigerbeetle gateway, which is not running".to_string());
    };
    let applied = core.apply(
        request.operation,
        request.header.count,
        &request.body,
        scratch,
    );
    let body = std::mem::take(&mut request.body);
    let reply = reply_to(&request, applied, scratch, body)
        .map_err(|error| format!("journal append failed: {error}"))?;
    link.push_reply(reply)
        .map_err(|_| "the tigerbeetle reply queue overflowed".to_string())
}

/// One line about what the gateway did, printed when the server stops.
pub fn describe(stats: &GatewayStats) -> String {
    format!(
        "tigerbeetle clients: {} connections, {} requests ({} of several batches), {} replies \
         resent, {} pongs, {} evictions",
        stats.connections_accepted,
        stats.requests,
        stats.requests_multi_batch,
        stats.replies_resent,
        stats.pongs,
        stats.evictions
    )
}
