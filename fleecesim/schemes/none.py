"""``none``: no backup — the guest talks to the active disk (baselines, device checks)."""
from . import Graph, register


@register("none", options=(), why={k: "it runs no backup" for k in (
    "target", "min-cluster-size", "sync", "incremental", "max-workers", "max-chunk", "speed",
    "on-cbw-error", "cbw-timeout", "window", "order", "discard-source", "lazy-discard",
    "cache", "client", "overlay")})
def build(ctx):
    g = Graph(top=ctx.active)
    g.done = ctx.env.event()

    def start(graph, needed):
        graph.done.succeed(True)

    g._start = start
    return g
