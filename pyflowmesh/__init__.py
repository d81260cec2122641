"""pyflowmesh: one cooperating mesh of browser tabs over BroadcastChannel."""

__version__ = "0.1.0"
