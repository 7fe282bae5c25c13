//! Giving memory back to the kernel when a process goes idle.
//!
//! A shim after creating its container, and berthd after a burst of requests, keep heap and code
//! pages they will not touch until the next burst. `shed` returns freed heap (`malloc_trim`) and
//! drops code from the resident set: `MADV_DONTNEED` on executable file mappings (never written,
//! so refaulting them from the page cache gives the same bytes, at a minor fault each: the page
//! cache keeps them), `MADV_PAGEOUT` on read-only data (which leaves alone pages the dynamic linker
//! wrote, and pages other processes map).

/// Sheds what an idle process does not need resident; safe to call from any thread while others
/// run (a page dropped under a running thread faults back in).
pub fn shed() {
    trim_heap();
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

/// Returns freed heap to the kernel: glibc's `malloc_trim`, which releases free pages in the middle
/// of every arena too, not only at the top.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
