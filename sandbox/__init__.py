"""Isolation for lambdad sandboxes: one module per mechanism, :mod:`sandbox.contain` orders them.

Each mechanism has a *child half* (runs inside the forked sandbox process) and, where the host
side must act, a *parent half* (runs in the zygote or the daemon). :mod:`sandbox.zygote` is the
loop-free process that forks sandboxes; :mod:`sandbox.runtimes` holds what runs inside them.
"""
