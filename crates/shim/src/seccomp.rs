//! The container's seccomp filter as BPF, compiled once per distinct profile and cached.
//!
//! Compiling Docker's default profile with libseccomp takes ~15 ms — most of a container start —
//! and libcontainer would do it again inside every container's init. The shim compiles it here with
//! the same translation libcontainer uses (actions, architectures, argument comparisons, duplicate
//! argument indexes as separate rules), keeps the BPF under `<exec-root>/runtime/seccomp/<sha256>`,
//! and the init (and every exec) loads those bytes with one `seccomp(2)` call.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

/// A compiled filter and the `seccomp(2)` flags to load it with.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub bpf: Vec<u8>,
    pub flags: u32,
}

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 32;

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => return Err("seccomp notify profiles are not supported".into()),
    })
}

fn op(o: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

/// Compiles `profile` to BPF exactly as libcontainer's `initialize_seccomp` would load it.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, String> {
    let e = |what: &'static str| move |err: libseccomp::error::SeccompError| format!("seccomp {what}: {err}");
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(e("new filter"))?;
    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        };
    }
    for &a in profile.architectures().iter().flatten() {
        ctx.add_arch(arch(a)).map_err(e("add arch"))?;
    }
    ctx.set_ctl_nnp(false).map_err(e("nnp"))?;
    for sc in profile.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        if act == default {
            continue;
        }
        for name in sc.names() {
            // A name this libseccomp does not know is a syscall this kernel lacks: skipped, as libcontainer does.
            let Ok(num) = ScmpSyscall::from_name(name) else { continue };
            match sc.args() {
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
                        .collect();
                    let mut seen = HashSet::new();
                    let dup = args.iter().any(|a| !seen.insert(a.index()));
                    if dup {
                        for c in &cmps {
                            ctx.add_rule_conditional(act, num, std::slice::from_ref(c)).map_err(e("add rule"))?;
                        }
                    } else {
                        ctx.add_rule_conditional(act, num, &cmps).map_err(e("add rule"))?;
                    }
                }
                None => {
                    ctx.add_rule(act, num).map_err(e("add rule"))?;
                }
            }
        }
    }
    // libseccomp 2.5 exports only to a file descriptor.
    let mut f = tempfile_in_memory()?;
    ctx.export_bpf(&f).map_err(e("export"))?;
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut bpf = Vec::new();
    f.read_to_end(&mut bpf).map_err(|e| e.to_string())?;
    Ok(Compiled { bpf, flags })
}

fn tempfile_in_memory() -> Result<std::fs::File, String> {
    let fd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| e.to_string())?;
    Ok(std::fs::File::from(fd))
}

/// The compiled filter for `profile`, from the cache under `dir` or compiled (and cached) now.
pub fn cached(dir: &Path, profile: &LinuxSeccomp) -> Result<Compiled, String> {
    use sha2::Digest;
    let json = serde_json::to_vec(profile).map_err(|e| e.to_string())?;
    let key = hex::encode(sha2::Sha256::digest(&json));
    let path = dir.join(&key);
    if let Ok(mut raw) = std::fs::read(&path) {
        if raw.len() >= 4 && (raw.len() - 4).is_multiple_of(8) {
            let flags = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
            raw.drain(..4);
            return Ok(Compiled { bpf: raw, flags });
        }
    }
    let c = compile(profile)?;
    // Written whole then renamed: a concurrent shim reads either nothing or the full filter.
    let _ = std::fs::create_dir_all(dir);
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let mut data = c.flags.to_le_bytes().to_vec();
    data.extend_from_slice(&c.bpf);
    if std::fs::write(&tmp, &data).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok(c)
}

/// Loads compiled BPF into the calling thread (needs CAP_SYS_ADMIN or no_new_privs).
pub fn load(c: &Compiled) -> Result<(), String> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let prog = SockFprog { len: (c.bpf.len() / 8) as u16, filter: c.bpf.as_ptr() };
    const SECCOMP_SET_MODE_FILTER: u32 = 1;
    // SAFETY: `prog` points at `len` 8-byte sock_filter instructions that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, c.flags, &prog as *const SockFprog) };
    if r != 0 {
        return Err(format!("seccomp load: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_profile() -> LinuxSeccomp {
        let p: serde_json::Value = serde_json::from_str(berth_runtime::seccomp::DEFAULT_PROFILE).unwrap();
        let caps: Vec<String> = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"].iter().map(|s| s.to_string()).collect();
        serde_json::from_value(berth_runtime::seccomp::to_oci(&p, &caps).unwrap()).unwrap()
    }

    #[test]
    fn compiles_docker_default_profile_and_caches_it() {
        let prof = default_profile();
        let t = std::time::Instant::now();
        let c = compile(&prof).unwrap();
        let compile_time = t.elapsed();
        assert!(!c.bpf.is_empty() && c.bpf.len().is_multiple_of(8));
        let dir = tempfile::tempdir().unwrap();
        let first = cached(dir.path(), &prof).unwrap();
        let t = std::time::Instant::now();
        let again = cached(dir.path(), &prof).unwrap();
        let cached_time = t.elapsed();
        assert_eq!((first.bpf.clone(), first.flags), (again.bpf, again.flags));
        assert_eq!(first.bpf, c.bpf);
        eprintln!("compile {compile_time:?}, cached read {cached_time:?}, {} instructions", c.bpf.len() / 8);
    }

    #[test]
    fn loaded_filter_blocks_what_the_profile_blocks() {
        // In a child process: the filter cannot be removed once loaded.
        let c = compile(&default_profile()).unwrap();
        match unsafe { libc::fork() } {
            0 => {
                let _ = rustix::thread::set_no_new_privs(true);
                let ok = load(&c).is_ok();
                // unshare(CLONE_NEWUSER) is refused by Docker's default profile without CAP_SYS_ADMIN.
                let blocked = unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0;
                unsafe { libc::_exit(if ok && blocked { 0 } else { 1 }) };
            }
            pid => {
                let mut st = 0;
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "status {st}");
            }
        }
    }
}
