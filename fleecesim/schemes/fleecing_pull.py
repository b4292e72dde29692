"""``fleecing-pull``: CBW filter + fleecing cache + snapshot view, exported over NBD
to an external backup client (the seed's "external backup").

At t0 a copy-before-write filter goes on top of the active disk (old data to
the local fleecing cache, only for clusters in the sync bitmap); the snapshot
view (snapshot-access) is exported over NBD. The external client reads it over
a network link with ``max-workers`` requests of up to ``max-chunk`` in flight,
in the order of ``backup.order``, and writes what it read into its own
storage (which is the backup the oracle checks). Options of the client:

- ``backup.client.hints``: what the client can know about each cluster, i.e.
  which ordering policies it can follow (policies/__init__.py CLIENT_HINTS):
  ``none`` (plain NBD reads: no zero information, it reads zeroes and detects
  them; only ``ascending``); ``block-status`` (default: what QEMU's NBD server
  exports, the "base:allocation" metadata context -- zero / allocated, see
  nbd/server.c nbd_co_send_block_status; ``zero-last`` works); ``cache-tier``
  (a hypothetical metadata context exporting which fleecing-cache tier holds
  each cluster -- the seed's proposal, not something QEMU 7.2 exports: its
  only other contexts are "qemu:dirty-bitmap:<name>" and
  "qemu:allocation-depth"; ``ram-first``, ``disk-cached-*`` see the tiers).
  A ``backup.order`` whose policy needs more than the hints give is a config
  error (``hot-first`` needs write counts, which no hint gives);
- ``backup.client.block-status``: write zero ranges as zeroes without reading
  them (else read and detect zero buffers); default: whenever the hints
  include block status; ``true`` with ``hints: none`` is a config error;
- ``backup.client.discard``: read-once — after a range is stored, TRIM it on
  the export: the cache drops it and CBW stops guarding it (the seed's item 6).

Devices: ``backup.client.link`` (default: the target device), a remote device
whose NBD transport the reads cross (nodes/nbd.py: request header up, the
snapshot view serves, reply and data down; its connections, request slots —
at most QEMU's server's 16 per connection —, TCP window and headers, as push
writes cross the target's), and ``backup.client.storage`` (default: the
target device's backend), so a config that compares push with pull runs both
over the same hardware and transport.
"""
from ..devices.remote import RemoteDevice
from ..jobs import BackupJob, BlockCopy
from ..nodes import BackupTarget, CBWFilter, FleecingCache, SnapshotView, Tier
from ..nodes.nbd import NBDExport
from ..policies import CLIENT_HINTS, hint_error, make_ordering
from ..qemu import versions
from . import BLOCK_COPY, CLIENT, COPY, TIERED_CACHE, Graph, register
from .fleecing_push import cbw_filter, finish_fleecing, tiered_cache


def client_devices(ctx):
    """(transport, storage) devices of the pull client, resolved from
    ``backup.client``: the NBD transport is the remote device ``client.link``
    names (default: the target) — its connections, request slots, window,
    headers and link, not its backend (the server is the VM's export) and not
    QEMU's per-request host cost (the reader is an external client)."""
    b = ctx.cfg.backup
    tgt = ctx.devices[b.target.device]
    name = b.client.link or b.target.device
    transport = ctx.devices[name]
    transport = getattr(transport, "device", transport)  # without the host's cost
    if not isinstance(transport, RemoteDevice):  # config.py says so first
        raise ValueError(f"backup.client.link: {name!r} is not a remote device")
    storage = ctx.devices[b.client.storage] if b.client.storage else getattr(tgt, "backend", tgt)
    return transport, storage


class ClientSees:
    """The graph as an external client's ordering policy sees it: no cache tiers."""
    cache = None


def uses_block_status(client) -> bool:
    """Does the client skip reading zero ranges (``backup.client.block-status``)?"""
    if client.block_status is not None:
        return client.block_status
    return "zero" in CLIENT_HINTS[client.hints]


