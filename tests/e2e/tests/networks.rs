//! Networks: bridge, user networks with names and aliases, isolation, ports, connect/disconnect.

use berth_e2e::{err, out, Berthd, Bounded};
use serde_json::Value;

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

/// A plain HTTP GET of /hostname on 127.0.0.1 (the host's busybox wget is not usable here).
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
    s.write_all(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    match r.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("bad answer: {r:?}"))),
    }
}

/// Polls the published port for up to 2.5 s (the proxy comes up with the container).
fn answers_soon(port: u16) -> bool {
    (0..50).any(|_| {
        http_get(port).is_ok() || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }
    })
}

use berth_e2e::free_port;

#[test]
fn builtin_networks_and_default_bridge() {
    let d = daemon();
    let names = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(names, "bridge bridge\nhost host\nnone null");
    let o = d.ok(&["run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(o.contains(&format!("inet 10.213.{}.2/24", d.net)), "{o}");
    let routes = d.ok(&["run", "--rm", "busybox", "ip", "route"]);
    assert!(routes.contains(&format!("default via 10.213.{}.1", d.net)), "{routes}");
    assert_eq!(d.ok(&["run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"]), "lo");
    let host_links = d.ok(&["run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"]);
    assert!(host_links.lines().count() > 1, "host network sees the host's links: {host_links}");
    let o = d.docker(&["network", "rm", "bridge"]);
    assert!(err(&o).contains("pre-defined network and cannot be removed"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "--network", "nope", "busybox", "true"]);
    assert!(err(&o).contains("network nope not found"), "{}", err(&o));
}

#[test]
fn user_networks_resolve_names_and_isolate() {
    let d = daemon();
    d.ok(&["network", "create", "--label", "team=a", "app"]);
    d.ok(&["network", "create", "--subnet", &format!("10.214.{}.224/28", d.net), "fixed"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "--network-alias",
        "www",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    assert_eq!(d.ok(&["run", "--rm", "--network", "app", "busybox", "wget", "-qO-", "http://web/hostname"]).len(), 12);
    assert_eq!(d.ok(&["run", "--rm", "--network", "app", "busybox", "wget", "-qO-", "http://www/hostname"]).len(), 12);
    // Another network cannot reach it.
    let o =
        d.docker(&["run", "--rm", "--network", "fixed", "busybox", "wget", "-T", "2", "-qO-", "http://web/hostname"]);
    assert!(!o.status.success());
    // Static address on a user subnet; refused on the default bridge.
    let ip = format!("10.214.{}.230", d.net);
    assert!(d
        .ok(&["run", "--rm", "--network", "fixed", "--ip", &ip, "busybox", "ip", "-4", "-o", "addr", "show", "eth0"])
        .contains(&ip));
    // Refused on the default bridge because it is the default bridge, as Docker: the address is
    // inside its subnet (one outside would be refused for that reason instead).
    let o = d.docker(&["run", "--rm", "--ip", &format!("10.213.{}.9", d.net), "busybox", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("user specified IP address is supported on user defined networks only"), "{}", err(&o));
    // connect / disconnect while running.
    d.ok(&["network", "connect", "fixed", "web"]);
    assert_eq!(
        d.ok(&["run", "--rm", "--network", "fixed", "busybox", "wget", "-qO-", "http://web/hostname"]).len(),
        12
    );
    let insp: Value = serde_json::from_str(&d.ok(&["inspect", "web"])).unwrap();
    let nets = insp[0]["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(nets.contains_key("app") && nets.contains_key("fixed"));
    assert_eq!(nets["app"]["Aliases"][0], "www");
    assert!(nets["app"]["IPAddress"].as_str().unwrap().starts_with(&format!("10.214.{}.", d.net)));
    let n: Value = serde_json::from_str(&d.ok(&["network", "inspect", "app"])).unwrap();
    assert_eq!(n[0]["Labels"]["team"], "a");
    assert_eq!(n[0]["Containers"].as_object().unwrap().len(), 1);
    d.ok(&["network", "disconnect", "fixed", "web"]);
    let o =
        d.docker(&["run", "--rm", "--network", "fixed", "busybox", "wget", "-T", "2", "-qO-", "http://web/hostname"]);
    assert!(!o.status.success());
    // In use: 409; after the container goes, remove and prune work.
    let o = d.docker(&["network", "rm", "app"]);
    assert!(err(&o).contains("has active endpoints"), "{}", err(&o));
    d.ok(&["rm", "-f", "web"]);
    d.ok(&["network", "rm", "app"]);
    assert!(d.ok(&["network", "prune", "-f"]).contains("fixed"));
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", "type=custom"]), "");
}

#[test]
fn published_ports_answer_on_loopback() {
    let mut d = daemon();
    let port = free_port();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-p",
        "80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let get = |p: u16| http_get(p);
    assert!(answers_soon(port), "published port did not answer");
    assert_eq!(get(port).unwrap().trim().len(), 12);
    let ports = d.ok(&["port", "pub"]);
    assert!(ports.contains(&format!("80/tcp -> 127.0.0.1:{port}")), "{ports}");
    // The same host port for a second container fails its start, in Docker's words, and leaves
    // the first one serving; the refused container is not running and holds nothing.
    let o =
        d.docker(&["run", "-d", "--name", "clash", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "60"]);
    assert!(!o.status.success(), "a second container got a host port already published");
    assert!(
        err(&o).contains("driver failed programming external connectivity on endpoint clash (")
            && err(&o).contains(&format!("Bind for 127.0.0.1:{port} failed: port is already allocated")),
        "{}",
        err(&o)
    );
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "clash"]), "false");
    assert_eq!(get(port).unwrap().trim().len(), 12);
    d.ok(&["rm", "clash"]);
    let eph: u16 =
        ports.lines().find(|l| l.contains("0.0.0.0:")).and_then(|l| l.rsplit(':').next()).unwrap().parse().unwrap();
    assert!(get(eph).is_ok(), "ephemeral published port");
    assert!(d.ok(&["ps", "--format", "{{.Ports}}"]).contains(&format!("127.0.0.1:{port}->80/tcp")));
    // A restart of berthd keeps the container, its address and its ports.
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "pub"]);
    d.stop();
    d.spawn();
    assert_eq!(d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "pub"]), ip);
    assert!(answers_soon(port), "port not republished after a restart");
    d.ok(&["rm", "-f", "pub"]);
    assert!(get(port).is_err(), "the proxy must stop with the container");
    let o = d.docker(&["run", "--rm", "-p", "127.0.0.1:notaport:80", "busybox", "true"]);
    assert!(!o.status.success());
}

