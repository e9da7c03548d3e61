//! A cluster of several machines on one: one `skiff server --disable-agent` (the control
//! plane, in the host's network namespace) and two or more `skiff agent`s, each in a network
//! namespace of its own acting as a separate host, with its own data dir, address, bridge and
//! nftables table, all joined by a bridge in the host's namespace:
//!
//! ```text
//!  host namespace: skiff server on 10.244.<slot>.1 (bridge skh<slot>)
//!        │ veth skh<slot>v<i>  ──  host0 10.244.<slot>.<10+i>/24 in netns skmn<slot>-<i>
//!        ▼
//!  netns skmn<slot>-<i>: skiff agent --node-ip 10.244.<slot>.<10+i>, its pods on bridge
//!                        skmn<slot>b<i>, podCIDR a /26 of the cluster CIDR 10.243.<slot>.0/24
//! ```
//!
//! The agent runs in its namespace through `nsenter --net=` (which execs it: the pid we hold
//! is the agent's), and only the network namespace is its own: mounts, cgroups and /proc are
//! the machine's, as for an agent on a real host (`ip netns exec` would also give it a mount
//! namespace with a fresh /sys, hiding /sys/fs/cgroup). Pods' cgroups are named by pod uid
//! (`/skiff/pod<uid>`), so agents on one machine do not collide.
//!
//! The address space comes from the pod network slot ([`TestNetwork::claim`]) so parallel
//! tests never collide. On drop, even when a test panics: pods are force-deleted and their
//! removal awaited (an agent a test stopped is started again for it), agents and server are
//! killed by pid, mounts under the cluster's directory undone, and the namespaces (with their
//! bridges, veths, routes and tables), the hosts bridge and its veths deleted.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{assert_success, run, skiff_bin, workspace_root, Cluster, TestNetwork};

/// At most this many agents per harness (their addresses are `.10` to `.10+MAX_AGENTS-1`, and
/// the cluster CIDR /24 holds four /26 podCIDRs).
pub const MAX_AGENTS: usize = 4;
/// How long agents may take to register Ready with a podCIDR.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Each node's podCIDR prefix: four nodes in a slot's /24.
const NODE_CIDR_MASK: &str = "26";

/// One `skiff agent` in its network namespace.
pub struct AgentHost {
    /// The Node's name.
    pub node: String,
    /// The network namespace (`ip netns` name; `/run/netns/<netns>`).
    pub netns: String,
    /// The host's address on the hosts bridge (its `--node-ip`).
    pub address: String,
    /// The host end of its veth on the hosts bridge.
    pub veth: String,
    /// The agent's pods' bridge and nftables table (inside its namespace).
    pub bridge: String,
    pub table: String,
    pub data_dir: PathBuf,
    /// More `skiff agent` flags (e.g. CNI mode's).
    extra_args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl AgentHost {
    /// The agent's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `ip -n <netns> ARGS` (e.g. `route`) and returns its stdout; panics if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut command = Command::new("ip");
        command.arg("-n").arg(&self.netns).args(args);
        let output = run(command, None);
        assert_success(&output, &format!("ip -n {} {}", self.netns, args.join(" ")));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the agent logged so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the agent's runtime still holds containers or sandboxes.
    fn holds_pods(&self) -> bool {
        let empty = |dir: PathBuf| fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        !(empty(self.data_dir.join("containers")) && empty(self.data_dir.join("sandboxes")))
    }
}

/// The hosts' network of one harness: a slot, the namespaces, the hosts bridge. Removed on drop
/// (after the processes in it are gone).
struct HostsNetwork {
    /// The slot's lock; also gives the cluster CIDR.
    slot: TestNetwork,
    bridge: String,
    gateway: String,
}

impl HostsNetwork {
    fn claim() -> HostsNetwork {
        let slot = TestNetwork::claim();
        let hosts = HostsNetwork {
            bridge: format!("skh{}", slot.slot),
            gateway: format!("10.244.{}.1", slot.slot),
            slot,
        };
        // What a killed test process left in this slot.
        hosts.remove();
        ip(&["link", "add", &hosts.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", hosts.gateway),
            "dev",
            &hosts.bridge,
        ]);
        ip(&["link", "set", &hosts.bridge, "up"]);
        hosts
    }

    fn netns(&self, index: usize) -> String {
        format!("skmn{}-{index}", self.slot.slot)
    }

    fn veth(&self, index: usize) -> String {
        format!("skh{}v{index}", self.slot.slot)
    }

