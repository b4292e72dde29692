"""Proxmox VE's backup path into a Proxmox Backup Server, as timing stages.

Timing only (no data): the node (nodes/pbs.py) decides per chunk whether it
is a zero chunk, a chunk the previous snapshot already has, or one to upload,
and its encoded size; this module says when each stage is done with it.

What PVE does per 4 MiB chunk (sources as read, pve-qemu master 2026-05,
proxmox-backup-qemu master 2026-05, proxmox-backup master 2024-06):

1. **The dump callback, serialised.** QEMU's backup job writes to a
   ``backup-dump`` node whose cluster size is ``dump_cb_block_size`` =
   PROXMOX_BACKUP_DEFAULT_CHUNK_SIZE (4 MiB: pve-qemu
   debian/patches/pve/0029-PVE-Backup-Proxmox-backup-patches-for-QEMU.patch,
   qmp_backup; 0027 ...-backup-dump-block-driver.patch, get_info), so every
   write is whole, aligned chunks. ``pvebackup_co_dump_pbs_cb`` holds
   ``backup_state.dump_callback_mutex`` (one CoMutex per QEMU process)
   around ``proxmox_backup_co_write_data`` for each chunk: one chunk at a time
   per VM, whatever ``max-workers`` is. A chunk that ``buffer_is_zero`` is
   passed as NULL.
2. **Digest, compression, encryption** (proxmox-backup-qemu src/commands.rs
   write_data): a NULL chunk is the registered zero chunk (no work, "known");
   otherwise ``DataChunkBuilder::digest`` (SHA-256; with a key, of data and
   key: the same bytes hashed) and, if the previous snapshot's index has that
   digest (``known_chunks``, filled by register_image from
   download_previous_fixed_index), nothing else; else ``build``: zstd level 1
   (pbs-datastore src/data_blob.rs ``zstd::bulk::compress(data, 1)``; kept
   only if shorter) and AES-256-GCM of the compressed bytes. This runs inside
   the write_data future on the library's tokio runtime (src/backup.rs:
   ``worker_threads(4)``), not in QEMU's AioContext thread, so it is charged
   here and not to devices/host.py's Host; with the mutex above it is one
   thread's work at a time. CRC-32 (client and server) and
   ``buffer_is_zero`` are not charged (memory-speed scans, not sourced).
3. **The upload queue.** Phase 1 ``send_upload_request`` hands the chunk to
   h2 (pbs-client src/pipe_to_stream.rs waits for one byte of stream
   capacity only) as ``POST fixed_chunk``; phase 2 sends the response future
   (a ready one for a known or zero chunk) into ``mpsc::channel(100)``
   (src/upload_queue.rs create_upload_queue), blocking while 100 are queued;
   then the callback returns and the job's write is done. ``upload_handler``
   receives them in order, awaits each response, and every 128 digests
   (``digest_list.len() >= 128``) awaits a ``PUT fixed_index`` of the JSON
   digest and offset lists before it receives the next.
4. **TLS and the link.** One HTTP/2 connection (one TCP stream): the
   connection task encrypts frames in order (a FIFO server at ``tls-speed``
   per plaintext byte; the benchmark's "TLS (maximal backup upload speed)"
   is one connection's upload rate, client encryption and server decryption
   in parallel, so one stage stands for both). Bytes cross the remote
   device's ``link`` (its RTT and bandwidth, shared with whoever else uses
   it) under a window of ``min(TCP window, HTTP/2 window)``: the server's
   stream and connection windows are 32 MiB (src/api2/backup/mod.rs
   ``http2_initial_connection_window_size(32 MiB)``; the client's own
   receive windows are 2^31-2, pbs-client src/http_client.rs). Window as in
   devices/remote.py: a pipe of ``window / rtt``.
5. **The server.** src/api2/backup/upload_chunk.rs: the whole body is
   received, then in ``block_in_place``: ``verify_unencrypted`` (decompress
   and SHA-256: the benchmark's "chunk verification speed"; nothing for an
   encrypted chunk) on the proxy's tokio workers (``server-threads``), then
   ``ChunkStore::insert_chunk`` (pbs-datastore src/chunk_store.rs) under the
   store's mutex: one insert at a time per datastore (shared by every
   client writing to that backend here). A chunk file already present is
   only touched (utimensat; its write-back is not charged); otherwise
   ``replace_file`` writes ``.chunks/XXXX/<digest>`` through a temporary
   file and a rename, and with ``sync-level: file`` fsyncs the file and the
   directory (two flushes: zero-length writes at the device's write
   latency). The default sync level is ``filesystem`` (pbs-api-types
   DatastoreFSyncLevel, ``#[default]``): one syncfs at the end.
   **Not modelled**: page-cache write-back under sync-level none/filesystem
   (the chunk's writes reach the device under the store's mutex here; the
   long-run rate is the device's either way, Linux throttling dirtiers to
   write-back speed, mm/page-writeback.c balance_dirty_pages; the per-chunk
   latency is not). Each new file also costs ``create-writes`` 4 KiB
   metadata writes (inode, directory entry, rename in the journal): the
   count is NOT sourced (the model's own estimate).
6. **The end.** close_image waits for every response and the last digest
   list, then ``POST fixed_close``; finish_backup uploads ``index.json.blob``
   and calls ``finish``: three more small round trips; the server writes
   the fixed index (4096-byte header + 32 bytes a chunk,
   pbs-datastore src/fixed_index.rs) to the datastore.

Byte overheads (the model's estimates from the protocols, not measured):
TLS 1.3 records carry at most 16 KiB of plaintext and add 22 bytes each
(RFC 8446 §5.1-5.2: 5-byte header, 1-byte content type, 16-byte AES-GCM
tag); HTTP/2 frames add a 9-byte header (RFC 7540 §4.1), DATA frames up to
the server's ``http2_max_frame_size(4 MiB)``; a request's HEADERS block is
its ``:path`` as a literal plus ``POST_HEADERS`` bytes of indexed fields;
a response is ``RESPONSE_BYTES``.
"""
from __future__ import annotations

