//! The narrow contracts the API routes are written against: each route module of the server
//! depends on one of these traits, the daemon's services implement them, and route tests run
//! in-process against fakes. Everything crossing them is a wire type of `berth_api`.

use std::future::Future;
use std::pin::Pin;

use berth_api::filters::Filters;
use berth_types::Result;

mod build;
mod containers;
mod images;
mod system;

pub use build::BuildBackend;
pub use containers::{ArchiveBackend, ContainerLifecycle, Containers, ExecBackend, Waiting};
pub use images::{ImageBackend, Imaging, Progress};
pub use system::{SystemBackend, Systems, UsageKind};

/// A boxed, sendable future: the traits stay object safe, so routes hold `Arc<dyn …>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A request body streamed to a backend (an image archive, a rootfs tar).
pub type BoxReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Every route backend, made once from the daemon's services.
#[derive(Clone)]
pub struct Backends {
    pub images: std::sync::Arc<dyn ImageBackend>,
    pub system: std::sync::Arc<dyn SystemBackend>,
    pub volumes: std::sync::Arc<dyn VolumeBackend>,
    pub networks: std::sync::Arc<dyn NetworkBackend>,
    pub builds: std::sync::Arc<dyn BuildBackend>,
    pub lifecycle: std::sync::Arc<dyn ContainerLifecycle>,
    pub exec: std::sync::Arc<dyn ExecBackend>,
    pub archive: std::sync::Arc<dyn ArchiveBackend>,
}

impl Backends {
    pub fn of(d: &crate::Daemon) -> Backends {
        use std::sync::Arc;
        let containers = Arc::new(Containers(d.containers.clone()));
        Backends {
            images: Arc::new(Imaging { images: d.images.clone(), containers: d.containers.clone() }),
            system: Arc::new(Systems {
                system: d.system.clone(),
                images: d.images.clone(),
                containers: d.containers.clone(),
                volumes: d.volumes.clone(),
                builds: d.builds.clone(),
            }),
            volumes: d.volumes.clone(),
            networks: Arc::new(Networking { networks: d.networks.clone(), containers: d.containers.clone() }),
            builds: Arc::new(d.builds.clone()),
            lifecycle: containers.clone(),
            exec: containers.clone(),
            archive: containers,
        }
    }
}

/// What `/volumes` needs.
pub trait VolumeBackend: Send + Sync {
    /// Creates the volume, or returns the one of that name (Docker's create is idempotent).
    fn create(&self, req: berth_api::volume::CreateRequest) -> BoxFuture<'_, berth_api::volume::Volume>;
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, berth_api::volume::Volume>;
    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::volume::Volume>>;
    /// `force` makes an unknown volume a success.
    fn remove<'a>(&'a self, name: &'a str, force: bool) -> BoxFuture<'a, ()>;
    /// Names removed and bytes freed.
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)>;
}

impl VolumeBackend for crate::VolumeService {
    fn create(&self, req: berth_api::volume::CreateRequest) -> BoxFuture<'_, berth_api::volume::Volume> {
        Box::pin(async move {
            let name = Some(req.name).filter(|n| !n.is_empty());
            let v = crate::VolumeService::create(self, name, req.driver, req.driver_opts, req.labels).await?;
            Ok(crate::volumes::volume_view(&v, None))
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, berth_api::volume::Volume> {
        Box::pin(
            async move { Ok(crate::volumes::volume_view(&crate::VolumeService::inspect(self, name).await?, None)) },
        )
    }

    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::volume::Volume>> {
        Box::pin(async move {
            let vols = crate::VolumeService::list(self, filters).await?;
            Ok(vols.iter().map(|v| crate::volumes::volume_view(v, None)).collect())
        })
    }

    fn remove<'a>(&'a self, name: &'a str, force: bool) -> BoxFuture<'a, ()> {
        Box::pin(crate::VolumeService::remove(self, name, force))
    }

    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, (Vec<String>, u64)> {
        Box::pin(crate::VolumeService::prune(self, filters))
    }
}

/// What `/networks` needs: the networks, and attaching containers to them.
pub trait NetworkBackend: Send + Sync {
    /// Validates and creates the network (IPAM pools parsed here); its id.
    fn create(&self, req: berth_api::network::CreateRequest) -> BoxFuture<'_, String>;
    /// With `status`, the IPAM statistics (API 1.52) of a bridge network.
    fn inspect<'a>(&'a self, id: &'a str, status: bool) -> BoxFuture<'a, berth_api::network::NetworkResource>;
    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::network::NetworkResource>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<String>>;
    fn connect<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: berth_api::network::EndpointSettings,
    ) -> BoxFuture<'a, ()>;
    fn disconnect<'a>(&'a self, network: &'a str, container: &'a str) -> BoxFuture<'a, ()>;
}

