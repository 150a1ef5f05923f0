//! Every path of every API. The `*_ROUTE` templates are what the servers
//! route on; the functions build a concrete path for a client.

/// Health of the manager, an agent or a router (the manager's and the
/// agents' need a credential: they tell what they know).
pub const HEALTH: &str = "/v1/health";
/// Liveness of any daemon, without a credential: `200 ok` and nothing
/// else (for load balancers, systemd and orchestrators).
pub const LIVENESS: &str = "/health";
/// Prometheus metrics of any daemon (text format 0.0.4); the manager's
/// and the agents' need a read credential (a monitor's).
pub const METRICS: &str = "/metrics";

// Manager.
/// An agent's report (`POST`, [`crate::AgentReport`] → [`crate::ReportAck`]).
pub const REPORT: &str = "/v1/report";
/// Every cluster's status (`GET`, a list of [`crate::status::ClusterStatus`]).
pub const CLUSTERS: &str = "/v1/clusters";
pub const CLUSTER_ROUTE: &str = "/v1/clusters/{name}";
pub const HISTORY_ROUTE: &str = "/v1/clusters/{name}/history";
pub const FAILOVER_ROUTE: &str = "/v1/clusters/{name}/failover";
pub const ACK_ROUTE: &str = "/v1/clusters/{name}/ack";
pub const SWITCHOVER_ROUTE: &str = "/v1/clusters/{name}/switchover";
pub const REJOIN_ROUTE: &str = "/v1/clusters/{name}/rejoin";
pub const WATCH_ROUTE: &str = "/v1/clusters/{name}/watch";
/// The web console's live feed of one cluster (`GET`, `text/event-stream`
/// of [`crate::console::ConsoleFrame`]s; a read credential).
pub const STREAM_ROUTE: &str = "/v1/clusters/{name}/stream";
/// The web console's page (`GET`, no credential: it holds no data; its
/// script calls the API with the token the operator gives it).
pub const CONSOLE: &str = "/";
/// The console's script and style sheet (no credential).
pub const CONSOLE_JS: &str = "/console/app.js";
pub const CONSOLE_CSS: &str = "/console/app.css";
/// Read the configuration file again and apply its clusters (`POST`,
/// [`crate::requests::ReloadAnswer`]); the same as `SIGHUP`. Each manager
/// reloads its own file: it is not forwarded to the leader.
pub const RELOAD: &str = "/v1/reload";

// Agent.
/// The agent's last sample (`GET`, an [`crate::AgentReport`]).
pub const AGENT_STATUS: &str = "/v1/status";
/// `POST` [`crate::agent::VipRequest`].
pub const VIP: &str = "/v1/vip";
/// `POST` [`crate::agent::FenceRequest`] → [`crate::agent::FenceAnswer`].
pub const FENCE: &str = "/v1/fence";

// Router.
pub const ENDPOINTS_ROUTE: &str = "/v1/clusters/{name}/endpoints";

fn fill(route: &str, name: &str) -> String {
    route.replace("{name}", name)
}

pub fn cluster(name: &str) -> String {
    fill(CLUSTER_ROUTE, name)
}
pub fn history(name: &str) -> String {
    fill(HISTORY_ROUTE, name)
}
pub fn failover(name: &str) -> String {
    fill(FAILOVER_ROUTE, name)
}
pub fn ack(name: &str) -> String {
    fill(ACK_ROUTE, name)
}
pub fn switchover(name: &str) -> String {
    fill(SWITCHOVER_ROUTE, name)
}
pub fn rejoin(name: &str) -> String {
    fill(REJOIN_ROUTE, name)
}
pub fn watch(name: &str) -> String {
    fill(WATCH_ROUTE, name)
}
pub fn stream(name: &str) -> String {
    fill(STREAM_ROUTE, name)
}
pub fn endpoints(name: &str) -> String {
    fill(ENDPOINTS_ROUTE, name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn concrete_paths_fill_the_route() {
        assert_eq!(super::watch("c1"), "/v1/clusters/c1/watch");
        assert_eq!(super::cluster("c1"), "/v1/clusters/c1");
    }
}