import heapq
from collections import deque

from .remote import _Pipe, PRUNE_AT

# --- proxmox-backup-client benchmark, AMD Ryzen 7 2700X ---------------------
# proxmox-backup src: proxmox-backup-client/src/benchmark.rs,
# BENCHMARK_RESULT_2020_TOP (the reference its percentages compare against,
# each commented "AMD Ryzen 7 2700X"), in MB/s (10^6 bytes): TLS to
# localhost 1235, SHA-256 2022, ZStd level 1 compression 752, decompression
# 1198, AES-256-GCM 3645, chunk verification 758. (docs/backup-client.rst
# shows a run at 101-103 % of these.)
RYZEN_2700X = {"tls": 1235e6, "sha256": 2022e6, "compress": 752e6, "aes": 3645e6,
               "verify": 758e6}
# The proxy runs on proxmox-rs proxmox-async src/runtime.rs ``main`` ->
# get_runtime: tokio's multi-thread runtime with its default worker count,
# one per CPU the system reports (tokio runtime::Builder::worker_threads);
# a 2700X has 8 cores, 16 threads.
SERVER_THREADS_2700X = 16

CHUNK_SIZE = 4 * 2**20        # proxmox-backup-qemu src/lib.rs PROXMOX_BACKUP_DEFAULT_CHUNK_SIZE
UPLOAD_QUEUE = 100            # src/upload_queue.rs: mpsc::channel(100)
INDEX_BATCH = 128             # src/upload_queue.rs: digest_list.len() >= 128
H2_WINDOW = 32 * 2**20        # proxmox-backup src/api2/backup/mod.rs: window_size
H2_FRAME = 9                  # RFC 7540 §4.1 frame header
H2_MAX_FRAME = 4 * 2**20      # src/api2/backup/mod.rs: http2_max_frame_size(4 MiB)
TLS_RECORD = 16384            # RFC 8446 §5.1: 2^14 bytes of plaintext at most
TLS_RECORD_OVERHEAD = 22      # RFC 8446 §5.2: header 5 + content type 1 + GCM tag 16
# DataBlob headers (pbs-datastore src/file_formats.rs): magic 8 + CRC 4;
# encrypted: + IV 16 + tag 16
BLOB_HEADER = 12
BLOB_HEADER_ENCRYPTED = 44
DIGEST_HEX = 64               # a digest in the JSON lists: hex::encode, 64 characters
FIDX_HEADER = 4096            # pbs-datastore src/fixed_index.rs: FixedIndexHeader
# NOT sourced (the model's estimates): indexed HPACK fields of a request
# (:method, :scheme, :authority, content-type after the first request) and a
# whole response (HEADERS :status, content-type, content-length; DATA
# {"data":null}); a small request's body (fixed_close, index.json.blob, finish).
POST_HEADERS = 8
RESPONSE_BYTES = 64
SMALL_REQUEST = 300
META_WRITE = 4096

