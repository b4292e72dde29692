"""A Proxmox Backup Server as the backup target (PVE's ``pbs`` storage).

The backup job's writes arrive as whole, aligned 4 MiB chunks (the
backup-dump node's cluster size is the chunk size: devices/pbs.py, item 1).
Per chunk this node decides what the data makes of it, and hands the
timing to devices/pbs.py's PBSClient:

* **zero**: a write-zeroes (block status found the range all zero, so the
  block layer writes a zeroed buffer and ``pvebackup_co_dump_pbs_cb`` finds
  ``buffer_is_zero``): the registered zero chunk, nothing hashed or sent
  but its digest in the index list;
* **known**: its digest is in the previous snapshot's index
  (proxmox-backup-qemu src/commands.rs write_data, ``known_chunks``): hashed,
  not compressed, not uploaded; a chunk is known with probability
  ``known-fraction`` (a stated model of the data: the share of the chunks
  that reach the client unchanged since the previous snapshot). A fast
  incremental backup (``sync: incremental``) never reads the chunks its
  dirty bitmap has clean at all: register_image seeds the new index with
  the previous one (src/upload_queue.rs upload_handler ``initial_index``),
  so those are not chunks here;
* **upload**: compressed to ``length / compression-ratio`` bytes (zstd
  keeps the uncompressed data unless it is shorter: data_blob.rs encode)
  plus the blob header; with probability ``stored-fraction`` the datastore
  already has the file (another backup group's chunk): uploaded, verified,
  only touched.

Which chunks are known or stored is drawn per chunk index from the run's
seed (a hash, not a stream: the same chunks whatever order the job copies
them in, so schemes compare paired).

The image is the chunks: the generation every cluster's copy carried is
stored once the chunk's digest is in the index (the job's write returned),
so the run's data oracle checks the PBS image like an NBD target's.
"""
from __future__ import annotations

from ..devices.pbs import (BLOB_HEADER, BLOB_HEADER_ENCRYPTED, KNOWN, UPLOAD, ZERO,
                           PBSClient)
from ..metrics import PATH_DIRECT
from .base import REQ_ZERO
from .target import BackupTarget

_M64 = 0xFFFFFFFFFFFFFFFF


def _unit(seed: int, key: int) -> float:
    """A uniform [0, 1) from ``(seed, key)`` (splitmix64)."""
    z = (seed * 0xD1B54A32D192ED03 + key * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


class PBSTarget(BackupTarget):
    """The PBS image (per-cluster generations, as BackupTarget) behind a
    PBSClient. ``spec`` is the config's ``backup.target.pbs``."""

    def __init__(self, env, device, n_clusters: int, cluster_size: int, stats, spec,
                 seed: int):
        super().__init__(env, device, n_clusters, cluster_size, stats)
        self.queued = False  # the dump callback's mutex is PBSClient's own queue
        self._faulty = False
        self.spec = spec
        self.chunk = spec.chunk_size
        self.seed = int(seed)
        self.client = PBSClient(device, compress=spec.compress, encrypt=spec.encrypt,
                                sha256_speed=spec.sha256_speed,
                                compress_speed=spec.compress_speed,
                                aes_speed=spec.aes_speed, tls_speed=spec.tls_speed,
                                verify_speed=spec.verify_speed,
                                server_threads=spec.server_threads,
                                in_flight=spec.in_flight, h2_window=spec.h2_window,
                                sync_level=spec.sync_level,
                                create_writes=spec.create_writes)
        self.header = BLOB_HEADER_ENCRYPTED if spec.encrypt else BLOB_HEADER
        self.t_first = None
        self.t_last = None
        self.finish_at = None
        self.data_bytes = 0     # bytes of uploaded chunks, before compression
        self.encoded_bytes = 0  # their encoded (compressed, headed) size

    def encoded(self, length: int) -> int:
        r = self.spec.compression_ratio
        body = -(-length * 1000 // round(r * 1000)) if self.spec.compress and r > 1 else length
        return body + self.header

    def _submit(self, offset: int, length: int, flags: int) -> float:
        now = self.env._now
        if self.t_first is None:
            self.t_first = now
        cs = self.chunk
        if offset % cs:
            raise AssertionError(f"pbs target: write at {offset} is not chunk aligned "
                                 f"(the job's cluster size must be the chunk size)")
        end = now
        client, spec, seed = self.client, self.spec, self.seed
        zero = bool(flags & REQ_ZERO)
        for off in range(offset, offset + length, cs):
            ln = min(cs, offset + length - off)
            ci = off // cs
            stored = False
            if zero:
                kind, enc = ZERO, 0
            elif _unit(seed, 2 * ci) < spec.known_fraction:
                kind, enc = KNOWN, 0
            else:
                kind, enc = UPLOAD, self.encoded(ln)
                stored = _unit(seed, 2 * ci + 1) < spec.stored_fraction
                self.data_bytes += ln
                self.encoded_bytes += enc
            end = client.submit(now, off, ln, enc, kind, stored)
        self.t_last = end
        return end

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        end = self._submit(offset, length, flags)
        yield env.timeout(end - env.now)
        self.store(offset, length, data, bool(flags & REQ_ZERO))
        return PATH_DIRECT

    def write_at(self, offset, length, data=None, flags=0):
        end = self._submit(offset, length, flags)

        def finish():
            self.store(offset, length, data, bool(flags & REQ_ZERO))
            return PATH_DIRECT
        return end, finish

    def promote(self, offset: int, length: int) -> None:
        return None

    def finished(self, done):
        """An event that fires when the backup is finished on the server:
        ``done`` (the job's end) and then PBSClient.drain; its value is
        ``done``'s."""
        env = self.env
        out = env.event()

        def drained(ev):
            self.finish_at = self.client.drain(env.now)
            t = env.timeout(self.finish_at - env.now)
            t.callbacks.append(lambda _e: out.succeed(ev.value))
        if done.callbacks is None:  # already processed
            drained(done)
        else:
            done.callbacks.append(drained)
        return out

    def summary(self, t0: float, t_end: float) -> dict:
        """The ``pbs_*`` fields of a run's summary."""
        c = self.client
        elapsed = t_end - t0
        util = c.utilisation(elapsed)
        bottleneck = max(util, key=util.get) if c.n_chunks else None
        out = {
            "pbs_chunks": c.n_chunks, "pbs_chunks_known": c.n_known,
            "pbs_chunks_zero": c.n_zero, "pbs_chunks_uploaded": c.n_uploaded,
            "pbs_chunks_stored": c.n_stored,
            "pbs_data_bytes": self.data_bytes, "pbs_encoded_bytes": self.encoded_bytes,
            "pbs_net_up_bytes": c.up_bytes, "pbs_net_down_bytes": c.down_bytes,
            "pbs_requests": c.requests, "pbs_queue_full": c.queue_full,
            "pbs_window_bytes": c.window,
            "pbs_finish_after_job_s": (self.finish_at - self.t_last)
            if self.finish_at is not None and self.t_last is not None else None,
            "pbs_bottleneck": bottleneck,
        }
        for k, v in c.busy.items():
            out[f"pbs_busy_{k}_s"] = v
            out[f"pbs_util_{k}"] = util[k]
        return out