def build_pull(ctx, *, modern: bool):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    transport, storage = client_devices(ctx)
    target = BackupTarget(env, storage, ctx.n_clusters, cs, ctx.stats)
    if modern:  # the same fleecing image as push: tiers and the seed's options
        cache = tiered_cache(ctx)
    else:
        capacity = b.cache.size if b.cache.size is not None else ctx.n_clusters * cs
        cache = FleecingCache(env, [Tier(env, "disk", ctx.devices[b.cache.device], capacity)],
                              ctx.n_clusters, cs, ctx.stats)
    g = Graph(top=ctx.active, target=target, cache=cache)
    g.levels += [cache.level] + ([t.level for t in cache.tiers] if len(cache.tiers) > 1 else [])
    discard = b.client.discard and modern
    chunk = cfg.max_chunk
    if modern:
        ctx.stats.warnings += versions.warnings(cfg, "fleecing-pull")
        # before QEMU 8.0 the recipe splits the client's reads at fleecing
        # clusters (blkdebug max-transfer; qemu/versions.py: hbitmap-status):
        # modelled as one-cluster client requests
        chunk = versions.job_chunk(cfg.qemu.v, "fleecing-pull", chunk, ctx.cbw_cluster_size)

    def start(graph, needed):
        if modern:
            # copy-before-write with the sync bitmap, block-copy (parallel, block status)
            cbw = cbw_filter(ctx, cache, needed)
        else:
            # 2018: backup sync=none into the scratch image: its write notifier has no
            # bitmap (guards every cluster), copies one cluster after the other and
            # finds zeroes by reading them.
            ones = needed.copy()
            ones[:] = True
            cbw_copier = BlockCopy(env, "cbw", ctx.active, cache, ones, cs, ctx.disk_size,
                                   max_chunk=ctx.cbw_cluster_size, stats=ctx.stats,
                                   zero_detect="buffer", parallel=False,
                                   granularity=ctx.cbw_cluster_size)
            cbw = CBWFilter(env, ctx.active, cbw_copier, ctx.stats, cs, cache=cache)
        snap = SnapshotView(env, cbw, cs)
        export = NBDExport(env, snap, transport, cs, ctx.stats)
        copier = BlockCopy(env, "client", export, target, needed, cs, ctx.disk_size,
                           max_chunk=chunk, stats=ctx.stats,
                           zero_detect="block-status" if uses_block_status(b.client)
                           else "buffer",
                           granularity=ctx.job_cluster_size,
                           count_source_reads=False)  # the snapshot view counts them

        def trim(a, b_):
            off = a * cs
            yield from export.discard(off, min(b_ * cs, ctx.disk_size) - off)

        # the client follows backup.order, as far as its hints let it (config.py
        # rejects the rest; checked again here for configs built by hand)
        err = hint_error(b.order, b.client.hints)
        if err:
            raise ValueError(err)
        policy = make_ordering(b.order)
        policy.bind(copier, graph if "tier" in CLIENT_HINTS[b.client.hints] else ClientSees())
        job = BackupJob(env, copier, policy, workers=b.max_workers, stats=ctx.stats,
                        speed=b.speed, name="pull-client",
                        after_copy=trim if discard else None)
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.export = export
        graph.levels.append(copier.inflight_level)
        graph.done = job.done
        job.start()

    g._start = start
    g._finish = finish_fleecing
    return g


PULL_WHY = {
    "discard-source": "there is no backup job in QEMU to discard its source; the pull "
                      "client's read-once is backup.client.discard (NBD TRIM on the export)",
}


# max-workers / max-chunk / speed: the client's requests in flight, request size, rate.
@register("fleecing-pull", options=COPY + BLOCK_COPY + TIERED_CACHE + CLIENT + (
    "on-cbw-error", "cbw-timeout", "order"), why=PULL_WHY)
def build(ctx):
    return build_pull(ctx, modern=True)