ZERO, KNOWN, UPLOAD = 0, 1, 2


def chunk_post_path(wid: int, length: int, encoded: int) -> int:
    """Length of ``/fixed_chunk?wid=..&digest=<64 hex>&size=..&encoded-size=..``
    (request_builder puts the JSON params in the query string)."""
    return (len("/fixed_chunk?wid=") + len(str(wid)) + len("&digest=") + DIGEST_HEX
            + len("&size=") + len(str(length)) + len("&encoded-size=") + len(str(encoded)))


def digest_list_body(wid: int, offsets) -> int:
    """Bytes of ``{"wid":N,"digest-list":["<hex>",...],"offset-list":[o,...]}``
    (serde_json::to_string, no spaces) for chunks at ``offsets``."""
    k = len(offsets)
    if not k:
        return 0
    return (len('{"wid":') + len(str(wid)) + len(',"digest-list":[') + k * (DIGEST_HEX + 2)
            + (k - 1) + len('],"offset-list":[') + sum(len(str(o)) for o in offsets)
            + (k - 1) + len(']}'))


def h2_request_bytes(path: int, body: int) -> int:
    """A request on the wire before TLS: HEADERS frame and DATA frames."""
    frames = -(-body // H2_MAX_FRAME) if body else 0
    return H2_FRAME + POST_HEADERS + path + 2 + body + H2_FRAME * frames


def tls_bytes(n: int) -> int:
    """``n`` bytes of plaintext in TLS 1.3 records."""
    return n + TLS_RECORD_OVERHEAD * (-(-n // TLS_RECORD)) if n else 0


class _Server:
    """One PBS server's chunk path behind one datastore device: the verify
    workers and the chunk store's mutex, shared by every client that backs
    up to that device (attached to it: ``server_of``)."""

    def __init__(self, threads: int):
        self.verify = [0.0] * threads   # heap: when each worker is free
        self.store_free = 0.0
        self.threads = threads
        self.store_busy = 0.0   # seconds the store's mutex was held, by anyone
        self.verify_busy = 0.0


def server_of(backend, threads: int) -> _Server:
    srv = getattr(backend, "_pbs_server", None)
    if srv is None:
        srv = _Server(threads)
        backend._pbs_server = srv
    return srv


class PBSClient:
    """One VM's backup session (one proxmox-backup-qemu handle, one HTTP/2
    connection) over ``remote``'s link to the datastore behind it.

    ``submit(now, offset, length, encoded, kind, stored)`` queues one chunk
    and returns when the job's write of it is done (the dump callback
    returned); ``drain(now)`` when the backup is finished on the server.
    Submissions must come in non-decreasing ``now``. Closed forms (idle,
    one uploaded chunk of L bytes, E encoded; s_* seconds per byte):

    * the job's write: ``L*(s_sha + s_zstd) + E*s_aes`` (the queue is empty);
    * its response: that + ``T*s_tls + rtt + W/B + L*s_verify + S(E) +
      R/B`` with W = tls_bytes(h2 request), T its plaintext, R the response,
      S the datastore's writes.

    Long-run rate in disk bytes per second: the least of ``1/(s_sha + s_zstd
    + (E/L)*s_aes)`` (the serialised callback), ``L/(T*s_tls)``, ``B*L/W``,
    ``window/rtt * L/W``, ``threads/s_verify`` and ``L/S`` (the store).
    """

    def __init__(self, remote, *, compress: bool = True, encrypt: bool = False,
                 sha256_speed: float = RYZEN_2700X["sha256"],
                 compress_speed: float = RYZEN_2700X["compress"],
                 aes_speed: float = RYZEN_2700X["aes"], tls_speed: float = RYZEN_2700X["tls"],
                 verify_speed: float = RYZEN_2700X["verify"],
                 server_threads: int = SERVER_THREADS_2700X, in_flight: int = UPLOAD_QUEUE,
                 h2_window: int = H2_WINDOW, sync_level: str = "filesystem",
                 create_writes: int = 1, wid: int = 1):
        dev = getattr(remote, "device", remote)  # behind devices/host.py's HostDevice
        link = getattr(dev, "link", None)
        if link is None:
            raise ValueError(f"{getattr(dev, 'name', dev)}: a pbs target needs a device of "
                             f"kind remote (its link and the datastore behind it)")
        self.name = dev.name
        self.link = link
        link.users += 1  # an NBD client on the same link must not prune ahead of us
        self.backend = dev.backend
        self.compress, self.encrypt = compress, encrypt
        self.s_sha = 1.0 / sha256_speed
        self.s_zstd = 1.0 / compress_speed if compress else 0.0
        self.s_aes = 1.0 / aes_speed if encrypt else 0.0
        self.s_tls = 1.0 / tls_speed
        self.s_verify = 0.0 if encrypt else 1.0 / verify_speed  # encrypted: CRC only
        self.in_flight = int(in_flight)
        self.sync_level = sync_level
        self.create_writes = int(create_writes)
        self.wid = wid
        tcp = dev.window or float("inf")
        self.window = min(tcp, h2_window)
        rtt = link.rtt
        self._win = rtt / self.window if (rtt > 0 and self.window < link.bandwidth * rtt) else 0.0
        self._half = link.up.delay
        self._win_up, self._win_down = _Pipe(), _Pipe()
        self._tls = _Pipe()
        self.server = server_of(self.backend, server_threads)
        self.cap = getattr(self.backend, "capacity", 0) or 2**40
        # the dump callback's mutex; the channel's receive times; the handler
        self._mutex = 0.0
        self._recv: deque[float] = deque()
        self._done = 0.0
        self._batch: list[int] = []  # offsets of digests not yet PUT
        self.n_chunks = 0
        self.n_known = self.n_zero = self.n_uploaded = self.n_stored = 0
        self.busy = {"cpu": 0.0, "tls": 0.0, "link": 0.0, "window": 0.0, "verify": 0.0,
                     "datastore": 0.0, "disk": 0.0}
        self.up_bytes = 0
        self.down_bytes = 0
        self.requests = 0
        self.queue_full = 0  # chunks whose callback waited for room in the upload queue
        self._shared0 = None  # _shared() at the first chunk, and at the drain
        self._shared1 = None

    # ------------------------------------------------------------ the wire
    def _send_up(self, x: float, plain: int) -> float:
        """``plain`` bytes of HTTP/2 leave the client at ``x``: arrival at the server."""
        d = plain * self.s_tls
        self.busy["tls"] += d
        x = self._tls.place(x, d)
        n = tls_bytes(plain)
        self.up_bytes += n
        up = self.link.up
        self.busy["link"] += n * up.inv_bw
        arrive = up.send(x, n)
        if self._win:
            dw = n * self._win
            self.busy["window"] += dw
            w = self._win_up.place(x, dw) - self._half
            if w > arrive:
                arrive = w
        self.requests += 1
        return arrive

    def _send_down(self, x: float, plain: int) -> float:
        n = tls_bytes(plain)
        self.down_bytes += n
        arrive = self.link.down.send(x, n)
        if self._win:
            w = self._win_down.place(x, n * self._win) - self._half
            if w > arrive:
                arrive = w
        return arrive

    def _round_trip(self, x: float, path: int, body: int) -> float:
        """A small request whose server work is not charged: its response's arrival."""
        return self._send_down(self._send_up(x, h2_request_bytes(path, body)), RESPONSE_BYTES)

    def _prune(self, now: float) -> None:
        for p in (self._tls, self._win_up, self._win_down, self.link.up.pipe,
                  self.link.down.pipe):
            if len(p.e) > PRUNE_AT:
                p.prune(now)

    # ------------------------------------------------------------ the server
    def _store(self, t: float, offset: int, encoded: int, stored: bool) -> float:
        """insert_chunk under the store's mutex from ``t``: when it returns."""
        srv = self.server
        s = t if t > srv.store_free else srv.store_free
        if stored:  # the file exists: only touched
            srv.store_free = s
            return s
        dev = self.backend
        b0 = dev.busy
        pos = self._position(offset)
        e = dev.submit(s, pos, encoded, True)
        for i in range(self.create_writes):
            e = dev.submit(e, self._position(offset + i + 1), META_WRITE, True)
        if self.sync_level == "file":  # fsync(file), fsync(dir): two flushes
            e = dev.submit(e, pos, 0, True)
            e = dev.submit(e, pos, 0, True)
        self.busy["datastore"] += e - s
        srv.store_busy += e - s
        # the device's own busy time: more than the mutex's hold when a write
        # cache acknowledges early and destages later (devices/hdd.py)
        self.busy["disk"] += dev.busy - b0
        srv.store_free = e
        return e

    def _position(self, key: int) -> int:
        """Where a chunk file lands: files named by digest in 65536 directories
        scatter over the device (a splitmix64 of the key; 4 KiB aligned)."""
        z = (key * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
        return (z % max(1, self.cap // 4096)) * 4096

    def _post_chunk(self, t: float, offset: int, length: int, encoded: int,
                    stored: bool) -> float:
        """POST fixed_chunk leaving at ``t``: when its response is at the client."""
        plain = h2_request_bytes(chunk_post_path(self.wid, length, encoded), encoded)
        arrive = self._send_up(t, plain)
        srv = self.server
        v = length * self.s_verify
        if v:
            start = srv.verify[0] if srv.verify[0] > arrive else arrive
            heapq.heapreplace(srv.verify, start + v)
            self.busy["verify"] += v
            srv.verify_busy += v
            arrive = start + v
        return self._send_down(self._store(arrive, offset, encoded, stored), RESPONSE_BYTES)

    # ------------------------------------------------------------ per chunk
    def _shared(self) -> dict[str, float]:
        """Busy seconds of the resources other clients may share, so far."""
        srv = self.server
        return {"link": self.link.up.busy, "verify": srv.verify_busy,
                "datastore": srv.store_busy, "disk": self.backend.busy}

    def submit(self, now: float, offset: int, length: int, encoded: int, kind: int,
               stored: bool = False) -> float:
        """One chunk through the dump callback: when the job's write returns."""
        if self._shared0 is None:
            self._shared0 = self._shared()
        self._prune(now)
        t = self._mutex if self._mutex > now else now
        if kind == UPLOAD:
            cpu = length * (self.s_sha + self.s_zstd) + encoded * self.s_aes
        elif kind == KNOWN:
            cpu = length * self.s_sha
        else:
            cpu = 0.0
        t += cpu
        self.busy["cpu"] += cpu
        self.n_chunks += 1
        if kind == UPLOAD:
            self.n_uploaded += 1
            self.n_stored += stored
            resp = self._post_chunk(t, offset, length, encoded, stored)
        else:
            if kind == KNOWN:
                self.n_known += 1
            else:
                self.n_zero += 1
            resp = t  # a ready future
        recv = self._recv
        if len(recv) >= self.in_flight:  # the channel is full until the handler takes one
            r = recv.popleft()
            if r > t:
                t = r
                self.queue_full += 1
        self._mutex = t
        # the handler takes it after the one before, then awaits its response
        r = t if t > self._done else self._done
        recv.append(r)
        done = resp if resp > r else r
        self._batch.append(offset)
        if len(self._batch) >= INDEX_BATCH:
            done = self._put_digests(done)
        self._done = done
        return t

    def _put_digests(self, t: float) -> float:
        body = digest_list_body(self.wid, self._batch)
        self._batch = []
        return self._round_trip(t, len("/fixed_index"), body)

    def drain(self, now: float) -> float:
        """The job has ended at ``now``: when the backup is finished (every
        response, the last digest list, fixed_close with the index written
        to the datastore, index.json.blob, finish)."""
        t = self._done if self._done > now else now
        if self._batch:
            t = self._put_digests(t)
        t = self._round_trip(t, len("/fixed_close"), SMALL_REQUEST)
        srv = self.server
        s = t if t > srv.store_free else srv.store_free
        e = self.backend.submit(s, self._position(-1), FIDX_HEADER + 32 * self.n_chunks, True)
        srv.store_free = e
        t = self._round_trip(e, len("/blob"), SMALL_REQUEST)
        t = self._round_trip(t, len("/finish"), 0)
        self._shared1 = self._shared()
        return t

    # ------------------------------------------------------------ reporting
    def utilisation(self, elapsed: float) -> dict[str, float]:
        """Each stage's busy share of ``elapsed`` seconds (verify over its
        workers). The link, the server's workers, the store's mutex and the
        datastore device count everyone's work while this backup ran (other
        VMs on the same link or datastore: fleet.py), so the stage that bounds
        this backup is the one nearest 1; the CPU, TLS and window stages are
        this session's own."""
        if elapsed <= 0:
            return {k: 0.0 for k in self.busy}
        u = {k: v / elapsed for k, v in self.busy.items()}
        if self._shared0 is not None and self._shared1 is not None:
            for k, v in self._shared1.items():
                u[k] = (v - self._shared0[k]) / elapsed
        u["verify"] /= self.server.threads
        return u
