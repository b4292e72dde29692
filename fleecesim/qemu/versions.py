"""What changes between QEMU versions, in one table (``qemu.version``).

Each row is a feature (an option or command that appears in a release) or a
bug (behaviour a release has and a later one fixed), with the release that
brought or fixed it and where that is written: the ``Since:`` line of
qapi/block-core.json, or the fixing commit. The simulator (config validation,
the schemes) and ``fleecesim qmp`` both read this table; nothing else in the
code compares version numbers.

* A feature the configured version lacks is a one-line config error naming
  the version that has it (``feature_error``).
* A bug the configured version has is simulated, and the run's summary warns
  about it (``warnings``), unless the QMP recipe works around it (then the
  simulation runs the workaround, and the warning says what it costs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

NEWEST: Version = (10, 1)   # the newest behaviour modelled: the default
OLDEST: Version = (2, 12)   # job-dismiss / auto-dismiss (qapi/job.json, Since: 2.12)


@dataclass(frozen=True)
class Change:
    key: str
    kind: str       # "feature" (present from ``since``) | "bug" (fixed in ``since``)
    since: Version
    what: str
    source: str     # QEMU file and its Since: line, or the commit
    first: Version | None = None  # bug: the first release that has it


TABLE: tuple[Change, ...] = (
    Change("block-export-add", "feature", (5, 2),
           "block-export-add / block-export-del (nbd-server-add before) and the export's "
           "bitmaps list",
           "qapi/block-export.json block-export-add (Since: 5.2), BlockExportOptionsNbd "
           "@bitmaps (since 5.2)"),
    Change("x-perf", "feature", (6, 0),
           "blockdev-backup x-perf (BackupPerf: max-workers, max-chunk, use-copy-range); "
           "the job runs block-copy with parallel workers",
           "qapi/block-core.json BackupCommon @x-perf (Since 6.0); block/backup.c backup_loop"),
    Change("blockdev-reopen", "feature", (6, 1),
           "blockdev-reopen (x-blockdev-reopen before)",
           "qapi/block-core.json blockdev-reopen (Since: 6.1)"),
    Change("copy-before-write", "feature", (6, 2),
           "the copy-before-write filter as a user-created node",
           "qapi/block-core.json BlockdevOptionsCbw (Since: 6.2)"),
    Change("snapshot-access", "feature", (7, 0),
           "the snapshot-access node (fleecing-push / fleecing-pull) and "
           "copy-before-write's bitmap",
           "qapi/block-core.json BlockdevDriver snapshot-access (Since 7.0); "
           "BlockdevOptionsCbw @bitmap (Since 7.0)"),
    Change("cbw-options", "feature", (7, 1),
           "copy-before-write on-cbw-error and cbw-timeout",
           "qapi/block-core.json BlockdevOptionsCbw @on-cbw-error, @cbw-timeout (Since 7.1)"),
    Change("export-bitmap-node", "feature", (7, 1),
           "block-export-add bitmaps given as {node, name} (a bitmap below the exported node)",
           "qapi/block-export.json BlockExportOptionsNbd @bitmaps BlockDirtyBitmapOrStr "
           "(since 7.1)"),
    Change("hbitmap-status", "bug", (8, 0),
           "a snapshot-access read that starts in a cluster saved in the fleecing image "
           "and runs into one that is not returns new guest data; the recipe keeps every "
           "snapshot read inside one cluster (push: x-perf max-chunk = one cluster; pull: "
           "blkdebug max-transfer), and the simulation copies one cluster per request",
           "commit a4d5224c2cb6 \"hbitmap: fix hbitmap_status() return value for first "
           "dirty bit case\" (util/hbitmap.c)", first=(7, 0)),
    Change("discard-source", "feature", (9, 1),
           "blockdev-backup discard-source (read-once for fleecing-push)",
           "qapi/block-core.json BackupCommon @discard-source (Since 9.1)"),
    Change("cbw-timeout-overflow", "bug", (9, 1),
           "cbw-timeout is stored in nanoseconds in a uint32_t: the effective timeout is "
           "(N * 10^9 mod 2^32) ns, so any N >= 5 s gives less than 4.3 s "
           "(5 -> 0.705 s, 10 -> 1.41 s, 45 -> 2.05 s, 60 -> 4.17 s)",
           "block/copy-before-write.c cbw_open: s->cbw_timeout_ns = cbw_timeout * "
           "NANOSECONDS_PER_SECOND; fixed by commit 10b1e09ed3c4 \"block/copy-before-write: "
           "use uint64_t for timeout in nanoseconds\"", first=(7, 1)),
    Change("min-cluster-size", "feature", (9, 2),
           "min-cluster-size (copy-before-write and x-perf)",
           "qapi/block-core.json BlockdevOptionsCbw @min-cluster-size, BackupPerf "
           "@min-cluster-size (Since 9.2)"),
)
BY_KEY = {c.key: c for c in TABLE}


def fmt(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def parse(text, where: str | None = None) -> Version:
    """'7.2' / '7.2.22' / 9.2 -> (7, 2); ValueError (one line) otherwise.
    ``where``: the option named in the message (None: a config key's validator,
    whose error line names the key itself)."""
    head = f"{where} {text}: expected" if where else "expected"
    tail = "" if where else f", got {text!r}"
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", str(text))
    if not m:
        raise ValueError(f"{head} MAJOR.MINOR like 7.2{tail}")
    v = (int(m.group(1)), int(m.group(2)))
    if v < OLDEST:
        raise ValueError(f"{head} {fmt(OLDEST)} or later (job-dismiss, auto-dismiss){tail}")
    return v


def has(version: Version, key: str) -> bool:
    """Does ``version`` have feature ``key`` (or, for a bug, the bug)?"""
    c = BY_KEY[key]
    if c.kind == "feature":
        return version >= c.since
    return (c.first or OLDEST) <= version < c.since


def need(version: Version, key: str, what: str) -> str | None:
    """None if ``version`` has feature ``key``; else the one-line error for ``what``."""
    if has(version, key):
        return None
    c = BY_KEY[key]
    return f"{what}: needs QEMU >= {fmt(c.since)} ({c.source}), not qemu.version {fmt(version)}"


def cbw_timeout_seconds(version: Version, configured: float) -> float:
    """The cbw-timeout QEMU ``version`` applies for a configured one of
    ``configured`` seconds (0: none). QEMU takes whole seconds (a uint32):
    the recipe rounds a fraction up, and the model applies a fraction as
    given unless the overflow applies to the whole seconds QEMU gets."""
    if not configured or not has(version, "cbw-timeout-overflow"):
        return configured
    whole = -int(-configured // 1)  # ceil, as qmp_export emits it
    ns = (whole * 10**9) % 2**32    # uint32_t cbw_timeout_ns
    if ns == whole * 10**9:
        return configured           # no overflow: as configured
    return ns / 1e9                 # 0 here means no limit, as block_copy's timeout_ns 0


def config_errors(cfg) -> str | None:
    """The first feature the config uses that its qemu.version lacks (one line), or None."""
    v = cfg.qemu.v
    b = cfg.backup
    schemes = [b.scheme] if isinstance(b.scheme, str) else list(b.scheme)
    for s in schemes:
        needs: list[tuple[str, str, str]] = []  # (feature, what uses it, advice), in order
        if s in ("fleecing-push", "fleecing-pull"):
            needs.append(("snapshot-access", f"scheme {s}", "; on older QEMU use fleecing-pull-2018"))
        if s == "backup":
            needs.append(("x-perf", "scheme backup (block-copy with max-workers)",
                          "; on older QEMU use legacy-backup"))
        if s == "fleecing-push" and (b.max_workers != 64 or b.max_chunk):
            needs.append(("x-perf", "backup.max-workers / backup.max-chunk (x-perf)", ""))
        if s in ("fleecing-push", "fleecing-pull"):
            if b.on_cbw_error == "break-snapshot":
                needs.append(("cbw-options", "backup.on-cbw-error: break-snapshot", ""))
            if b.cbw_timeout:
                needs.append(("cbw-options", "backup.cbw-timeout", ""))
        for key, what, advice in needs:
            err = need(v, key, what)
            if err:
                return err + advice
        if s == "fleecing-push" and has(v, "hbitmap-status") \
                and cfg.cluster_size > cfg.cbw_cluster_size:
            c = BY_KEY["hbitmap-status"]
            return (f"backup.target.cluster-size: a job cluster ({cfg.cluster_size} bytes) "
                    f"larger than the fleecing image's ({cfg.cbw_cluster_size}) lets "
                    f"snapshot reads span two fleecing clusters, which return new data "
                    f"before QEMU {fmt(c.since)} ({c.source}); use qemu.version >= "
                    f"{fmt(c.since)} or backup.cache.cluster-size >= "
                    f"{cfg.cluster_size}")
    for key, what, used in (("discard-source", "backup.discard-source", b.discard_source),
                            ("min-cluster-size", "backup.min-cluster-size", b.min_cluster_size),
                            ("x-perf", "backup.x-perf.use-copy-range",
                             b.x_perf.use_copy_range)):
        err = need(v, key, what) if used else None
        if err:
            return err
    return None


def job_chunk(version: Version, scheme: str, chunk: int, cluster: int) -> int:
    """The bytes one job (push) or client (pull) request reads from
    snapshot-access: ``chunk``, or one cluster where the version has the
    hbitmap_status() bug and the recipe works around it."""
    if scheme in ("fleecing-push", "fleecing-pull") and has(version, "hbitmap-status"):
        return min(chunk, cluster)
    return chunk


def warnings(cfg, scheme: str) -> list[str]:
    """What the run's summary says about bugs of cfg's qemu.version that it simulates."""
    v, b = cfg.qemu.v, cfg.backup
    out = []
    if scheme in ("fleecing-push", "fleecing-pull") and b.cbw_timeout:
        eff = cbw_timeout_seconds(v, b.cbw_timeout)
        if eff != b.cbw_timeout:
            c = BY_KEY["cbw-timeout-overflow"]
            out.append(f"QEMU {fmt(v)}: cbw-timeout {b.cbw_timeout:g}s overflows "
                       f"(uint32 nanoseconds) to an effective "
                       f"{'no limit' if not eff else f'{eff:.3g}s'}, which is what was "
                       f"simulated; fixed in {fmt(c.since)} ({c.source}); "
                       f"cbw-timeout <= 4s is exact on every version")
    if scheme in ("fleecing-push", "fleecing-pull") and has(v, "hbitmap-status"):
        cluster = cfg.cluster_size if scheme == "fleecing-push" else cfg.cbw_cluster_size
        if cfg.max_chunk > cluster:
            c = BY_KEY["hbitmap-status"]
            how = ("x-perf max-chunk" if scheme == "fleecing-push"
                   else "the client's reads split by blkdebug max-transfer, modelled as "
                        "one-cluster client requests")
            out.append(f"QEMU {fmt(v)}: snapshot reads limited to one cluster ({cluster} "
                       f"bytes; {how}) instead of {cfg.max_chunk} bytes, the recipe's "
                       f"workaround for the hbitmap_status() bug fixed in {fmt(c.since)} "
                       f"({c.source}); durations are those of one-cluster requests")
    return out


def readme_table() -> str:
    """The table as Markdown (the README's version table)."""
    rows = ["| QEMU | kind | what | source |", "|---|---|---|---|"]
    for c in TABLE:
        when = (f">= {fmt(c.since)}" if c.kind == "feature"
                else f"{fmt(c.first or OLDEST)} to < {fmt(c.since)}")
        rows.append(f"| {when} | {c.kind} | {c.what} | {c.source} |")
    return "\n".join(rows)