#[test]
fn dns_flags_and_extra_hosts() {
    let d = daemon();
    let r = d.ok(&[
        "run",
        "--rm",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        r.contains("nameserver 10.9.9.9") && r.contains("search example.test") && r.contains("options ndots:2"),
        "{r}"
    );
    assert_eq!(r.matches("nameserver").count(), 1, "--dns replaces the host's servers: {r}");
    let h = d.ok(&["run", "--rm", "--add-host", "db.local:10.1.2.3", "busybox", "cat", "/etc/hosts"]);
    assert!(h.contains("10.1.2.3\tdb.local"), "{h}");
}

#[test]
fn embedded_dns_on_user_networks() {
    let mut d = daemon();
    d.ok(&["network", "create", "front"]);
    d.ok(&["network", "create", "back"]);
    d.ok(&["run", "-d", "--name", "api", "--network", "front", "--network-alias", "svc", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "db", "--network", "back", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "client", "--network", "front", "--dns", "10.9.9.9", "busybox", "sleep", "300"]);
    let api_ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", "api"]);

    // resolv.conf points at the embedded server and says where other names go.
    let r = d.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(r.starts_with("nameserver 127.0.0.11\n") && r.contains("options ndots:0"), "{r}");
    assert!(r.contains("# ExtServers: [host(10.9.9.9)]"), "{r}");
    assert_eq!(r.matches("nameserver").count(), 1, "{r}");

    let lookup = |d: &Berthd, name: &str| d.docker(&["exec", "client", "nslookup", name]);
    for name in ["api", "svc", "api.front", "API"] {
        let o = lookup(&d, name);
        assert!(
            o.status.success() && berth_e2e::out(&o).contains(&format!("Address: {api_ip}")),
            "{name}: {}",
            berth_e2e::out(&o)
        );
    }
    // The short id resolves too; a container on another network does not.
    let short = &d.ok(&["inspect", "-f", "{{.Id}}", "api"])[..12];
    assert!(berth_e2e::out(&lookup(&d, short)).contains(&api_ip));
    let o = lookup(&d, "db");
    assert!(!berth_e2e::out(&o).contains("Address: 10."), "db is on another network: {}", berth_e2e::out(&o));
    // Reverse lookups name the container on the shared network.
    let o = d.ok(&["exec", "client", "nslookup", &api_ip]);
    assert!(o.contains("api.front"), "{o}");
    // /etc/hosts has only the container itself, as with Docker.
    let h = d.ok(&["exec", "client", "cat", "/etc/hosts"]);
    assert!(!h.contains("api"), "{h}");
    // The default bridge has no embedded DNS.
    let r = d.ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(!r.contains("127.0.0.11"), "{r}");

    // A container started on the default bridge gets the resolver when it joins a user network.
    d.ok(&["run", "-d", "--name", "late", "busybox", "sleep", "300"]);
    d.ok(&["network", "connect", "front", "late"]);
    let o = d.ok(&["exec", "late", "nslookup", "api"]);
    assert!(o.contains(&api_ip), "{o}");
    d.ok(&["rm", "-f", "late"]);

    // A berthd restart re-opens the server for containers that kept running.
    d.stop();
    d.spawn();
    let o = lookup(&d, "svc");
    assert!(berth_e2e::out(&o).contains(&api_ip), "after restart: {}{}", berth_e2e::out(&o), err(&o));
    d.ok(&["rm", "-f", "api", "db", "client"]);
    d.ok(&["network", "rm", "front", "back"]);
}

/// A network namespace standing in for another host: a veth pair to the host with 198.18.N.0/30,
/// and no route back to the container subnets (so replies need berthd's masquerading).
struct OtherHost {
    ns: String,
    host_veth: String,
    host_ip: String,
    ip: String,
}

impl OtherHost {
    fn new(net: u8) -> OtherHost {
        let ns = format!("bt-other-{net}");
        let (hv, nv) = (format!("btoh{net}"), format!("btoc{net}"));
        let (host_ip, ip) = (format!("198.18.{net}.1"), format!("198.18.{net}.2"));
        let sh = |cmd: &str| {
            let o = std::process::Command::new("sh").arg("-c").arg(cmd).bounded();
            assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        };
        let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = std::process::Command::new("ip").args(["link", "del", &hv]).output();
        sh(&format!("ip netns add {ns}"));
        let me = OtherHost { ns: ns.clone(), host_veth: hv.clone(), host_ip: host_ip.clone(), ip: ip.clone() };
        sh(&format!("ip link add {hv} type veth peer name {nv} && ip link set {nv} netns {ns}"));
        sh(&format!("ip addr add {host_ip}/30 dev {hv} && ip link set {hv} up"));
        sh(&format!(
            "ip netns exec {ns} sh -c 'ip addr add {ip}/30 dev {nv} && ip link set {nv} up && ip link set lo up'"
        ));
        me
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip").args(["netns", "exec", &self.ns]).args(args).bounded()
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.host_veth]).output();
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[test]
fn nat_isolation_internal_and_dnat() {
    let mut d = daemon();
    let other = OtherHost::new(d.net);
    d.ok(&["network", "create", "one"]);
    d.ok(&["network", "create", "two"]);
    d.ok(&["network", "create", "--internal", "sealed"]);
    let ping = |net: &str, ip: &str| {
        d.docker(&["run", "--rm", "--network", net, "busybox", "ping", "-c", "1", "-W", "2", ip]).status.success()
    };
    // Outbound traffic is masqueraded: the other host has no route back to the container subnet.
    assert!(ping("one", &other.ip), "masquerading for outbound traffic");
    assert!(ping("bridge", &other.ip), "the default bridge is masqueraded too");
    // --internal networks reach nothing outside.
    assert!(!ping("sealed", &other.ip), "internal network got out");
    // Networks are isolated from each other.
    d.ok(&["run", "-d", "--name", "peer", "--network", "one", "busybox", "sleep", "300"]);
    let a_ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.one.IPAddress}}", "peer"]);
    assert!(ping("one", &a_ip));
    assert!(!ping("two", &a_ip), "network two reached a container on network one");

    // A published port from another host's view: DNAT in the kernel, the client's address kept.
    let port = free_port().to_string();
    let cgi = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www";
    d.ok(&["run", "-d", "--name", "web", "--network", "one", "-p", &format!("{port}:80"), "busybox", "sh", "-c", cgi]);
    let url = format!("http://{}:{port}/cgi-bin/ip", other.host_ip);
    let mut seen = String::new();
    for _ in 0..50 {
        let o = other.run(&["curl", "-s", "-m", "2", &url]);
        seen = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // busybox httpd shows the v4-mapped form: [::ffff:198.18.N.2].
    assert!(seen.contains(&other.ip), "the container sees the remote client, not a proxy: {seen}");
    let table = std::process::Command::new("nft").args(["list", "table", "ip", &d.nft_table()]).bounded();
    let rules = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(rules.contains(&format!("dport {port} dnat")), "{rules}");
    // A berthd restart rebuilds the table from its records: the port still answers the same way.
    d.stop();
    d.spawn();
    let o = other.run(&["curl", "-s", "-m", "2", &url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&other.ip), "after restart: {o:?}");
    d.ok(&["rm", "-f", "web", "peer"]);
    d.ok(&["network", "rm", "one", "two", "sealed"]);
    let table = std::process::Command::new("nft").args(["list", "table", "ip", &d.nft_table()]).bounded();
    let rules = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(!rules.contains("dnat to"), "rules of removed containers stay: {rules}");
}

