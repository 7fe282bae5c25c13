//! Keeping an idle shim small: one per container adds up.
//!
//! Creating a container and starting an exec run libcontainer, libseccomp and serde, whose heap and
//! code are not needed again while the shim only relays output and waits. After each of those the
//! shim returns freed heap to the kernel (`malloc_trim`) and drops its code from its resident set:
//! `MADV_DONTNEED` on executable file mappings (never written, so refaulting them from the page
//! cache — shared by every shim — gives the same bytes), `MADV_PAGEOUT` on read-only data (which
//! leaves alone pages the dynamic linker wrote, and pages other processes map).

pub fn shed() {
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        // File-backed and not writable: code and read-only data, always re-readable from the file.
        if inode == "0" || perms.contains('w') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        // Text is never written (Rust builds position-independent code without text relocations).
        let advice = if perms.contains('x') { libc::MADV_DONTNEED } else { libc::MADV_PAGEOUT };
        // SAFETY: on executable file mappings DONTNEED only unmaps pages identical to the file's;
        // PAGEOUT only reclaims clean, unshared pages. Either way the next access faults them back.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, advice);
        }
    }
}
