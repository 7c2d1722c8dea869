"""Kernel memory a worker makes the host's kernel hold, outside its own memory cap.

RLIMIT_AS caps what the worker maps, not what the kernel keeps to track its mappings. Code past the
Python policy can make that large with little mapped: page tables for pages scattered one per
gigabyte (8 KB of tables for each 4 KB page: 470 MB under a 256 MB cap, attack round 12), or one
mapping split into ~64,000 one-page regions by changing the protection of every other page (~15 MB
of unreclaimable kernel memory with no page tables at all, attack round 16). No limit the kernel
offers bounds either for one process (`vm.max_map_count` is the whole machine's setting), so the
host reads both whenever the worker stops, and a worker past a bound is replaced. It is stopped
between steps, so nothing grows while the host is not looking.
"""

from __future__ import annotations

# An honest worker's page tables, dense, take about 2 MB per GB it maps.
MAX_PAGE_TABLES_MB = 32
# An honest worker has ~130 mappings (the interpreter, its libraries, the context); the kernel merges
# neighbouring ones that agree, so even thousands of large objects stay far below this. Each costs the
# kernel ~240 bytes: this bound is ~4 MB.
MAX_MAPPINGS = 16_384


def kernel_memory_problem(pid: int) -> str | None:
    """None while worker `pid` is within both bounds; else the error its step ends with."""
    tables_mb = page_tables_mb(pid)
    if tables_mb > MAX_PAGE_TABLES_MB:
        return (
            f"MemoryError: the step's code mapped memory so sparsely that its page tables took "
            f"{tables_mb} MB of the host's memory, outside its memory limit."
        )
    mappings = mapping_count(pid)
    if mappings > MAX_MAPPINGS:
        return (
            f"MemoryError: the step's code split its memory into {mappings:,} separate mappings "
            f"(at most {MAX_MAPPINGS:,}); the kernel's records of them are the host's memory, outside its memory limit."
        )
    return None


def page_tables_mb(pid: int) -> int:
    """The kernel memory the process's page tables take (Linux; 0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmPTE:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def mapping_count(pid: int) -> int:
    """How many memory regions (VMAs) the process has (Linux; 0 where /proc cannot tell)."""
    count = 0
    try:
        with open(f"/proc/{pid}/maps", "rb") as maps:
            while block := maps.read(1 << 20):
                count += block.count(b"\n")
    except OSError:
        return 0
    return count