/// A port published on 127.0.0.1 is for this host alone: a neighbour that routes 127.0.0.1 to us
/// (a SYN with destination 127.0.0.1 sent to our MAC) must not reach the container, while the
/// same neighbour still reaches a port published on every address. Observed in the container as
/// half-open connections (SYN_RECV) from the neighbour's source ports.
#[test]
fn loopback_published_ports_are_not_reachable_from_other_hosts() {
    let d = daemon();
    let other = OtherHost::new(d.net);
    // The neighbour must not answer the container's SYN-ACKs with resets (that would end the
    // half-open connections we look for).
    let o = other.run(&["nft", "add table ip q; add chain ip q out { type filter hook output priority 0; }; add rule ip q out tcp flags rst drop"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (lo_port, all_port) = (free_port(), free_port());
    d.ok(&[
        "run",
        "-d",
        "--name",
        "loweb",
        "-p",
        &format!("127.0.0.1:{lo_port}:80"),
        "-p",
        &format!("{all_port}:80"),
        // httpd: a listen backlog that holds three half-open connections (nc's holds two).
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    let script = berth_e2e::workspace().join("tests/e2e/tools/syn_to_loopback.py");
    let syn = |dst: &str, dport: u16, sport: u16| {
        let o = other.run(&[
            "python3",
            script.to_str().unwrap(),
            &other.ip,
            &other.host_ip,
            dst,
            &dport.to_string(),
            &sport.to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // Remote ports of SYN_RECV entries (state 03) in the container.
    let half_open = || -> Vec<u16> {
        // busybox listens on ::, so v4 clients show in tcp6 too.
        let t = d.ok(&["exec", "loweb", "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
        t.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(3) == Some(&"03")).then(|| u16::from_str_radix(f[2].rsplit(':').next()?, 16).ok()).flatten()
            })
            .collect()
    };
    let wait_for = |sport: u16| {
        for _ in 0..200 {
            if half_open().contains(&sport) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let table = std::process::Command::new("nft").args(["list", "table", "ip", &d.nft_table()]).bounded();
        panic!(
            "the control SYN from port {sport} never reached the container:\n{}\n{}",
            d.ok(&["exec", "loweb", "cat", "/proc/net/tcp", "/proc/net/tcp6"]),
            String::from_utf8_lossy(&table.stdout)
        );
    };
    // Control: the path works for a port published on every address.
    syn(&other.host_ip, all_port, 41001);
    wait_for(41001);
    // The attack, then a second control behind it: once that one arrived, so would have the attack.
    syn("127.0.0.1", lo_port, 41002);
    syn(&other.host_ip, all_port, 41003);
    wait_for(41003);
    assert!(!half_open().contains(&41002), "a SYN to 127.0.0.1 from another host reached the container");
    d.ok(&["rm", "-f", "loweb"]);
}

/// `--network container:<name>` shares the other container's network namespace and, as Docker,
/// its hostname, /etc/hosts and /etc/resolv.conf (a pod's DNS and name come from its sandbox);
/// joining a container on the host network joins the host's (it failed with ENOENT before).
#[test]
fn container_network_mode_shares_the_sandbox() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "sandbox",
        "--hostname",
        "podhost",
        "--add-host",
        "extra:1.2.3.4",
        "--dns",
        "9.9.9.9",
        "busybox",
        "sleep",
        "300",
    ]);
    let seen = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:sandbox",
        "busybox",
        "sh",
        "-c",
        "hostname; grep nameserver /etc/resolv.conf; grep extra /etc/hosts; ip -4 -o addr show eth0 | wc -l",
    ]);
    let lines: Vec<&str> = seen.lines().map(str::trim).collect();
    assert_eq!(lines[0], "podhost", "{seen}");
    assert_eq!(lines[1], "nameserver 9.9.9.9", "{seen}");
    assert!(lines[2].starts_with("1.2.3.4") && lines[2].ends_with("extra"), "{seen}");
    assert_eq!(lines[3], "1", "the sandbox's eth0: {seen}");
    d.ok(&["run", "-d", "--name", "onhost", "--network", "host", "busybox", "sleep", "300"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(d.ok(&["run", "--rm", "--network", "container:onhost", "busybox", "hostname"]), host.trim());
    d.ok(&["rm", "-f", "sandbox", "onhost"]);
}

/// `--add-host name:host-gateway` (compose's and testcontainers' `host.docker.internal`) names the
/// default bridge's gateway, as Docker's, on the default bridge and on user networks alike.
#[test]
fn host_gateway_names_the_bridge_gateway() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let gw = format!("10.213.{}.1", d.net);
    let line = |net: &str| {
        d.ok(&[
            "run",
            "--rm",
            "--network",
            net,
            "--add-host",
            "host.docker.internal:host-gateway",
            "busybox",
            "grep",
            "host.docker.internal",
            "/etc/hosts",
        ])
    };
    assert_eq!(line("bridge").split_whitespace().collect::<Vec<_>>(), [gw.as_str(), "host.docker.internal"]);
    d.ok(&["network", "create", "usernet"]);
    assert_eq!(line("usernet").split_whitespace().collect::<Vec<_>>(), [gw.as_str(), "host.docker.internal"]);
    d.ok(&["network", "rm", "usernet"]);
}

/// `--mac-address` is applied (it was stored and ignored): on the default bridge and a user
/// network, through `EndpointsConfig[].MacAddress`; a malformed or multicast one is refused.
#[test]
fn mac_address_is_applied() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let mac = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "cat", "/sys/class/net/eth0/address"]);
        d.ok(&a)
    };
    assert_eq!(mac(&["--mac-address", "02:42:AC:11:00:99"]), "02:42:ac:11:00:99");
    d.ok(&["network", "create", "macnet"]);
    assert_eq!(mac(&["--network", "macnet", "--mac-address", "02:00:00:00:be:ef"]), "02:00:00:00:be:ef");
    let o = d.docker(&["create", "--network", "macnet", "--mac-address", "03:00:00:00:00:01", "busybox"]);
    assert!(!o.status.success(), "a multicast MAC was accepted");
    // Kept across a restart.
    let id =
        d.ok(&["run", "-d", "--network", "macnet", "--mac-address", "02:00:00:00:00:42", "busybox", "sleep", "300"]);
    d.ok(&["restart", "-t", "0", &id]);
    assert_eq!(d.ok(&["exec", &id, "cat", "/sys/class/net/eth0/address"]), "02:00:00:00:00:42");
    d.ok(&["rm", "-f", &id]);
    d.ok(&["network", "rm", "macnet"]);
}

