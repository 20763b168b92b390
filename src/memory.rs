//! Process memory settings that keep the daemon's resident size to what it uses.

/// Turns transparent huge pages off for this process.
///
/// mimalloc reserves its arena in one large mapping and, where the kernel allows it
/// (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise` or `always`), asks for huge pages
/// there: each small first touch then makes a whole 2 MiB page resident. Opening sled touches a
/// few bytes of many such pages (its page table), which alone made an idle daemon 31 MiB larger.
/// Without huge pages an idle daemon is a few MiB. Called first thing in `main`; the flag belongs
/// to the process's address space and applies to every page it faults in afterwards. Where the
/// call is not supported nothing changes.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