/// The daemon's networking as one backend: the network service, and the container service that
/// attaches containers.
pub struct Networking {
    pub networks: std::sync::Arc<crate::NetworkService>,
    pub containers: std::sync::Arc<crate::ContainerService>,
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<Option<T>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| berth_types::Error::invalid(format!("invalid {what}: {s}")))
}

/// A create request's IPAM as the network store takes it: IPv4 pools (the first, then more) and
/// one IPv6 pool, told apart by their addresses.
fn create_options(b: berth_api::network::CreateRequest) -> Result<berth_network::store::CreateOptions> {
    use berth_types::Error;
    let ipam = b.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(Error::not_found(format!("plugin \"{}\" not found", ipam.driver)));
    }
    let (mut v4s, mut v6) = (Vec::new(), None);
    for c in ipam.config.unwrap_or_default() {
        if c.subnet.contains(':') || (c.subnet.is_empty() && c.gateway.contains(':')) {
            if v6.replace(c).is_some() {
                return Err(Error::invalid("berthd supports one IPv6 subnet per network: more than one given"));
            }
        } else {
            v4s.push(c);
        }
    }
    let mut more_subnets = Vec::new();
    for c in v4s.iter().skip(1) {
        let subnet = parse("subnet", &c.subnet)?
            .ok_or_else(|| Error::invalid("every IPAM config after the first needs a subnet"))?;
        more_subnets.push((subnet, parse("gateway", &c.gateway)?, parse("ip-range", &c.ip_range)?));
    }
    let c = v4s.into_iter().next().unwrap_or_default();
    let c6 = v6.unwrap_or_default();
    Ok(berth_network::store::CreateOptions {
        name: b.name,
        driver: b.driver,
        internal: b.internal,
        attachable: b.attachable,
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
        subnet: parse("subnet", &c.subnet)?,
        gateway: parse("gateway", &c.gateway)?,
        ip_range: parse("ip-range", &c.ip_range)?,
        enable_ipv6: b.enable_ipv6.unwrap_or(false),
        subnet6: parse("subnet", &c6.subnet)?,
        gateway6: parse("gateway", &c6.gateway)?,
        ip_range6: parse("ip-range", &c6.ip_range)?,
        more_subnets,
    })
}

impl NetworkBackend for Networking {
    fn create(&self, req: berth_api::network::CreateRequest) -> BoxFuture<'_, String> {
        Box::pin(async move { Ok(self.networks.create(create_options(req)?).await?.id) })
    }

    fn inspect<'a>(&'a self, id: &'a str, status: bool) -> BoxFuture<'a, berth_api::network::NetworkResource> {
        Box::pin(async move {
            let n = self.networks.get(id).await?;
            let mut r = self.networks.resource(&n);
            if status && n.driver == "bridge" {
                r.status = Some(self.networks.status(&n));
            }
            Ok(r)
        })
    }

    fn list<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<berth_api::network::NetworkResource>> {
        Box::pin(async move {
            let nets = self.networks.list(filters).await?;
            Ok(nets.iter().map(|n| self.networks.resource(n)).collect())
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.networks.remove(id))
    }

    fn prune<'a>(&'a self, filters: &'a Filters) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.networks.prune(filters))
    }

    fn connect<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: berth_api::network::EndpointSettings,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.containers.connect(network, container, endpoint))
    }

    fn disconnect<'a>(&'a self, network: &'a str, container: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.containers.disconnect(network, container))
    }
}
