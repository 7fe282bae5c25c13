//! Endpoint plumbing over rtnetlink: no `ip` or `nsenter` processes on a container start.
//!
//! A netlink socket belongs to the network namespace it was opened in, so the container's side is
//! configured from a thread that entered the namespace (`berth_sys::netns::run_in`) and opened its
//! own connection there. Each side runs a small current-thread runtime: this code is called from
//! blocking workers, never from the daemon's async runtime.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_types::{Error, Result};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::link::Attach;

fn nl_err(what: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| Error::internal(format!("netlink {what}: {e}"))
}

/// Runs `f` with a fresh rtnetlink connection in the calling thread's network namespace.
fn with_handle<T>(f: impl AsyncFnOnce(&Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::internal(format!("netlink runtime: {e}")))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::internal(format!("netlink socket: {e}")))?;
        let task = tokio::spawn(conn);
        let r = f(&handle).await;
        task.abort();
        r
    })
}

fn index_of(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::invalid(format!("bad interface name {name:?}")))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(Error::not_found(format!("no interface {name}")));
    }
    Ok(i)
}

fn mac_bytes(mac: &str) -> Result<Vec<u8>> {
    let b: std::result::Result<Vec<u8>, _> = mac.split(':').map(|h| u8::from_str_radix(h, 16)).collect();
    match b {
        Ok(v) if v.len() == 6 => Ok(v),
        _ => Err(Error::invalid(format!("invalid MAC address {mac:?}"))),
    }
}

/// The veth pair in one request: the host end named, on the bridge and up; the peer created directly
/// in the container's namespace under its final name and MAC. Then, inside the namespace, the
/// address, the link state and the default route.
pub fn attach(pid: i32, a: &Attach) -> Result<()> {
    let bridge = index_of(a.bridge)?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(a.if_name.to_string())
        .address(mac_bytes(a.mac)?)
        .setns_by_pid(pid as u32)
        .build();
    let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(rtnetlink::packet_route::link::InfoKind::Veth)
        .name(a.host_veth.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .up()
        .build();
    with_handle(async |h| h.link().add(veth).execute().await.map_err(nl_err("add veth")))?;
    let (if_name, ip, prefix, gw, route) = (a.if_name.to_string(), a.ip, a.prefix_len, a.gateway, a.default_route);
    let (link_local, sysctls, ip6, gw6) = (a.link_local.to_vec(), a.sysctls.to_vec(), a.ip6, a.gateway6);
    let inside = berth_sys::netns::run_in(std::path::Path::new(&format!("/proc/{pid}/ns/net")), move || {
        let idx = index_of(&if_name)?;
        if ip6.is_some() {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{if_name}/disable_ipv6"), "0");
        }
        // This thread is in the container's namespace: /proc/sys/net is that namespace's.
        for (k, v) in &sysctls {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, v).map_err(|e| Error::invalid(format!("unable to set sysctl {k}={v}: {e}")))?;
        }
        with_handle(async |h| {
            h.address().add(idx, IpAddr::V4(ip), prefix).execute().await.map_err(nl_err("add address"))?;
            for ll in &link_local {
                let len = if ll.is_ipv4() { 16 } else { 64 };
                h.address().add(idx, *ll, len).execute().await.map_err(nl_err("add link-local address"))?;
            }
            if let Some((ip6, len6)) = ip6 {
                // No duplicate address detection: the address is unique by allocation, and a
                // tentative one would refuse connections for the first second.
                let mut req = h.address().add(idx, IpAddr::V6(ip6), len6);
                req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                req.execute().await.map_err(nl_err("add IPv6 address"))?;
            }
            h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(nl_err("link up"))?;
            if let (true, Some(gw)) = (route, gw) {
                let r = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(idx).build();
                h.route().add(r).execute().await.map_err(nl_err("add default route"))?;
            }
            if let (true, Some(_), Some(gw6)) = (route, ip6, gw6) {
                let r = RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw6).output_interface(idx).build();
                h.route().add(r).execute().await.map_err(nl_err("add IPv6 default route"))?;
            }
            Ok(())
        })
    });
    if inside.is_err() {
        let _ = delete(a.host_veth);
    }
    inside
}

/// Replaces the default route of the namespace of `pid` with one through `if_name`.
pub fn set_default_route(pid: i32, if_name: &str, gw: Ipv4Addr) -> Result<()> {
    let if_name = if_name.to_string();
    berth_sys::netns::run_in(std::path::Path::new(&format!("/proc/{pid}/ns/net")), move || {
        let idx = index_of(&if_name)?;
        with_handle(async |h| {
            let r = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(idx).build();
            h.route().add(r).replace().execute().await.map_err(nl_err("replace default route"))
        })
    })
}

/// Deletes a link of the host namespace by name (a veth takes its peer with it); gone is fine.
pub fn delete(name: &str) -> Result<()> {
    let Ok(idx) = index_of(name) else { return Ok(()) };
    with_handle(async |h| match h.link().del(idx).execute().await {
        Ok(()) => Ok(()),
        // Removed meanwhile (the namespace died and took the pair along).
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
        Err(e) => Err(nl_err("delete link")(e)),
    })
}