/// `Config.NetworkDisabled` gives the container loopback only (it was stored and ignored: the
/// container got an address on the bridge).
#[test]
fn network_disabled_means_loopback_only() {
    let d = Berthd::start();
    d.import_busybox("busybox");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body =
        serde_json::json!({"Image": "busybox", "Cmd": ["sh", "-c", "ls /sys/class/net"], "NetworkDisabled": true});
    let id = rt.block_on(d.client().call(hyper::Method::POST, "/containers/create", Some(&body))).expect("create")
        ["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(d.ok(&["start", "-a", &id]), "lo");
    assert_eq!(d.ok(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", &id]), "0");
    d.ok(&["rm", &id]);
}

/// Legacy links, as Docker keeps them: on the default bridge an /etc/hosts line and the
/// `ALIAS_*` variables (the target must run; its new address reaches its linkers); on a user
/// network a DNS alias for the linking container only; `docker rm --link` removes one.
#[test]
fn links_as_docker() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "db", "-e", "PASSWORD=pw", "--expose", "5432", "busybox", "sleep", "1000"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    let env = d.ok(&[
        "run",
        "--rm",
        "--name",
        "one",
        "--link",
        "db:my-db",
        "-e",
        "MY_DB_ENV_PASSWORD=mine",
        "busybox",
        "env",
    ]);
    for want in [
        format!("MY_DB_PORT=tcp://{ip}:5432"),
        format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432"),
        format!("MY_DB_PORT_5432_TCP_ADDR={ip}"),
        "MY_DB_PORT_5432_TCP_PORT=5432".into(),
        "MY_DB_PORT_5432_TCP_PROTO=tcp".into(),
        "MY_DB_NAME=/one/my-db".into(),
        // The container's own variables win.
        "MY_DB_ENV_PASSWORD=mine".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in:\n{env}");
    }
    assert!(!env.contains("MY_DB_ENV_PATH"), "{env}");
    d.ok(&["run", "-d", "--name", "web", "--link", "db:dbx", "busybox", "sleep", "1000"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]), r#"["/db:/web/dbx"]"#);
    let short = &d.ok(&["inspect", "-f", "{{.Id}}", "db"])[..12];
    let line = |d: &Berthd| d.ok(&["exec", "web", "sh", "-c", "grep dbx /etc/hosts || true"]);
    assert_eq!(line(&d), format!("{ip}\tdbx {short} db"));
    // The target comes back on another address: its linker's /etc/hosts follows.
    d.ok(&["stop", "-t", "0", "db"]);
    d.ok(&["run", "-d", "--name", "takes-the-address", "busybox", "sleep", "1000"]);
    d.ok(&["start", "db"]);
    let ip2 = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    assert_ne!(ip, ip2);
    assert_eq!(line(&d), format!("{ip2}\tdbx {short} db"));
    // Removing the link.
    d.ok(&["rm", "--link", "/web/dbx"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]), "[]");
    assert_eq!(line(&d), "");
    let o = d.docker(&["rm", "--link", "db"]);
    assert!(err(&o).contains("Conflict, cannot remove the default link name of the container"), "{}", err(&o));
    // Refusals in Docker's words (a missing target is a 400: a 404 would make the CLI pull).
    let o = d.docker(&["run", "--rm", "--link", "nosuch:x", "busybox", "true"]);
    assert!(err(&o).contains("could not get container for nosuch"), "{}", err(&o));
    assert!(!err(&o).contains("Unable to find image"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "--network", "host", "--link", "db", "busybox", "true"]);
    assert!(err(&o).contains("conflicting options: host type networking can't be used with links"), "{}", err(&o));
    d.ok(&["create", "--name", "later", "--link", "db:x", "busybox", "true"]);
    d.ok(&["stop", "-t", "0", "db"]);
    let o = d.docker(&["start", "later"]);
    assert!(err(&o).contains("Cannot link to a non running container: /db AS /later/x"), "{}", err(&o));

    // A user network: the alias resolves for the linking container only.
    d.ok(&["network", "create", "app"]);
    d.ok(&["run", "-d", "--name", "db2", "--network", "app", "busybox", "sleep", "1000"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "db2"]);
    d.ok(&["run", "-d", "--name", "linker", "--network", "app", "--link", "db2:database", "busybox", "sleep", "1000"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks.app.Links}}", "linker"]),
        r#"["db2:database"]"#
    );
    let o = d.ok(&["exec", "linker", "nslookup", "database"]);
    assert!(o.contains(&ip), "{o}");
    d.ok(&["run", "-d", "--name", "other", "--network", "app", "busybox", "sleep", "1000"]);
    let o = d.docker(&["exec", "other", "nslookup", "database"]);
    assert!(!o.status.success() || !out(&o).contains(&ip), "{}", out(&o));
    d.ok(&["rm", "-f", "web", "linker", "other", "db2", "takes-the-address", "later", "db"]);
}

