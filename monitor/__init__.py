"""tthc-monitor: the monitoring and alerting daemon for Vietnamese one-stop offices."""

__all__ = ["__version__"]

__version__ = "0.1.0"