    fn address(&self, index: usize) -> String {
        format!("10.244.{}.{}", self.slot.slot, 10 + index)
    }

    /// A namespace joined to the hosts bridge, with `address` on its `host0`.
    fn add_host(&self, index: usize) {
        let (netns, veth) = (self.netns(index), self.veth(index));
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "host0", "netns", &netns,
        ]);
        ip(&["link", "set", &veth, "master", &self.bridge, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", netns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["link", "set", "lo", "up"]);
        inside(&[
            "addr",
            "add",
            &format!("{}/24", self.address(index)),
            "dev",
            "host0",
        ]);
        inside(&["link", "set", "host0", "up"]);
    }

    /// Whatever exists of the namespaces, veths and bridge of this slot.
    fn remove(&self) {
        for index in 0..MAX_AGENTS {
            quiet_ip(&["netns", "del", &self.netns(index)]);
            // Gone with its namespace's end, unless a process still holds that namespace.
            quiet_ip(&["link", "del", &self.veth(index)]);
        }
        quiet_ip(&["link", "del", &self.bridge]);
    }
}

impl Drop for HostsNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `ip ARGS`, panicking with its message if it fails.
fn ip(args: &[&str]) {
    let mut command = Command::new("ip");
    command.args(args);
    assert_success(&run(command, None), &format!("ip {}", args.join(" ")));
}

/// `ip ARGS`, whatever comes of it (cleanup).
fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A control plane and its agents, each on a "host" of its own (see the module's doc).
pub struct MultiNode {
    // Dropped in this order after [`MultiNode`]'s own drop: the server (and the mounts under
    // its directory), then the hosts' network.
    agents: Vec<AgentHost>,
    cluster: Cluster,
    hosts: HostsNetwork,
    token: String,
}

impl MultiNode {
    /// Starts the server and `agents` agents (2 to [`MAX_AGENTS`]), after `prepare` ran on each
    /// agent's fresh data dir (e.g. [`import_images`]); returns once every Node is Ready and
    /// has its podCIDR.
    pub fn start(agents: usize, prepare: impl Fn(&Path)) -> MultiNode {
        MultiNode::start_with_args(agents, prepare, |_, _| Vec::new())
    }

    /// [`MultiNode::start`] with more `skiff agent` flags for each agent: `agent_args(index,
    /// its directory)` (a directory of its own, removed with the harness).
    pub fn start_with_args(
        agents: usize,
        prepare: impl Fn(&Path),
        agent_args: impl Fn(usize, &Path) -> Vec<String>,
    ) -> MultiNode {
        assert!(
            (1..=MAX_AGENTS).contains(&agents),
            "a multi-node harness has 1 to {MAX_AGENTS} agents, not {agents}"
        );
        let hosts = HostsNetwork::claim();
        let cluster = Cluster::start_control_plane(
            &hosts.gateway,
            &[
                "--cluster-cidr",
                &hosts.slot.cluster_cidr,
                "--node-cidr-mask-size",
                NODE_CIDR_MASK,
            ],
        );
        let token = fs::read_to_string(cluster.data_dir().join("node-token"))
            .expect("the server writes <data-dir>/node-token")
            .trim()
            .to_string();
        let slot = hosts.slot.slot;
        let mut harness = MultiNode {
            agents: Vec::new(),
            cluster,
            hosts,
            token,
        };
        for index in 0..agents {
            harness.hosts.add_host(index);
            let dir = harness.cluster.scratch_dir().join(format!("node-{index}"));
            let data_dir = dir.join("data");
            fs::create_dir_all(&data_dir).expect("create an agent's data dir");
            prepare(&data_dir);
            let extra_args = agent_args(index, &dir);
            harness.agents.push(AgentHost {
                node: format!("mn{slot}-{index}"),
                netns: harness.hosts.netns(index),
                address: harness.hosts.address(index),
                veth: harness.hosts.veth(index),
                bridge: format!("skmn{slot}b{index}"),
                table: format!("skiff_mn_{slot}_{index}"),
                data_dir,
                extra_args,
                log: dir.join("agent.log"),
                child: None,
            });
            harness.start_agent(index);
        }
        for index in 0..agents {
            harness.wait_ready(index);
        }
        harness
    }

    /// The control plane: kubectl and everything else of [`Cluster`].
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn agent(&self, index: usize) -> &AgentHost {
        &self.agents[index]
    }

    pub fn agents(&self) -> &[AgentHost] {
        &self.agents
    }

    /// The cluster CIDR (a /24; each node gets a /26 of it).
    pub fn cluster_cidr(&self) -> &str {
        &self.hosts.slot.cluster_cidr
    }

    /// The control plane's address on the hosts bridge.
    pub fn server_address(&self) -> &str {
        &self.hosts.gateway
    }

    fn agent_command(&self, agent: &AgentHost) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", agent.netns))
            .arg("--")
            .arg(skiff_bin())
            .arg("agent")
            .args(["--server", self.cluster.url(), "--token", &self.token])
            .arg("--data-dir")
            .arg(&agent.data_dir)
            .args(["--node-name", &agent.node, "--node-ip", &agent.address])
            .args(["--streaming-port", "0"])
            .args(["--cluster-cidr", self.cluster_cidr()])
            .args(["--bridge-name", &agent.bridge, "--nft-table", &agent.table])
            .args(&agent.extra_args)
            .env("SKIFF_LOG", "info,skiff_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Starts agent `index` (again) in its namespace; does not wait for it.
    pub fn start_agent(&mut self, index: usize) {
        assert!(self.agents[index].child.is_none(), "the agent already runs");
        let agent = &self.agents[index];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&agent.log)
            .expect("open the agent's log");
        let child = self
            .agent_command(agent)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nsenter … skiff agent: {e}"));
        self.agents[index].child = Some(child);
    }

    /// Kills agent `index` (SIGKILL to its pid; its pods' containers run on, as on a real node
    /// whose agent stopped) and waits for it to be gone.
    pub fn stop_agent(&mut self, index: usize) {
        if let Some(mut child) = self.agents[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until agent `index`'s Node is Ready with a podCIDR; panics with its log if not.
    pub fn wait_ready(&self, index: usize) {
        let agent = &self.agents[index];
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = self.cluster.jsonpath(
                &["node", &agent.node],
                "{.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR}",
            );
            let mut words = ready.split_whitespace();
            if words.next() == Some("True") && words.next().is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not become Ready with a podCIDR within {READY_TIMEOUT:?} ({ready:?})\n\
                 --- agent log ---\n{}",
                agent.node,
                agent.output()
            );
            // Polling interval, not synchronisation: the condition is checked again.
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every agent's log, for a failure message.
    pub fn agents_output(&self) -> String {
        self.agents
            .iter()
            .map(|a| format!("--- agent {} ---\n{}", a.node, a.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Force-deletes every pod and waits (bounded) until the agents removed their containers
    /// and sandboxes; an agent a test stopped while it still held pods is started again to do
    /// so. Never panics (it runs in drop).
    fn remove_pods(&mut self) {
        if self.cluster.url().is_empty() || !crate::kubectl_path().is_file() {
            return;
        }
        for index in 0..self.agents.len() {
            if self.agents[index].child.is_none() && self.agents[index].holds_pods() {
                let agent = &self.agents[index];
                if let Ok(log) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&agent.log)
                {
                    if let Ok(child) = self.agent_command(agent).stderr(log).spawn() {
                        self.agents[index].child = Some(child);
                    }
                }
            }
        }
        let _ = self.cluster.kubectl([
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && self.agents.iter().any(AgentHost::holds_pods) {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        self.remove_pods();
        if thread::panicking() {
            eprintln!("{}", self.agents_output());
        }
        for index in 0..self.agents.len() {
            self.stop_agent(index);
        }
        // Then the fields: the server is killed and what is mounted under its directory (the
        // agents' data dirs too) unmounted; then the namespaces and bridge are deleted.
    }
}

/// Builds the project's test images once (scripts/build-test-images.sh) and returns a
/// `prepare` for [`MultiNode::start`] that imports `luksa/kubia` and `busybox` into each
/// agent's data dir; the archives are removed when the returned directory is dropped.
pub fn test_images() -> (tempfile::TempDir, impl Fn(&Path)) {
    let out = tempfile::Builder::new()
        .prefix("skiff-e2e-images-")
        .tempdir()
        .expect("create a temporary directory for the test images");
    let mut build = Command::new(workspace_root().join("scripts/build-test-images.sh"));
    build.arg(out.path());
    assert_success(&run(build, None), "scripts/build-test-images.sh");
    let archives = out.path().to_path_buf();
    let prepare = move |data_dir: &Path| {
        for image in ["kubia.tar", "busybox.tar"] {
            let mut import = Command::new(skiff_bin());
            import
                .args(["image", "import", "--data-dir"])
                .arg(data_dir)
                .arg(archives.join(image));
            assert_success(&run(import, None), &format!("skiff image import {image}"));
        }
    };
    (out, prepare)
}