/// Endpoint settings as Docker applies them: `DriverOpts` (the interface name, its sysctls; any
/// other option refused), `IPAMConfig.LinkLocalIPs`, `GwPriority` choosing the default route (also
/// when a network is connected later), `DNSNames`, and `host-gateway-ip`.
#[test]
fn endpoint_settings_are_applied() {
    let d = Berthd::start_with(&["--host-gateway-ip", "192.0.2.55"]);
    d.import_busybox("busybox");
    d.ok(&["network", "create", "n1"]);
    d.ok(&["network", "create", "n2"]);
    let net = "name=n1,driver-opt=com.docker.network.endpoint.ifname=foo0,\
               driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1,link-local-ip=169.254.7.7";
    let s = d.ok(&[
        "run",
        "--rm",
        "--network",
        net,
        "--add-host",
        "hg:host-gateway",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show foo0 | awk '{print $4}'; cat /proc/sys/net/ipv4/conf/foo0/log_martians; grep hg /etc/hosts",
    ]);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.contains(&"169.254.7.7/16"), "{s}");
    assert!(lines.contains(&"1"), "the sysctl: {s}");
    assert!(s.contains("192.0.2.55\thg"), "{s}");
    let o = d.docker(&["run", "--rm", "--network", "name=n1,driver-opt=bogus=1", "busybox", "true"]);
    assert!(err(&o).contains("endpoint driver option \"bogus\" is not supported"), "{}", err(&o));
    let o = d.docker(&["run", "--rm", "--network", "name=n1,link-local-ip=10.0.0.1", "busybox", "true"]);
    assert!(err(&o).contains("invalid link-local IP address: 10.0.0.1"), "{}", err(&o));
    // DNSNames: name, aliases, short id, hostname.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "dn",
        "--hostname",
        "myhost",
        "--network",
        "n1",
        "--network-alias",
        "al1",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "dn"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks.n1.DNSNames}}", "dn"]),
        format!(r#"["dn","al1","{}","myhost"]"#, &id[..12])
    );
    // GwPriority through the API: the highest gives the default route, at start and on connect.
    let api = |method: &str, path: &str, body: &str| -> String {
        let o = berth_e2e::run_bounded(
            std::process::Command::new("curl")
                .args(["-sS", "--max-time", "60", "--unix-socket", d.socket.to_str().unwrap()])
                .args(["-X", method, "-H", "Content-Type: application/json", "-d", body])
                .arg(format!("http://x{path}")),
        );
        out(&o)
    };
    let created = api(
        "POST",
        "/containers/create?name=gw",
        r#"{"Image":"busybox","Cmd":["sleep","100"],"HostConfig":{"NetworkMode":"n1"},
            "NetworkingConfig":{"EndpointsConfig":{"n1":{},"n2":{"GwPriority":5}}}}"#,
    );
    assert!(created.contains("\"Id\""), "{created}");
    d.ok(&["start", "gw"]);
    let gw2 = d.ok(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "n2"]);
    let route = || d.ok(&["exec", "gw", "sh", "-c", "ip route | awk '/^default/ {print $3}'"]);
    assert_eq!(route(), gw2);
    assert_eq!(d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.n2.GwPriority}}", "gw"]), "5");
    d.ok(&["network", "create", "n3"]);
    api("POST", "/networks/n3/connect", r#"{"Container":"gw","EndpointConfig":{"GwPriority":9}}"#);
    let gw3 = d.ok(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "n3"]);
    assert_eq!(route(), gw3, "a connected network with a higher priority takes the default route");
    d.ok(&["network", "disconnect", "n3", "gw"]);
    assert_eq!(route(), gw2, "and gives it back when it goes");
    d.ok(&["rm", "-f", "gw", "dn"]);
}

