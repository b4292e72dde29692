"""Run a scenario on real QEMU (qemu-storage-daemon, qemu-io, qemu-img) and
measure it, to check the simulator against it.

Public API:
    QemuScenario                       the scenario (plain dataclass)
    guest_requests(sc) -> ndarray      the exact guest request list (RECORD_DTYPE)
    distinct_clusters_written(req, cluster_size, t_from, t_to) -> int
    run_qemu(sc) -> dict               run it on QEMU; keys in RESULT_KEYS
    qemu_available() -> (bool, str)    binaries present? else what to install
    QMPClient                          minimal QMP client over a unix socket
"""
# These load with their module on first use (PEP 562 __getattr__): the runner
# imports numpy, and ``fleecesim qemu --help`` / ``qmp --help`` (whose module
# reads fleecesim.qemu.versions) need none of it.
from .._lazy import lazy_attributes

_LAZY = {**dict.fromkeys(("QMPClient", "QMPError", "QMPTimeout", "event_time"), "qmp"),
         **dict.fromkeys(("parse_qemu_io", "qemu_available", "run_qemu"), "runner"),
         **dict.fromkeys(("SCHEMES", "QemuScenario", "clusters_touched",
                          "distinct_clusters_written", "guest_requests", "qemu_io_script",
                          "write_pattern"), "scenario")}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


RESULT_KEYS = (
    "scheme", "qemu_version", "disk_size", "cluster_size", "target_bps",
    "backup_duration_s",          # push: JOB_STATUS_CHANGE running -> BLOCK_JOB_COMPLETED (QMP timestamps); pull: qemu-img convert wall time
    "backup_error",               # BLOCK_JOB_COMPLETED error field, or None
    "requests", "writes_planned", "writes_done", "reads_done",
    "write_lat", "read_lat",      # per request (s) in request-list order, phase after t0; NaN = no completion seen
    "write_p50_s", "write_p99_s", "write_max_s", "read_p50_s", "read_p99_s",
    "pre_write_lat",              # latencies of the writes before t0
    "probe_pre_lat", "probe_lat", # hop probe's 4 KiB writes (own export) before / after t0; [] without probe_rate
    "guest_errors",               # qemu-io error lines (must be empty)
    "guest_planned_s", "guest_elapsed_s", "guest_pre_elapsed_s",
    "writes_in_backup_window",    # writes planned before the backup ended
    "distinct_clusters_written_by_guest",          # all writes after t0
    "distinct_clusters_written_in_backup_window",  # writes planned before the backup ended
    "fleecing_clusters_written",  # allocated clusters of the fleecing qcow2 (None for "backup")
    "target_write_bytes",         # data bytes written to the target (trace of bdrv_co_pwritev_part)
    "target_zero_write_bytes", "target_write_requests",
    "content_ok", "content_detail", "expected_sha256", "result_sha256",
    "wall_time_s", "workdir",
)

__all__ = [
    "QMPClient", "QMPError", "QMPTimeout", "event_time", "parse_qemu_io", "qemu_available",
    "run_qemu", "SCHEMES", "QemuScenario", "clusters_touched", "distinct_clusters_written",
    "guest_requests", "qemu_io_script", "write_pattern", "RESULT_KEYS",
]