/// IPv6: dual-stack user networks (given subnet or a unique-local /64), `--ip6`, a default
/// route and /etc/hosts line, AAAA answers from the embedded DNS, inspect as Docker shows it,
/// the ip6 nftables table, a port published on `[::1]`, and the dual-stack default bridge.
#[test]
fn ipv6_dual_stack_networks() {
    let d = Berthd::start_with(&["--ipv6", "--fixed-cidr-v6", "fd00:b7:1::/64"]);
    d.import_busybox("busybox");
    d.ok(&["network", "create", "--ipv6", "--subnet", "fd00:b7:2::/64", "v6"]);
    assert_eq!(d.ok(&["network", "inspect", "-f", "{{.EnableIPv6}}", "v6"]), "true");
    let cfg = d.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "v6"]);
    assert!(cfg.contains(r#"{"Subnet":"fd00:b7:2::/64","Gateway":"fd00:b7:2::1"}"#), "{cfg}");
    d.ok(&["network", "create", "--ipv6", "auto6"]);
    let auto = d.ok(&["network", "inspect", "-f", "{{(index .IPAM.Config 1).Subnet}}", "auto6"]);
    assert!(auto.starts_with("fd") && auto.ends_with("::/64"), "a unique-local /64: {auto}");
    d.ok(&["run", "-d", "--name", "srv", "--network", "v6", "--ip6", "fd00:b7:2::99", "busybox", "sleep", "1000"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.v6.GlobalIPv6Address}}", "srv"]), "fd00:b7:2::99");
    assert_eq!(d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.v6.IPv6Gateway}}", "srv"]), "fd00:b7:2::1");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.v6.IPAMConfig.IPv6Address}}", "srv"]),
        "fd00:b7:2::99"
    );
    let s = d.ok(&[
        "run",
        "--rm",
        "--network",
        "v6",
        "busybox",
        "sh",
        "-c",
        "ip -6 route | grep ^default; nslookup -type=AAAA srv 127.0.0.11 | grep Address: | tail -1; \
         ping6 -c1 -W3 fd00:b7:2::99 >/dev/null && echo peer; ping6 -c1 -W3 fd00:b7:2::1 >/dev/null && echo gateway; \
         grep fd00:b7:2:: /etc/hosts | cut -f1",
    ]);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("default via fd00:b7:2::1"), "{s}");
    assert_eq!(lines[1], "Address: fd00:b7:2::99", "{s}");
    assert_eq!(&lines[2..4], ["peer", "gateway"], "{s}");
    assert_eq!(lines[4], "fd00:b7:2::2", "its own address in /etc/hosts: {s}");
    // Refusals: a static address outside the subnet, on a network without IPv6, an IPv6 subnet
    // without --ipv6, two subnets of a family.
    let o = d.docker(&["run", "--rm", "--network", "v6", "--ip6", "fd00:9::1", "busybox", "true"]);
    assert!(err(&o).contains("no configured subnet contains IP address fd00:9::1"), "{}", err(&o));
    d.ok(&["network", "create", "only4"]);
    let o = d.docker(&["run", "--rm", "--network", "only4", "--ip6", "fd00:b7:2::5", "busybox", "true"]);
    assert!(err(&o).contains("has no IPv6 subnet"), "{}", err(&o));
    let o = d.docker(&["network", "create", "--subnet", "fd00:b7:3::/64", "no-flag"]);
    assert!(err(&o).contains("needs IPv6 enabled"), "{}", err(&o));
    let o =
        d.docker(&["network", "create", "--ipv6", "--subnet", "fd00:b7:4::/64", "--subnet", "fd00:b7:5::/64", "two"]);
    assert!(!o.status.success(), "two IPv6 subnets");
    // The ip6 table isolates and masquerades the dual-stack networks.
    let table =
        berth_e2e::run_bounded(std::process::Command::new("nft").args(["list", "table", "ip6", &d.nft_table()]));
    let t = out(&table);
    assert!(t.contains("ip6 saddr fd00:b7:2::/64") && t.contains("masquerade"), "{t}");
    // A port published on the IPv6 loopback.
    let port = berth_e2e::free_port();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web6",
        "--network",
        "v6",
        "-p",
        &format!("[::1]:{port}:80"),
        "busybox",
        "sh",
        "-c",
        "echo hello6 > /tmp/i.html; httpd -f -p 80 -h /tmp",
    ]);
    let mut got = String::new();
    berth_e2e::eventually("the IPv6 published port answers", || {
        let o = berth_e2e::run_bounded(
            std::process::Command::new("curl")
                .args(["-s", "--max-time", "5"])
                .arg(format!("http://[::1]:{port}/i.html")),
        );
        got = out(&o);
        got.trim() == "hello6"
    });
    // The default bridge is dual-stack too.
    let s = d.ok(&["run", "--rm", "busybox", "sh", "-c", "ip -6 addr show eth0 | grep global | awk '{print $2}'"]);
    assert_eq!(s, "fd00:b7:1::2/64");
    d.ok(&["rm", "-f", "srv", "web6"]);
}

/// `docker events` filtered by network, volume and scope, as Docker narrows them.
#[test]
fn events_filter_by_network_volume_and_scope() {
    let d = daemon();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    d.ok(&["network", "create", "evnet"]);
    d.ok(&["volume", "create", "evvol"]);
    d.ok(&["run", "--rm", "--network", "evnet", "-v", "evvol:/data", "busybox", "true"]);
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    let events = |filter: &str| {
        d.ok(&["events", "--since", &since, "--until", &until, "--filter", filter, "--format", "{{.Type}} {{.Action}}"])
    };
    let net = events("network=evnet");
    assert!(net.lines().all(|l| l.starts_with("network ")), "{net}");
    assert!(net.contains("network create") && net.contains("network connect"), "{net}");
    let vol = events("volume=evvol");
    assert!(vol.lines().all(|l| l.starts_with("volume ")) && vol.contains("volume create"), "{vol}");
    assert!(vol.contains("volume mount"), "{vol}");
    assert_eq!(events("scope=swarm"), "");
    assert!(events("scope=local").contains("container create"));
    assert_eq!(events("service=x"), "");
}

/// More than one IPv4 subnet on a network: each gateway on the bridge, addresses from the next
/// subnet once one is full, `--ip` in any of them, all shown in inspect.
#[test]
fn networks_with_several_subnets() {
    let d = daemon();
    let (a, b) = (format!("10.214.{}.64/29", d.net), format!("10.214.{}.72/29", d.net));
    d.ok(&["network", "create", "--subnet", &a, "--subnet", &b, "multi"]);
    let cfg = d.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "multi"]);
    assert!(cfg.contains(&a) && cfg.contains(&b), "{cfg}");
    // The docker CLI sends the subnets in Go's map order: the first one the network lists fills
    // first (as libnetwork's pools). A /29 has five addresses after its gateway: the sixth
    // container is in the other subnet.
    let (first, second) = if cfg.find(&a) < cfg.find(&b) { (64, 72) } else { (72, 64) };
    for i in 0..6 {
        d.ok(&["run", "-d", "--name", &format!("m{i}"), "--network", "multi", "busybox", "sleep", "1000"]);
    }
    let ip = |i: u32| d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.multi.IPAddress}}", &format!("m{i}")]);
    for i in 0..5 {
        assert_eq!(ip(i), format!("10.214.{}.{}", d.net, first + 2 + i));
    }
    let gw5 = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.multi.Gateway}}", "m5"]);
    assert_eq!(ip(5), format!("10.214.{}.{}", d.net, second + 2));
    assert_eq!(gw5, format!("10.214.{}.{}", d.net, second + 1));
    let ip0 = d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.multi.IPAddress}}", "m0"]);
    // Across the two subnets, through the gateways.
    d.ok(&["exec", "m5", "ping", "-c1", "-W3", &ip0]);
    d.ok(&[
        "run",
        "--rm",
        "--network",
        "multi",
        "--ip",
        &format!("10.214.{}.{}", d.net, second + 6),
        "busybox",
        "true",
    ]);
    let o = d.docker(&["network", "create", "--subnet", &a, "clash"]);
    assert!(err(&o).contains("overlaps"), "{}", err(&o));
    let names: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    d.ok(&rm);
}

/// Containers started at the same time on one network never share an address (the address was
/// picked under a lock, but recorded only after the veth was made: a concurrent start could pick
/// it again).
#[test]
fn concurrent_starts_get_distinct_addresses() {
    let d = daemon();
    d.ok(&["network", "create", "--subnet", &format!("10.214.{}.96/27", d.net), "race"]);
    let ids: Vec<String> = (0..10)
        .map(|i| d.ok(&["create", "--name", &format!("r{i}"), "--network", "race", "busybox", "sleep", "300"]))
        .collect();
    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || d.ok(&["start", id]));
        }
    });
    let mut ips: Vec<String> =
        ids.iter().map(|id| d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.race.IPAddress}}", id])).collect();
    ips.sort();
    let n = ips.len();
    ips.dedup();
    assert_eq!(ips.len(), n, "an address given twice: {ips:?}");
}

/// A container's start or removal writes its own /etc/hosts and its linkers', never its peers' on
/// the same network (they find each other through DNS): rewriting every peer's made starting N
/// containers on the default bridge N² writes (#24).
#[test]
fn a_start_leaves_its_peers_hosts_files_alone() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "peer", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "target", "busybox", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "linker", "--link", "target:tg", "busybox", "sleep", "300"]);
    let path = |c: &str| std::path::PathBuf::from(d.ok(&["inspect", "-f", "{{.HostsPath}}", c]));
    let stamp = |c: &str| std::fs::metadata(path(c)).unwrap().modified().unwrap();
    let (peer, linker) = (stamp("peer"), stamp("linker"));
    d.ok(&["restart", "-t", "0", "target"]);
    d.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "300"]);
    d.ok(&["rm", "-f", "other"]);
    assert_eq!(stamp("peer"), peer, "a peer's hosts file was rewritten");
    assert_ne!(stamp("linker"), linker, "the linker's hosts file follows its link target");
    d.ok(&["rm", "-f", "peer", "linker", "target"]);
}
